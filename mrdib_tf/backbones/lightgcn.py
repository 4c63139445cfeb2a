"""LightGCN (He et al., SIGIR 2020): ID embeddings smoothed over the user-item graph; no modalities."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.base import Backbone, Encode, batch_vectors
from mrdib_tf.backbones.graph import NormalizedGraph, mean_over_layers
from mrdib_tf.losses import embedding_norm_loss, pairwise_bpr


class LightGCN(Backbone):
    """The collaborative reference: mean of the layer-wise propagated ID embeddings.

    Args:
        n_users: number of users.
        n_items: number of items.
        train_users: users of the training pairs (the graph).
        train_items: items of the training pairs.
        embedding_dim: size of the ID embeddings (MMRec: 64).
        n_layers: propagation depth (MMRec grid: 1-4).
        reg_weight: weight of MMRec's norm regularizer on the layer-0 embeddings of the batch.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_users: np.ndarray,
        train_items: np.ndarray,
        embedding_dim: int = 64,
        n_layers: int = 2,
        reg_weight: float = 1e-4,
        **kwargs,
    ):
        super().__init__(n_users, n_items, reg_weight, **kwargs)
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}.")
        self.embedding_dim = embedding_dim
        self.n_layers = n_layers
        graph = NormalizedGraph.from_interactions(train_users, train_items, n_users, n_items)
        self.edges = self._graph_tables("edge", graph)
        self.user_embedding = self.add_weight(
            name="user_embedding", shape=(n_users, embedding_dim), initializer="glorot_uniform"
        )
        self.item_embedding = self.add_weight(
            name="item_embedding", shape=(n_items, embedding_dim), initializer="glorot_uniform"
        )

    def embeddings(
        self, representations: Mapping[str, tf.Tensor], items: tf.Tensor | None = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        ids = tf.concat([self.user_embedding, self.item_embedding], axis=0)
        mean = mean_over_layers(ids, self.edges, self.n_layers)
        return mean[: self.n_users], mean[self.n_users :]

    def training_losses(
        self, batch: Mapping[str, tf.Tensor], encode: Encode | None = None, training: bool = True
    ) -> dict[str, tf.Tensor]:
        """BPR on the propagated embeddings; MMRec's norm regularizer on the batch's layer-0 embeddings."""
        users, positives, negatives = batch_vectors(*self.embeddings({}, training=training), batch)
        ego = batch_vectors(self.user_embedding, self.item_embedding, batch)
        return {
            "ranking": pairwise_bpr(users, positives, negatives),
            "l2": self.reg_weight * embedding_norm_loss(*ego),
        }
