"""A backbone, optionally wrapped by MRdIB, as one Keras model that owns its training loss."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mrdib_tf.backbones import Backbone, build_backbone
from mrdib_tf.config import RunConfig
from mrdib_tf.losses import bpr_loss
from mrdib_tf.regularizer import MRdIBRegularizer


def _scores(user_vectors: tf.Tensor, item_vectors: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(user_vectors * item_vectors, axis=-1)


def require_multimodal(backbone: Backbone) -> None:
    """Raises a ValueError unless `backbone` has the two or more modalities MRdIB disentangles."""
    if len(backbone.modalities) < 2:
        raise ValueError(
            f"MRdIB needs a backbone with at least two modalities; '{backbone.name}' has "
            f"{len(backbone.modalities)} ({', '.join(backbone.modalities) or 'ID only'}). "
            "Train it bare (--no-mrdib), or use a multimodal backbone and dataset."
        )


class Recommender(keras.Model):
    """Composes a `Backbone` with an optional `MRdIBRegularizer`.

    Training: the regularizer replaces each modality representation h_m by its sampled code z_m before
    the backbone builds its embeddings, and adds its auxiliary losses. Inference (`call`,
    `final_embeddings`): the regularizer contributes its posterior means only, so the exported model is
    the backbone's inference path with mu_m in place of h_m.

    Args:
        backbone: any `Backbone`.
        regularizer: an `MRdIBRegularizer` over exactly the backbone's modalities, or None for the bare model.
    """

    def __init__(self, backbone: Backbone, regularizer: MRdIBRegularizer | None = None, **kwargs):
        super().__init__(**kwargs)
        if regularizer is not None:
            require_multimodal(backbone)
        if regularizer is not None and tuple(sorted(regularizer.modalities)) != backbone.modalities:
            raise ValueError(
                f"The regularizer's modalities {tuple(sorted(regularizer.modalities))} must equal the "
                f"backbone's {backbone.modalities}."
            )
        self.backbone = backbone
        self.regularizer = regularizer

    def compute_losses(self, batch: Mapping[str, tf.Tensor], training: bool = True) -> dict[str, tf.Tensor]:
        """Every loss component for a batch of `{"user", "pos_item", "neg_item"}`; `"loss"` is the total.

        Components: `backbone` (the backbone's BPR loss, which is MRdIB's prediction/synergy term when the
        backbone predicts from all z jointly), `l2` (the backbone's own regularizer), the backbone's
        weighted `extra_losses` (MGCN: `contrastive`) and, under MRdIB, the regularizer's raw
        `kl`, `mi_estimate`, `unique`, `synergy` and weighted `mrdib`.

        A row-wise backbone computes, and MRdIB encodes, only the batch's positive and negative item rows.
        """
        users, pos_items, neg_items = batch["user"], batch["pos_item"], batch["neg_item"]
        if self.backbone.row_wise:
            items = tf.concat([pos_items, neg_items], axis=0)
            batch_size = tf.shape(pos_items, out_type=items.dtype)[0]
            pos_rows, neg_rows = tf.range(batch_size), tf.range(batch_size, 2 * batch_size)
        else:
            items, pos_rows, neg_rows = None, pos_items, neg_items
        representations = self.backbone.modality_representations(training, items=items)
        bottleneck = None
        if self.regularizer is not None:
            bottleneck = self.regularizer.encode(representations, training, pos_rows, neg_rows)
            representations = bottleneck.codes
        user_table, item_table, views = self.backbone.embeddings_with_views(representations, training, items=items)
        user_vectors = tf.gather(user_table, users)
        pos_vectors, neg_vectors = tf.gather(item_table, pos_rows), tf.gather(item_table, neg_rows)
        losses = {
            "backbone": bpr_loss(_scores(user_vectors, pos_vectors), _scores(user_vectors, neg_vectors)),
            "l2": self.backbone.regularization_loss(
                users, pos_items, neg_items, user_vectors, pos_vectors, neg_vectors
            ),
        }
        losses.update(self.backbone.extra_losses(views, users, pos_rows))
        total = tf.add_n([losses[name] for name in losses])
        if bottleneck is not None:
            auxiliary = dict(self.regularizer.auxiliary_losses(bottleneck, users, pos_items))
            losses["mrdib"] = auxiliary.pop("total")
            losses.update(auxiliary)
            total += losses["mrdib"]
        losses["loss"] = total
        return losses

    @property
    def critic_variables(self) -> list:
        """MRdIB's critics' variables (ascend "mi_estimate" with their own optimizer); none when bare."""
        return self.regularizer.critic_variables if self.regularizer is not None else []

    @property
    def model_variables(self) -> list:
        """Every trainable variable except the critics': what descends "loss"."""
        critics = {id(v) for v in self.critic_variables}
        return [v for v in self.trainable_variables if id(v) not in critics]

    def final_embeddings(self) -> tuple[tf.Tensor, tf.Tensor]:
        """Inference-path `(user_embeddings, item_embeddings)`: MRdIB contributes posterior means."""
        representations = self.backbone.modality_representations(training=False)
        if self.regularizer is not None:
            representations = self.regularizer(representations, training=False)
        return self.backbone.embeddings(representations, training=False)

    def call(self, inputs=None, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        return self.final_embeddings()


def build_recommender(dataset, config: RunConfig) -> Recommender:
    """The backbone named by `config`, wrapped by MRdIB with its alphas unless `config.mrdib` is off."""
    backbone = build_backbone(dataset, config)
    regularizer = None
    if config.mrdib:
        require_multimodal(backbone)
        regularizer = MRdIBRegularizer(
            backbone.modalities, n_users=backbone.n_users, alpha_kl=config.alpha1, alpha_mi=config.alpha2,
            alpha_unique=config.alpha3, codes_on_main_path=config.codes_on_main_path,
            initial_sigma=config.initial_sigma, prior_scale=config.prior_scale, fusion_head=config.fusion_head, seed=config.seed, name="mrdib",
        )
    return Recommender(backbone, regularizer, name="recommender")
