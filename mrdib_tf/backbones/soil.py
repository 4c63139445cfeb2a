"""SOIL (Su et al., 2024): MGCN's views over graphs augmented with users' second-order interest."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.base import check_item_features
from mrdib_tf.backbones.graph import NormalizedGraph, knn_item_graph
from mrdib_tf.backbones.interest_graphs import interest_item_graphs, second_order_graphs
from mrdib_tf.backbones.mgcn import MGCN
from mrdib_tf.losses import info_nce


def soil_graphs(
    features: Mapping[str, np.ndarray],
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    knn_k: int = 10,
    interest_k: int = 10,
    second_order_k: int = 2,
    knn_graphs: Mapping[str, NormalizedGraph] | None = None,
) -> dict[str, NormalizedGraph]:
    """Every graph SOIL propagates over, by name: `item_<m>` per modality and `user_item`.

    - item_<m>: the interest graph of modality m plus its weighted k-NN graph (each normalized alone).
    - user_item: the normalized interaction graph plus half the normalized second-order graph (its user
      <- item block is what users aggregate the item views over).
    `knn_graphs`: the k-NN graphs, prebuilt (say, from a cache) as `knn_item_graph(features[m], knn_k)`.
    """
    modalities = sorted(features)
    if knn_graphs is None:
        knn_graphs = {m: knn_item_graph(np.asarray(features[m], np.float32), knn_k) for m in modalities}
    interest = interest_item_graphs(features, users, items, n_users, n_items, interest_k)
    second_order = second_order_graphs(features, users, items, n_users, n_items, second_order_k)
    interactions = NormalizedGraph.from_interactions(users, items, n_users, n_items)
    graphs = {f"item_{m}": interest[m].plus(knn_graphs[m]) for m in modalities}
    graphs["user_item"] = interactions.plus(second_order, 0.5)
    return graphs


class SOIL(MGCN):
    """SOIL as its authors run it (github.com/TL-UESTC/SOIL), on MGCN's two views.

    - User-item view: LightGCN (layer mean) over the interactions augmented with second-order interest
      (`interest_graphs.second_order_graphs`): each user also links to the `second_order_k` items most
      similar to its own in every modality at once.
    - Item-item views: the item IDs purified by each modality's projected features, propagated over the
      interest-aware graph (`interest_graphs.interest_item_graphs`) plus the k-NN graph; users aggregate
      them over the augmented user <- item block. These are the h_m MRdIB's bottleneck replaces.
    - Fuser: MGCN's attention, with no behavior gate on the remainders: side = (sum_m h_m - common) / (M + 1).
    - Loss: BPR; `cl_weight` x InfoNCE between the side and content views of the batch's positive items
      and of its users (MGCN's); `user_item_cl_weight` x InfoNCE between the batch's final user vectors
      and its positive items' content, and its positive items' side view (temperature 0.2 throughout).
      The authors' loss has no embedding regularizer (their config's reg_weight is never read): the
      default `reg_weight` is 0, and a positive one adds MGCN's.

    The features stay frozen by default, as the authors load them. Other args as `MGCN`, plus:

    Args:
        interest_k: the authors' `knn_i` (baby 10, sports 5, clothing 5).
        second_order_k: the authors' `knn_a` (baby 2, sports 6, clothing 3).
        user_item_cl_weight: the authors' `cl_loss2` (grid 0.001, 0.01, 0.1).
        graphs: `soil_graphs(...)`'s output, prebuilt (say, read from a cache); built here when None.
    """

    preference_gates = False

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_users: np.ndarray,
        train_items: np.ndarray,
        features: Mapping[str, np.ndarray],
        knn_k: int = 10,
        interest_k: int = 10,
        second_order_k: int = 2,
        user_item_cl_weight: float = 0.01,
        reg_weight: float = 0.0,
        trainable_features: bool = False,
        graphs: Mapping[str, NormalizedGraph] | None = None,
        **kwargs,
    ):
        check_item_features(features, n_items, "SOIL")
        if user_item_cl_weight < 0:
            raise ValueError(f"user_item_cl_weight must be >= 0, got {user_item_cl_weight}.")
        if graphs is None:
            graphs = soil_graphs(features, train_users, train_items, n_users, n_items, knn_k, interest_k,
                                 second_order_k)
        expected = {f"item_{m}" for m in features} | {"user_item"}
        if set(graphs) != expected:
            raise ValueError(f"SOIL's graphs must be {sorted(expected)}, got {sorted(graphs)}.")
        super().__init__(
            n_users, n_items, train_users, train_items, features, knn_k=knn_k, reg_weight=reg_weight,
            trainable_features=trainable_features, item_graphs={m: graphs[f"item_{m}"] for m in features},
            user_item_graph=graphs["user_item"], **kwargs,
        )
        self.user_item_cl_weight = user_item_cl_weight
        if user_item_cl_weight > 0:
            self.loss_terms = (*self.loss_terms, "user_item_contrastive")

    def _loss_terms(self, batch: Mapping[str, tf.Tensor], content: tf.Tensor, side: tf.Tensor) -> dict[str, tf.Tensor]:
        terms = super()._loss_terms(batch, content, side)
        if self.user_item_cl_weight > 0:
            users = tf.gather(content + side, batch["user"])
            item_rows = batch["pos_item"] + self.n_users
            terms["user_item_contrastive"] = self.user_item_cl_weight * (
                info_nce(users, tf.gather(content, item_rows), self.temperature)
                + info_nce(users, tf.gather(side, item_rows), self.temperature)
            )
        return terms
