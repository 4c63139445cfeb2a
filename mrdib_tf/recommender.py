"""A backbone, optionally wrapped by MRdIB, as one Keras model that `Model.fit` trains."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mrdib_tf.backbones.base import Backbone
from mrdib_tf.precision import full_precision
from mrdib_tf.regularizer import MRdIBRegularizer


def require_multimodal(backbone: Backbone) -> None:
    """Raises a ValueError unless `backbone` has the two or more modalities MRdIB disentangles."""
    if len(backbone.modalities) < 2:
        raise ValueError(
            f"MRdIB needs a backbone with at least two modalities; '{backbone.name}' has "
            f"{len(backbone.modalities)} ({', '.join(backbone.modalities) or 'ID only'}). "
            "Train it without the regularizer (`regularizer=None`), or use a multimodal backbone and dataset."
        )


class Recommender(keras.Model):
    """Composes a `Backbone` with an optional `MRdIBRegularizer`; trains with `Model.fit` on BPR triples.

    In training, `call` on a batch `{"user", "pos_item", "neg_item"}` returns the backbone's weighted loss
    terms, the regularizer standing between the backbone's representations and the rest of it (it adds
    its own terms through `add_loss`); `compute_loss` sums them all. `train_step` is Keras' own, its one
    backward pass also giving MRdIB's critics their step, so `compile(jit_compile=True)`, callbacks and
    distribution strategies work as for any model.
    Every term is a metric (`ranking`, `l2`, the backbone's extras, MRdIB's `kl`, `mi_estimate`, ...).

    At inference `call()` (or `final_embeddings`) returns `(user_embeddings, item_embeddings)` whose dot
    products are the scores; under MRdIB the regularizer contributes its posterior means only.

    Args:
        backbone: any `Backbone`.
        regularizer: an `MRdIBRegularizer` over exactly the backbone's modalities, or None for the bare model.
    """

    def __init__(self, backbone: Backbone, regularizer: MRdIBRegularizer | None = None, **kwargs):
        super().__init__(**full_precision(kwargs))
        if regularizer is not None:
            require_multimodal(backbone)
            if tuple(sorted(regularizer.modalities)) != backbone.modalities:
                raise ValueError(
                    f"The regularizer's modalities {tuple(sorted(regularizer.modalities))} must equal the "
                    f"backbone's {backbone.modalities}."
                )
        self.backbone = backbone
        self.regularizer = regularizer
        if regularizer is not None:
            regularizer.critic_step_in_call = False  # `train_step` runs it, after the model's update
            regularizer.rate_step_in_call = False  # likewise the rate-targeted KL weights' step
        self.term_trackers = {name: keras.metrics.Mean(name=name) for name in backbone.loss_terms}

    def call(self, inputs: Mapping[str, tf.Tensor] | None = None, training: bool = False):
        """Training (a batch given): the backbone's loss terms. Otherwise: the final embeddings."""
        if inputs is None or not training:
            return self.final_embeddings()
        encode = None
        if self.regularizer is not None:
            def encode(representations, pos_rows, neg_rows):
                return self.regularizer(
                    representations, users=inputs["user"], pos_rows=pos_rows, neg_rows=neg_rows,
                    pos_items=inputs["pos_item"], training=True,
                )
        return self.backbone.training_losses(inputs, encode, training=True)

    def train_step(self, data) -> dict[str, tf.Tensor]:
        """Keras' step, and MRdIB's critics' own step on the codes the regularizer drew.

        The critics ascend the redundancy estimate that the model's loss descends (weighted alpha_mi), so
        one backward pass serves both: the loss's gradient in the critics' variables, divided by -alpha_mi,
        is their ascent gradient. Under a loss-scale optimizer (mixed precision) the critics instead take
        their step after the model's (`MRdIBRegularizer.train_critics`), as the scale would leak into it.

        Across workers each log is returned as a [1] vector: Keras averages the logs over workers along
        axis 0, which a scalar lacks (Keras 3.15 fails on every scalar log there).
        """
        if self._critic_step_from_model_gradient():
            logs = self._train_step_with_critics(data)
        else:
            logs = super().train_step(data)
            if self._critics_step_outside_call():
                self.regularizer.train_critics()
        if self.regularizer is not None and self.regularizer.target_rate is not None:
            self.regularizer.hold_rate()
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _critics_step_outside_call(self) -> bool:
        """Whether MRdIB has critics whose step the training step takes (not the layer's `call`)."""
        regularizer = self.regularizer
        return regularizer is not None and bool(regularizer.pairs) and not regularizer.critic_step_in_call

    def _critic_step_from_model_gradient(self) -> bool:
        """Whether that step comes from the model's gradient: not under loss scaling, which would leak into it."""
        return (self._critics_step_outside_call()
                and not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer))

    def _train_step_with_critics(self, data) -> dict[str, tf.Tensor]:
        """Keras' `train_step` (3.15, TensorFlow), its tape also watching the critics' variables."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        critic_values = [v.value for v in self.regularizer.critic_variables]
        with tf.GradientTape() as tape:
            tape.watch(critic_values)  # not trainable by the model's optimizer: watched by hand
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            self._loss_tracker.update_state(loss * replicas, sample_weight=tf.shape(x["user"])[0])
        weights = self.trainable_weights
        gradients = tape.gradient(loss, weights + critic_values)
        self.optimizer.apply_gradients(zip(gradients[: len(weights)], weights))
        self.regularizer.apply_critic_gradients(gradients[len(weights):])
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training: bool = True) -> tf.Tensor:
        """The sum of the backbone's terms (`y_pred`, from `call`) and of the layers' added losses (MRdIB).

        Under a strategy of R replicas each replica's share is 1/R of it: their gradients are summed, so
        the step is that of the mean over replicas (the whole batch's mean when the replicas' shares of
        it are equal), as Keras scales its own losses.
        """
        for name, value in y_pred.items():
            self.term_trackers[name].update_state(value)
        total = tf.add_n(list(y_pred.values()) + list(self.losses))
        return total / tf.distribute.get_strategy().num_replicas_in_sync

    def final_embeddings(self) -> tuple[tf.Tensor, tf.Tensor]:
        """Inference-path `(user_embeddings, item_embeddings)`: MRdIB contributes posterior means."""
        representations = self.backbone.modality_representations()
        if self.regularizer is not None:
            representations = self.regularizer(representations)
        return self.backbone.embeddings(representations)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None) -> None:
        """Builds the optimizer only, as `build()` creates every other variable. (Keras' own version first
        averages a distributed batch to trace on, which fails on dict batches across workers.)"""
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def build(self, input_shape=None) -> None:
        """Creates every variable (the regularizer's from the representations' widths) with one inference pass."""
        self.final_embeddings()
