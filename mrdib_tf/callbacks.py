"""Callbacks for `Model.fit` that Keras does not have: full-ranking validation, a loss guard that raises,
the backbone's per-epoch hook."""

from __future__ import annotations

import math
import time

import keras
import tensorflow as tf

from mrdib_tf.metrics import FullRankingEvaluator


class FullRankingValidation(keras.callbacks.Callback):
    """After every epoch, ranks every item for every validation user and puts the metrics in the logs.

    The model must return `(user_embeddings, item_embeddings)` when called without inputs (as
    `Recommender` does); the embeddings are computed by one compiled function. The metrics go into the
    epoch's logs as `val_recall@20` and so on (and `val_seconds`, the time it took), so Keras' own
    `EarlyStopping`, `ModelCheckpoint` and `TensorBoard` placed after this callback can use them.

    Args:
        evaluator: a `FullRankingEvaluator` over the training and validation items.
        prefix: prepended to every metric name in the logs.
        jit_compile: compile the embedding pass with XLA.

    Example:
        >>> validation = FullRankingValidation(FullRankingEvaluator(dataset.train, dataset.valid))
        >>> model.fit(batches, steps_per_epoch=steps, epochs=100, callbacks=[
        ...     validation, keras.callbacks.EarlyStopping("val_recall@20", mode="max", patience=20,
        ...                                               restore_best_weights=True)])
    """

    def __init__(self, evaluator: FullRankingEvaluator, prefix: str = "val_", jit_compile: bool = True) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.prefix = prefix
        self.jit_compile = jit_compile
        self._embed = None

    def evaluate(self, evaluator: FullRankingEvaluator | None = None) -> dict[str, float]:
        """The metrics of the model's current embeddings (on this callback's evaluator by default)."""
        if self._embed is None:
            self._embed = tf.function(lambda: self.model(), jit_compile=self.jit_compile)
        return (evaluator or self.evaluator).evaluate(*self._embed())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        start = time.perf_counter()
        metrics = self.evaluate()
        if logs is not None:
            logs.update({f"{self.prefix}{name}": value for name, value in metrics.items()})
            logs[f"{self.prefix}seconds"] = time.perf_counter() - start


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops `Model.fit` with a `FloatingPointError` the first step the training loss is NaN or infinite.

    Keras' `TerminateOnNaN` ends training quietly, so what follows (testing the best epoch, writing
    results, a tuner scoring the trial) would treat a diverged run as a finished one. This raises
    instead, naming the epoch, the step and every logged term, so the caller decides; a checkpoint
    written at an earlier epoch is left as it is.
    """

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if math.isfinite(loss):
            return
        terms = ", ".join(f"{name}={float(value):.4g}" for name, value in logs.items())
        raise FloatingPointError(
            f"Epoch {self._epoch + 1}, step {batch + 1}: the training loss is {loss} ({terms}; each term is "
            "its mean over the epoch so far). Lower the learning rate `lr` or the weights of the diverging "
            "terms."
        )


class EpochStart(keras.callbacks.Callback):
    """Calls the trained `Recommender`'s `backbone.begin_epoch(epoch)` before every epoch.

    Backbones whose training graph changes per epoch (FREEDOM's denoised user-item graph) need it in
    `Model.fit`'s callbacks; for the others it does nothing.
    """

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.model.backbone.begin_epoch(epoch)
