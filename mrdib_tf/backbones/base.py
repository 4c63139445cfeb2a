"""The contract every backbone implements, so one model, training loop, evaluator and exporter serve all."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.graph import NormalizedGraph
from mrdib_tf.precision import full_precision

#: Where MRdIB plugs in: maps the representations h_m, with the rows of the batch's positive and negative
#: items in them, to the codes the backbone goes on with (`MRdIBRegularizer` in training).
Encode = Callable[[Mapping[str, tf.Tensor], tf.Tensor, tf.Tensor], Mapping[str, tf.Tensor]]


class Backbone(keras.Model):
    """A recommender that owns its training loss and says where its modality representations are.

    Two methods make the inference path: `modality_representations` gives each modality's item
    representation h_m, and `embeddings` turns a dict of such representations into the final user and
    item embeddings whose dot products are the scores. `training_losses` computes the backbone's weighted
    loss terms for a batch (its ranking loss, its own regularizer, any extra terms) and, between the two
    steps, hands h_m to `encode` (MRdIB) and goes on with what comes back; the backbone never knows what
    `encode` did. ID-only backbones have no modalities and never call it.

    Args:
        n_users: number of users (ids `0..n_users-1`).
        n_items: number of items (ids `0..n_items-1`).
        reg_weight: weight of the backbone's own embedding regularizer (MMRec's `reg_weight`).
    """

    modalities: tuple[str, ...] = ()
    #: The names of the terms `training_losses` returns.
    loss_terms: tuple[str, ...] = ("ranking", "l2")

    def __init__(self, n_users: int, n_items: int, reg_weight: float, **kwargs):
        super().__init__(**full_precision(kwargs))
        if n_users <= 0 or n_items <= 0:
            raise ValueError(f"n_users and n_items must be positive, got {n_users} and {n_items}.")
        if reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight}.")
        self.n_users = n_users
        self.n_items = n_items
        self.reg_weight = reg_weight

    def modality_representations(self, items: tf.Tensor | None = None, training: bool = False) -> dict[str, tf.Tensor]:
        """Per-modality item representations h_m, `{modality: [n, d_m]}` for `items` (None: every item)."""
        return {}

    def embeddings(
        self, representations: Mapping[str, tf.Tensor], items: tf.Tensor | None = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Final `(user_embeddings [n_users, D], item_embeddings [n, D])` from the given h_m (or codes).

        `items`: the item ids the representations' rows belong to; None when they cover every item.
        """
        raise NotImplementedError

    def training_losses(
        self, batch: Mapping[str, tf.Tensor], encode: Encode | None = None, training: bool = True
    ) -> dict[str, tf.Tensor]:
        """The weighted loss terms (`loss_terms`) for a batch of `{"user", "pos_item", "neg_item"}` ids."""
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """Called before every training epoch (0-based) by `callbacks.EpochStart`: a backbone that redraws
        structure per epoch (FREEDOM's denoised graph) does it here, from `epoch` alone so resumes match."""

    def call(self, inputs=None, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """The bare inference path: final embeddings from the backbone's own representations."""
        return self.embeddings(self.modality_representations(training=training), training=training)

    def _frozen(self, name: str, values: np.ndarray, dtype: str = "float32") -> tf.Variable:
        """A constant table (features read as they are, graph edges), rebuilt from the dataset.

        A TensorFlow variable, not a constant, so large arrays stay out of the compiled XLA program; not
        a Keras weight, so it stays out of the model's weights and checkpoints.
        """
        return tf.Variable(np.asarray(values, dtype=dtype), trainable=False, name=name)  # no extra copy

    def _trainable_table(self, name: str, values: np.ndarray) -> keras.Variable:
        """A weight that starts at `values` (fine-tuned features)."""
        table = self.add_weight(name=name, shape=values.shape, initializer="zeros")
        table.assign(np.asarray(values, np.float32))
        return table

    def _graph_tables(self, name: str, graph: NormalizedGraph) -> tuple:
        """`graph` as frozen (rows, cols, weights) tables plus its receiver count: `propagate`'s arguments."""
        return (
            self._frozen(f"{name}_rows", graph.rows, "int32"),
            self._frozen(f"{name}_cols", graph.cols, "int32"),
            self._frozen(f"{name}_weights", graph.weights),
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


def rows_of(table: tf.Variable | tf.Tensor, items: tf.Tensor | None) -> tf.Tensor:
    """`table[items]`, or the whole table when `items` is None."""
    return tf.convert_to_tensor(table) if items is None else tf.gather(table, items)


def batch_vectors(
    user_table: tf.Tensor, item_table: tf.Tensor, batch: Mapping[str, tf.Tensor]
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The batch's user, positive-item and negative-item rows of full embedding tables."""
    return (
        tf.gather(user_table, batch["user"]),
        tf.gather(item_table, batch["pos_item"]),
        tf.gather(item_table, batch["neg_item"]),
    )
