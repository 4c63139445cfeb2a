"""The generic training loop: XLA-compiled steps, full-ranking validation each epoch, early stopping."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mrdib_tf.metrics import FullRankingEvaluator
from mrdib_tf.mine import CRITIC_LEARNING_RATE
from mrdib_tf.config import RunConfig
from mrdib_tf.recommender import build_recommender

logger = logging.getLogger(__name__)
#: PyTorch's default, which MMRec trains with (Keras' is 1e-7).
ADAM_EPSILON = 1e-8


@dataclass
class FitResult:
    """What a finished run reports; `metrics.json` is this, serialised."""

    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    epoch_seconds: list[float]
    eval_seconds: list[float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def write_atomically(path: Path, data: bytes) -> None:
    """Writes `data` to a temporary sibling and renames it over `path`, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    temporary.replace(path)


class WeightSnapshot:
    """The trainable weights of a model at one moment, restorable and storable as `.npz`.

    Only trainable variables are kept: frozen tables (features read as they are, graph edges) are
    rebuilt from the dataset. Feature tables that a backbone fine-tunes (MGCN's) are trainable and kept.
    """

    def __init__(self, values: list[np.ndarray], names: list[str]):
        self.values = values
        self.names = names

    @classmethod
    def of(cls, model: keras.Model) -> "WeightSnapshot":
        variables = model.trainable_variables
        return cls([np.array(v.numpy()) for v in variables], [v.path for v in variables])

    def restore(self, model: keras.Model) -> None:
        variables = model.trainable_variables
        if len(variables) != len(self.values):
            raise ValueError(
                f"Checkpoint holds {len(self.values)} variables, the model has {len(variables)}: "
                "was it written by a run with another backbone or MRdIB setting?"
            )
        for variable, value, name in zip(variables, self.values, self.names):
            if tuple(variable.shape) != value.shape:
                raise ValueError(
                    f"Checkpoint variable '{name}' has shape {value.shape}, the model's "
                    f"'{variable.path}' has {tuple(variable.shape)}."
                )
            variable.assign(value)

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, names=np.array(self.names), **{f"v{i}": v for i, v in enumerate(self.values)})
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "WeightSnapshot":
        with np.load(path) as archive:
            names = [str(n) for n in archive["names"]]
            return cls([archive[f"v{i}"] for i in range(len(names))], names)


