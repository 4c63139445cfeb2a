"""VBPR (He & McAuley, AAAI 2016) with one feature projection per modality."""

from __future__ import annotations

import math
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.base import Backbone, Encode, check_item_features, rows_of
from mrdib_tf.losses import embedding_norm_loss, pairwise_bpr
from mrdib_tf.precision import Dense


class VBPR(Backbone):
    """Visual BPR generalised to any number of modalities.

    Item embedding = [ID factors (d) ; sum_m W_m f_m + b (d)], user embedding = 2d free factors.
    MMRec projects the concatenation of all features with one linear layer; that equals the sum of one
    projection per modality, which is what this model computes, so the per-modality h_m = W_m f_m are
    exposed for MRdIB while the bare model stays identical to MMRec's. A training step projects only the
    batch's item rows, where MMRec projects the whole catalogue every step.

    Where MRdIB plugs in (`placement`): "projections" exposes h_m = W_m f_m; "raw" exposes the raw feature
    rows f_m, projected after the bottleneck, so that its noise can be set per raw column (a nuisance
    column the ranking does not need can be drowned on its own, which no map of the projections can do
    once W_m has mixed it into every dimension). The bare model is the same either way.

    Args:
        n_users: number of users.
        n_items: number of items.
        features: `{modality: [n_items, dim]}` item features.
        embedding_dim: d, the size of the ID factors and of each modality projection (MMRec: 64).
        reg_weight: weight of MMRec's embedding-norm regularizer (MMRec grid: 2.0 ... 1e-5).
        placement: "projections" or "raw" (see above).

    Example:
        >>> model = VBPR(3, 4, {"image": np.ones((4, 8)), "text": np.ones((4, 5))}, embedding_dim=2)
        >>> users, items = model()
        >>> tuple(users.shape), tuple(items.shape)
        ((3, 4), (4, 4))
    """

    PLACEMENTS = ("projections", "raw")

    def __init__(
        self,
        n_users: int,
        n_items: int,
        features: Mapping[str, np.ndarray],
        embedding_dim: int = 64,
        reg_weight: float = 1e-4,
        placement: str = "projections",
        **kwargs,
    ):
        super().__init__(n_users, n_items, reg_weight, **kwargs)
        check_item_features(features, n_items, "VBPR")
        if placement not in self.PLACEMENTS:
            raise ValueError(f"VBPR placement must be one of {self.PLACEMENTS}, got {placement!r}.")
        self.placement = placement
        self.modalities = tuple(sorted(features))
        self.embedding_dim = embedding_dim
        self.user_factors = self.add_weight(
            name="user_factors", shape=(n_users, 2 * embedding_dim), initializer="glorot_uniform"
        )
        self.item_factors = self.add_weight(
            name="item_factors", shape=(n_items, embedding_dim), initializer="glorot_uniform"
        )
        self.features = {m: self._frozen(f"{m}_features", features[m]) for m in self.modalities}
        # MMRec's single layer over the concatenated features is Xavier-normal with fan-in the total
        # feature width; each modality's block of it is what its projection here starts as.
        total_width = sum(features[m].shape[1] for m in self.modalities)
        std = math.sqrt(2.0 / (total_width + embedding_dim))
        self.projections = {  # an initializer each: one shared would start same-width projections alike
            m: Dense(embedding_dim, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(stddev=std),
                     name=f"{m}_projection")
            for m in self.modalities
        }
        for modality, projection in self.projections.items():
            projection.build((None, features[modality].shape[1]))
        self.projection_bias = self.add_weight(
            name="projection_bias", shape=(embedding_dim,), initializer="zeros"
        )

    def modality_representations(self, items: tf.Tensor | None = None, training: bool = False) -> dict[str, tf.Tensor]:
        if self.placement == "raw":
            return {m: rows_of(self.features[m], items) for m in self.modalities}
        return {m: self.projections[m](rows_of(self.features[m], items)) for m in self.modalities}

    def embeddings(
        self, representations: Mapping[str, tf.Tensor], items: tf.Tensor | None = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        projected = ([self.projections[m](representations[m]) for m in self.modalities] if self.placement == "raw"
                     else [representations[m] for m in self.modalities])
        content = tf.add_n(projected) + self.projection_bias
        item_vectors = tf.concat([rows_of(self.item_factors, items), content], axis=-1)
        return tf.convert_to_tensor(self.user_factors), item_vectors

    def training_losses(
        self, batch: Mapping[str, tf.Tensor], encode: Encode | None = None, training: bool = True
    ) -> dict[str, tf.Tensor]:
        """BPR and MMRec's norm regularizer, computing (and encoding) only the batch's item rows.

        Item i's embedding depends only on row i of each h_m and on item i's own factors, so the loss and
        its gradients equal those of the whole table, which MMRec computes every step.
        """
        items = tf.concat([batch["pos_item"], batch["neg_item"]], axis=0)
        size = tf.shape(batch["pos_item"], out_type=items.dtype)[0]
        representations = self.modality_representations(items, training)
        if encode is not None:
            representations = encode(representations, tf.range(size), tf.range(size, 2 * size))
        user_table, item_vectors = self.embeddings(representations, items, training)
        users = tf.gather(user_table, batch["user"])
        positives, negatives = item_vectors[:size], item_vectors[size:]
        return {
            "ranking": pairwise_bpr(users, positives, negatives),
            "l2": self.reg_weight * embedding_norm_loss(users, positives, negatives),
        }
