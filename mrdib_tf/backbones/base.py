"""The contract every backbone implements, so one trainer, evaluator, regularizer and exporter serve all."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.graph import NormalizedGraph


class Backbone(keras.Model):
    """A recommender split at the point where MRdIB plugs in.

    A forward pass is two calls: `modality_representations` gives each modality's item representation
    h_m, and `embeddings` turns a dict of such representations into final user and item embeddings
    whose dot products are the scores. Between the two, `MRdIBRegularizer` may replace each h_m by its
    bottleneck code z_m; the backbone never knows. ID-only backbones have no modalities.

    A backbone is `row_wise` when item i's final embedding depends only on row i of each h_m and on
    item i's own parameters (VBPR; not graph models, which mix items). Training then asks both calls
    for the rows a batch scores only (`items`), which gives the same loss and gradients as the whole
    table at a fraction of the cost on large catalogues.

    Args:
        n_users: number of users (ids `0..n_users-1`).
        n_items: number of items (ids `0..n_items-1`).
        reg_weight: weight of the backbone's own embedding regularizer (MMRec's `reg_weight`).
    """

    modalities: tuple[str, ...] = ()
    row_wise: bool = False

    def __init__(self, n_users: int, n_items: int, reg_weight: float, **kwargs):
        super().__init__(**kwargs)
        if n_users <= 0 or n_items <= 0:
            raise ValueError(f"n_users and n_items must be positive, got {n_users} and {n_items}.")
        if reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight}.")
        self.n_users = n_users
        self.n_items = n_items
        self.reg_weight = reg_weight

    def modality_representations(
        self, training: bool = False, items: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        """Per-modality item representations h_m, `{modality: [n, d_m]}`; `{}` without modalities.

        `items` (row-wise backbones only): the item ids whose rows to compute, in order; None for all.
        """
        return {}

    def embeddings(
        self,
        representations: Mapping[str, tf.Tensor],
        training: bool = False,
        items: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Final `(user_embeddings [n_users, D], item_embeddings [n, D])` from the given h_m (or z_m).

        `items` (row-wise backbones only): the item ids the representations' rows belong to; None when
        they cover every item.
        """
        raise NotImplementedError

    def embeddings_with_views(
        self,
        representations: Mapping[str, tf.Tensor],
        training: bool = False,
        items: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        """`embeddings`, plus the intermediate tables (views) that `extra_losses` reads; none by default."""
        user_table, item_table = self.embeddings(representations, training, items=items)
        return user_table, item_table, {}

    def extra_losses(
        self, views: Mapping[str, tf.Tensor], users: tf.Tensor, pos_rows: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """The backbone's own weighted training terms beyond BPR and `regularization_loss`, by name
        (MGCN's contrastive term), from the views of `embeddings_with_views`; none by default."""
        return {}

    def regularization_loss(
        self,
        users: tf.Tensor,
        pos_items: tf.Tensor,
        neg_items: tf.Tensor,
        user_vectors: tf.Tensor,
        pos_vectors: tf.Tensor,
        neg_vectors: tf.Tensor,
    ) -> tf.Tensor:
        """The backbone's own weighted regularizer for a batch of ids and their final embeddings."""
        raise NotImplementedError

    def call(self, inputs=None, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """The bare inference path: final embeddings from the backbone's own representations."""
        return self.embeddings(self.modality_representations(training), training)

    def _table(
        self, name: str, values: np.ndarray, dtype: str = "float32", trainable: bool = False
    ) -> keras.Variable:
        """A variable holding `values`: frozen (features, graph edges) unless `trainable` (fine-tuned features).

        A variable, not a constant, so large arrays stay out of the compiled XLA program and out of
        every traced graph.
        """
        table = self.add_weight(
            name=name, shape=values.shape, dtype=dtype, initializer="zeros", trainable=trainable
        )
        table.assign(np.asarray(values).astype(dtype))
        return table

    def _graph_tables(self, name: str, graph: NormalizedGraph) -> tuple:
        """`graph` as frozen (rows, cols, weights) tables plus its receiver count: `propagate`'s arguments."""
        return (
            self._table(f"{name}_rows", graph.rows, "int32"),
            self._table(f"{name}_cols", graph.cols, "int32"),
            self._table(f"{name}_weights", graph.weights),
            graph.n_nodes,
        )


def check_item_features(features: Mapping[str, np.ndarray], n_items: int, model: str) -> None:
    """Raises a ValueError unless `features` maps one or more modalities to `[n_items, dim]` matrices."""
    if not features:
        raise ValueError(f"{model} needs at least one modality's item features; got none.")
    for modality, matrix in features.items():
        if matrix.ndim != 2 or matrix.shape[0] != n_items:
            raise ValueError(
                f"Features of modality '{modality}' must have shape [n_items={n_items}, dim], got {matrix.shape}."
            )


def rows_of(table: keras.Variable | tf.Tensor, items: tf.Tensor | None) -> tf.Tensor:
    """`table[items]`, or the whole table when `items` is None."""
    return tf.convert_to_tensor(table) if items is None else tf.gather(table, items)