class Trainer:
    """Trains a `Recommender` on a `PreparedDataset` under MMRec's protocol.

    Every epoch: one pass of shuffled (user, positive, negative) batches through an XLA-compiled step,
    then full-ranking evaluation on validation. The best epoch by `valid_metric` wins; training stops
    after `patience` epochs without improvement; the best weights are restored and evaluated on test
    once.

    Args:
        model: a `Recommender` (backbone, optionally with MRdIB).
        dataset: the `PreparedDataset` to train and evaluate on.
        config: the run's `RunConfig` (epochs, patience, batch size, lr, seed, jit_compile, ...).
        run_dir: where TensorBoard logs, the best checkpoint and `metrics.json` go; None writes nothing.
        verbose: print a progress bar and a line per epoch.
    """

    def __init__(self, model, dataset, config, run_dir: Path | None = None, verbose: bool = True):
        self.model = model
        self.dataset = dataset
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.verbose = verbose
        self.optimizer = keras.optimizers.Adam(learning_rate=config.lr, epsilon=ADAM_EPSILON)
        self.critic_optimizer = keras.optimizers.Adam(learning_rate=config.critic_lr or CRITIC_LEARNING_RATE)
        self.valid_evaluator = FullRankingEvaluator(
            dataset.train, dataset.valid, batch_users=config.eval_batch_users
        )
        self.test_evaluator = FullRankingEvaluator(
            dataset.train, dataset.test, batch_users=config.eval_batch_users
        )
        self._train_step = tf.function(self._step, jit_compile=config.jit_compile)
        self._embed = tf.function(model.final_embeddings, jit_compile=config.jit_compile)

    def _step(self, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One step of MRdIB's min-max: the model descends "loss" (which holds +alpha2 * the MI estimate),
        the critics ascend the estimate with their own optimizer, both from the same forward pass."""
        critics = self.model.critic_variables
        with tf.GradientTape(persistent=bool(critics)) as tape:
            losses = self.model.compute_losses(batch, training=True)
            critic_loss = -losses["mi_estimate"] if critics else None
        variables = self.model.model_variables
        self.optimizer.apply_gradients(zip(tape.gradient(losses["loss"], variables), variables))
        if critics:
            self.critic_optimizer.apply_gradients(zip(tape.gradient(critic_loss, critics), critics))
        return losses

    def build(self) -> None:
        """Creates every variable eagerly, so compiled steps never create state."""
        self.model.compute_losses(next(self.batch_stream()), training=True)
        self.optimizer.build(self.model.model_variables)
        if self.model.critic_variables:
            self.critic_optimizer.build(self.model.critic_variables)

    def batch_stream(self, first_epoch: int = 0) -> Iterator[Mapping[str, tf.Tensor]]:
        """One iterator over every epoch's batches, so the input pipeline is built once per run."""
        config = self.config
        return iter(self.dataset.train_epochs(config.batch_size, config.seed, first_epoch, config.negative_pool))

    def evaluate(self, evaluator: FullRankingEvaluator) -> dict[str, float]:
        user_embeddings, item_embeddings = self._embed()
        return evaluator.evaluate(user_embeddings, item_embeddings)

    def train_epoch(self, epoch: int, batches: Iterator[Mapping[str, tf.Tensor]]) -> dict[str, float]:
        """One pass over the training data, the next epoch's worth of `batches` (see `batch_stream`).

        Returns each loss component's mean over the epoch's steps.
        """
        steps = self.dataset.steps_per_epoch(self.config.batch_size)
        progress = keras.utils.Progbar(steps, verbose=1 if self.verbose else 0, unit_name="step")
        sums: dict[str, float] = {}
        for step in range(steps):
            losses = {k: float(v) for k, v in self._train_step(next(batches)).items()}
            if not np.isfinite(losses["loss"]):
                raise FloatingPointError(
                    f"Epoch {epoch + 1}, step {step + 1}: the loss became {losses['loss']} "
                    f"(components: {losses}). Lower --lr or the MRdIB alphas."
                )
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            progress.update(step + 1, values=[("loss", losses["loss"])])
        return {name: total / steps for name, total in sums.items()}

    def fit(self) -> FitResult:
        """Trains to early stopping; restores and tests the best epoch; writes the run folder."""
        config = self.config
        keras.utils.set_random_seed(config.seed)
        self.build()
        writer = None
        if self.run_dir is not None:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            write_atomically(self.run_dir / "config.json", config.to_json().encode())
            writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard"))
        best_value, best_epoch, best_valid, best_weights = -np.inf, 0, {}, WeightSnapshot.of(self.model)
        epoch_seconds, eval_seconds, history = [], [], []
        stale = 0
        batches = self.batch_stream()
        for epoch in range(config.epochs):
            start = time.perf_counter()
            losses = self.train_epoch(epoch, batches)
            epoch_seconds.append(time.perf_counter() - start)
            start = time.perf_counter()
            valid = self.evaluate(self.valid_evaluator)
            eval_seconds.append(time.perf_counter() - start)
            history.append({"epoch": epoch + 1, **losses, **{f"valid_{k}": v for k, v in valid.items()}})
            if writer is not None:
                self._log_epoch(writer, epoch + 1, losses, valid, epoch_seconds[-1])
            improved = valid[config.valid_metric] > best_value
            if improved:
                best_value, best_epoch, best_valid, stale = valid[config.valid_metric], epoch + 1, valid, 0
                best_weights = WeightSnapshot.of(self.model)
                if self.run_dir is not None:
                    best_weights.save(self.run_dir / "checkpoints" / "best.weights.npz")
            else:
                stale += 1
            if self.verbose:
                print(self._epoch_line(epoch + 1, losses, valid, epoch_seconds[-1], improved), flush=True)
            if stale >= config.patience:
                break
        best_weights.restore(self.model)
        test = self.evaluate(self.test_evaluator)
        result = FitResult(
            best_epoch=best_epoch, valid=best_valid, test=test, epoch_seconds=epoch_seconds,
            eval_seconds=eval_seconds, history=history, stopped_early=stale >= config.patience,
        )
        if self.run_dir is not None:
            write_atomically(self.run_dir / "metrics.json", result.to_json().encode())
        return result

    @staticmethod
    def _log_epoch(writer, epoch: int, losses: dict, valid: dict, seconds: float) -> None:
        with writer.as_default(step=epoch):
            for name, value in losses.items():
                tf.summary.scalar(f"loss/{name}", value)
            for name, value in valid.items():
                tf.summary.scalar(f"valid/{name}", value)
            tf.summary.scalar("time/epoch_seconds", seconds)
        writer.flush()

    def _epoch_line(self, epoch: int, losses: dict, valid: dict, seconds: float, improved: bool) -> str:
        parts = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
        marker = " *" if improved else ""
        return (
            f"epoch {epoch:4d} [{seconds:.1f}s] {parts} | valid recall@20={valid['recall@20']:.4f} "
            f"ndcg@20={valid['ndcg@20']:.4f}{marker}"
        )


def default_run_dir(config: RunConfig) -> Path:
    """`runs/<dataset>-<backbone>[-mrdib]-<UTC time>` under the working directory."""
    variant = "mrdib" if config.mrdib else "bare"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / f"{config.dataset_name}-{config.backbone}-{variant}-{stamp}"


def train(config: RunConfig, verbose: bool = True) -> tuple[FitResult, Path]:
    """Loads the data, builds the model named by `config`, trains it to early stopping, writes the run folder.

    Returns the result and the run folder (`config.run_dir`, or a new one under `runs/`).
    """
    from mrdib_tf.runs import dataset_for

    dataset = dataset_for(config)
    keras.utils.set_random_seed(config.seed)
    model = build_recommender(dataset, config)
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    result = Trainer(model, dataset, config, run_dir=run_dir, verbose=verbose).fit()
    return result, run_dir
