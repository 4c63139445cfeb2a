"""FREEDOM (Zhou & Shen, ACM MM 2023): a frozen item-item graph and a denoised user-item graph."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.base import Backbone, Encode, check_item_features, rows_of
from mrdib_tf.backbones.graph import NormalizedGraph, degree_sensitive_pruning, knn_item_graph, mean_over_layers, propagate
from mrdib_tf.backbones.torch_defaults import torch_linear
from mrdib_tf.losses import pairwise_bpr

#: MMRec's `mm_image_weight`: the image graph's share of the item-item graph (text has the rest).
IMAGE_GRAPH_WEIGHT = 0.1
#: Mixed into the seed of the per-epoch graph draws, so they share no stream with other users of the run seed.
_PRUNING_STREAM = 0x46524545  # "FREE"


def mmrec_graph_weights(modalities: tuple[str, ...]) -> dict[str, float]:
    """Each modality's share of FREEDOM's item-item graph as MMRec sets it, for any modalities.

    MMRec knows image and text only: 0.1 image, 0.9 text. Here "image" keeps 0.1 and the other
    modalities share the rest equally (so tiktok's audio, which MMRec is given as its text, gets 0.9);
    without an image modality, or with only one modality, the shares are equal.
    """
    if "image" not in modalities or len(modalities) == 1:
        return {m: 1.0 / len(modalities) for m in modalities}
    rest = (1.0 - IMAGE_GRAPH_WEIGHT) / (len(modalities) - 1)
    return {m: IMAGE_GRAPH_WEIGHT if m == "image" else rest for m in modalities}


class FREEDOM(Backbone):
    """FREEDOM for any number of modalities, with MMRec's defaults.

    - Item-item graph, frozen: per modality, each item linked to its k most cosine-similar items of the
      raw features, every link weighing 1/k; the modalities' graphs summed with `graph_weights`. The
      ID embeddings of items, propagated `n_mm_layers` times over it, are added to the items' final
      embeddings. Built once from the initial features, never updated.
    - User-item graph, denoised: LightGCN (`n_ui_layers`, layer mean) over a graph that keeps
      `1 - edge_dropout` of the training pairs, drawn anew every epoch in favour of low-degree pairs
      (`graph.degree_sensitive_pruning`), then normalized anew. Scoring uses the full graph.
    - Loss: BPR on the final embeddings, plus `reg_weight` x the sum over modalities of BPR between the
      final user vectors and each modality's projected features W_m f_m + b_m of the positive and
      negative items (MMRec's `reg_weight` weighs this term; FREEDOM has no norm regularizer).

    The projected features are the h_m MRdIB replaces: they enter the loss only through the per-modality
    BPR terms (the scores do not read them), so the regularizer shapes FREEDOM through the user vectors
    those terms train. As in MMRec, the raw features are trainable by default (`trainable_features`) and
    only the batch's item rows are projected in a step (MMRec projects the whole catalogue; the loss and
    its gradients are the same).

    The pruned graph is redrawn by `begin_epoch(epoch)`, which `Model.fit` calls before every epoch
    through `callbacks.EpochStart`; each epoch's draw depends only on (`seed`, epoch), so a resumed run
    draws what the uninterrupted one would.

    Args:
        n_users, n_items: catalogue sizes.
        train_users, train_items: the training pairs (the user-item graph).
        features: `{modality: [n_items, dim]}`, one or more modalities.
        embedding_dim: d of the ID embeddings and of the feature projections (MMRec: 64).
        n_ui_layers: LightGCN layers over the user-item graph (MMRec: 2).
        n_mm_layers: propagation layers over the item-item graph (MMRec: 1).
        knn_k: neighbours per item in the item-item graphs (MMRec: 10).
        edge_dropout: the share of training pairs dropped each epoch (MMRec's `dropout`, grid 0.8, 0.9).
        reg_weight: weight of the per-modality BPR terms (MMRec grid 0, 1e-5, 1e-4, 1e-3).
        graph_weights: each modality's share of the item-item graph; None: `mmrec_graph_weights`.
        trainable_features: fine-tune the raw feature tables (MMRec) or keep them as they are.
        seed: the seed of the per-epoch graph draws.
        item_graphs: the unweighted k-NN graphs by modality, prebuilt (say, read from a cache) as
            `knn_item_graph(features[m], knn_k, weighted=False)` would build them; built here when None.
    """

    loss_terms = ("ranking", "modality_ranking")

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_users: np.ndarray,
        train_items: np.ndarray,
        features: Mapping[str, np.ndarray],
        embedding_dim: int = 64,
        n_ui_layers: int = 2,
        n_mm_layers: int = 1,
        knn_k: int = 10,
        edge_dropout: float = 0.8,
        reg_weight: float = 1e-4,
        graph_weights: Mapping[str, float] | None = None,
        trainable_features: bool = True,
        seed: int = 0,
        item_graphs: Mapping[str, NormalizedGraph] | None = None,
        **kwargs,
    ):
        super().__init__(n_users, n_items, reg_weight, **kwargs)
        check_item_features(features, n_items, "FREEDOM")
        if n_ui_layers < 0 or n_mm_layers < 0:
            raise ValueError(f"Layer counts must be >= 0, got {n_ui_layers} and {n_mm_layers}.")
        if not 0.0 <= edge_dropout < 1.0:
            raise ValueError(f"edge_dropout must be in [0, 1), got {edge_dropout}.")
        self.modalities = tuple(sorted(features))
        graph_weights = dict(mmrec_graph_weights(self.modalities) if graph_weights is None else graph_weights)
        if sorted(graph_weights) != list(self.modalities) or min(graph_weights.values()) < 0:
            raise ValueError(f"graph_weights must give each modality {self.modalities} a weight >= 0, "
                             f"got {graph_weights}.")
        self.embedding_dim = embedding_dim
        self.n_ui_layers = n_ui_layers
        self.n_mm_layers = n_mm_layers
        self.edge_dropout = edge_dropout
        self.seed = seed

        self.train_pairs = np.unique(np.stack([train_users, train_items], axis=1).astype(np.int64), axis=0).T
        self.interactions = self._graph_tables(
            "interactions", NormalizedGraph.from_interactions(*self.train_pairs, n_users, n_items))
        self.kept_pairs = max(1, int(self.train_pairs.shape[1] * (1.0 - edge_dropout)))
        self.pruned = (self._graph_tables("pruned_interactions", self._pruned_graph(epoch=0)) if edge_dropout > 0
                       else self.interactions)
        if item_graphs is None:
            item_graphs = {m: knn_item_graph(np.asarray(features[m], np.float32), knn_k, weighted=False)
                           for m in self.modalities}
        if sorted(item_graphs) != list(self.modalities) or any(g.n_nodes != n_items for g in item_graphs.values()):
            raise ValueError(f"item_graphs must hold one {n_items}-item graph per modality {self.modalities}, "
                             f"got {sorted(item_graphs)}.")
        self.item_graph = self._graph_tables("item_item", NormalizedGraph(
            np.concatenate([item_graphs[m].rows for m in self.modalities]),
            np.concatenate([item_graphs[m].cols for m in self.modalities]),
            np.concatenate([graph_weights[m] * item_graphs[m].weights for m in self.modalities]).astype(np.float32),
            n_items,
        ))

        self.user_embedding = self.add_weight(
            name="user_embedding", shape=(n_users, embedding_dim), initializer="glorot_uniform"
        )
        self.item_embedding = self.add_weight(
            name="item_embedding", shape=(n_items, embedding_dim), initializer="glorot_uniform"
        )
        table = self._trainable_table if trainable_features else self._frozen
        self.features = {m: table(f"{m}_features", features[m]) for m in self.modalities}
        self.projections = {m: torch_linear(f"{m}_projection", features[m].shape[1], embedding_dim)
                            for m in self.modalities}

    def _pruned_graph(self, epoch: int) -> NormalizedGraph:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _PRUNING_STREAM, epoch]))
        return degree_sensitive_pruning(*self.train_pairs, self.n_users, self.n_items, self.kept_pairs, rng)

    def begin_epoch(self, epoch: int) -> None:
        """Draws epoch `epoch`'s denoised user-item graph into the tables the training steps read."""
        if self.edge_dropout == 0.0:
            return
        graph = self._pruned_graph(epoch)
        for table, values in zip(self.pruned[:3], (graph.rows, graph.cols, graph.weights)):
            table.assign(values)

    def modality_representations(self, items: tf.Tensor | None = None, training: bool = False) -> dict[str, tf.Tensor]:
        return {m: self.projections[m](rows_of(self.features[m], items)) for m in self.modalities}

    def _final(self, user_item_graph: tuple) -> tuple[tf.Tensor, tf.Tensor]:
        """Final (users, items): LightGCN over `user_item_graph`, items plus their item-item propagated IDs."""
        semantic = tf.convert_to_tensor(self.item_embedding)
        for _ in range(self.n_mm_layers):
            semantic = propagate(semantic, *self.item_graph)
        ids = tf.concat([self.user_embedding, self.item_embedding], axis=0)
        mean = mean_over_layers(ids, user_item_graph, self.n_ui_layers)
        return mean[: self.n_users], mean[self.n_users :] + semantic

    def embeddings(
        self, representations: Mapping[str, tf.Tensor], items: tf.Tensor | None = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        users, all_items = self._final(self.interactions)
        return users, rows_of(all_items, items)

    def training_losses(
        self, batch: Mapping[str, tf.Tensor], encode: Encode | None = None, training: bool = True
    ) -> dict[str, tf.Tensor]:
        """BPR over the denoised graph, and `reg_weight` x each modality's BPR of its projected features."""
        user_table, item_table = self._final(self.pruned)
        users = tf.gather(user_table, batch["user"])
        ranking = pairwise_bpr(users, tf.gather(item_table, batch["pos_item"]), tf.gather(item_table, batch["neg_item"]))
        items = tf.concat([batch["pos_item"], batch["neg_item"]], axis=0)
        size = tf.shape(batch["pos_item"], out_type=items.dtype)[0]
        representations = self.modality_representations(items, training)
        if encode is not None:
            representations = encode(representations, tf.range(size), tf.range(size, 2 * size))
        modality_ranking = tf.add_n([
            pairwise_bpr(users, representations[m][:size], representations[m][size:]) for m in self.modalities
        ])
        return {"ranking": ranking, "modality_ranking": self.reg_weight * modality_ranking}
