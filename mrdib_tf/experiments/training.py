"""A training run under MMRec's protocol, on Keras' `Model.fit`: full-ranking validation every epoch,
early stopping on it, the best weights restored and tested once, the run folder written."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras

from mrdib_tf.callbacks import FullRankingValidation, NonFiniteLossGuard
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.models import build_recommender, dataset_for
from mrdib_tf.metrics import FullRankingEvaluator
from mrdib_tf.recommender import Recommender

#: PyTorch's default, which MMRec trains with (Keras' is 1e-7).
ADAM_EPSILON = 1e-8
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = Path("checkpoints") / "best.weights.h5"


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


class EpochReport(keras.callbacks.Callback):
    """Times each epoch's training and prints one line per epoch: every loss term and validation Recall/NDCG@20."""

    def __init__(self, valid_metric: str, verbose: bool) -> None:
        super().__init__()
        self.monitor = f"val_{valid_metric}"
        self.verbose = verbose
        self.epoch_seconds: list[float] = []
        self.history: list[dict[str, float]] = []
        self._best = -float("inf")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        seconds = time.perf_counter() - self._start - logs.get("val_seconds", 0.0)
        self.epoch_seconds.append(seconds)
        self.history.append({"epoch": epoch + 1, **{_history_name(k): float(v) for k, v in logs.items()}})
        improved = logs.get(self.monitor, -float("inf")) > self._best
        self._best = max(self._best, logs.get(self.monitor, -float("inf")))
        if self.verbose:
            terms = " ".join(f"{k}={float(v):.4f}" for k, v in logs.items() if not k.startswith("val_"))
            print(f"epoch {epoch + 1:4d} [{seconds:.1f}s] {terms} | valid recall@20={logs['val_recall@20']:.4f} "
                  f"ndcg@20={logs['val_ndcg@20']:.4f}{' *' if improved else ''}", flush=True)


def _history_name(log_name: str) -> str:
    """`val_recall@20` (Keras' log name) as `valid_recall@20`, the name a run's history keeps."""
    return f"valid_{log_name[len('val_'):]}" if log_name.startswith("val_") else log_name


def fit(model: Recommender, dataset, config: RunConfig, run_dir: Path | None = None,
        verbose: bool = True) -> FitResult:
    """Trains `model` to early stopping on validation, restores its best epoch and tests it once.

    With `run_dir`, writes its TensorBoard logs, the best weights and `metrics.json` there.
    """
    keras.utils.set_random_seed(config.seed)
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(config.lr, epsilon=ADAM_EPSILON), jit_compile=config.jit_compile)
    monitor = f"val_{config.valid_metric}"
    validation = FullRankingValidation(
        FullRankingEvaluator(dataset.train, dataset.valid, batch_users=config.eval_batch_users),
        jit_compile=config.jit_compile,
    )
    stopping = keras.callbacks.EarlyStopping(monitor, mode="max", patience=config.patience,
                                             restore_best_weights=True)
    report = EpochReport(config.valid_metric, verbose)
    callbacks = [NonFiniteLossGuard(), validation, report, stopping]
    if run_dir is not None:
        (run_dir / CHECKPOINT_FILE).parent.mkdir(parents=True, exist_ok=True)
        callbacks += [
            keras.callbacks.ModelCheckpoint(run_dir / CHECKPOINT_FILE, monitor=monitor, mode="max",
                                            save_best_only=True, save_weights_only=True),
            keras.callbacks.TensorBoard(run_dir / "tensorboard"),
        ]
    batches = dataset.train_epochs(config.batch_size, config.seed, negative_pool=config.negative_pool)
    model.fit(batches, epochs=config.epochs, steps_per_epoch=dataset.steps_per_epoch(config.batch_size),
              callbacks=callbacks, verbose=0, shuffle=False)
    # the earliest on ties, as EarlyStopping keeps it
    best = max(report.history, key=lambda row: row[_history_name(monitor)])
    test = validation.evaluate(FullRankingEvaluator(dataset.train, dataset.test, batch_users=config.eval_batch_users))
    result = FitResult(
        best_epoch=best["epoch"],
        valid={k[len("valid_"):]: v for k, v in best.items() if k.startswith("valid_") and k != "valid_seconds"},
        test=test,
        epoch_seconds=report.epoch_seconds,
        eval_seconds=[row["valid_seconds"] for row in report.history],
        history=report.history,
        stopped_early=stopping.stopped_epoch > 0,
    )
    if run_dir is not None:
        write_atomically(run_dir / METRICS_FILE, result.to_json().encode())
    return result


def default_run_dir(config: RunConfig) -> Path:
    """`runs/<dataset>-<backbone>[-mrdib]-<UTC time>` under the working directory."""
    variant = "mrdib" if config.mrdib else "bare"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / f"{config.dataset_name}-{config.backbone}-{variant}-{stamp}"


def train(config: RunConfig, verbose: bool = True) -> tuple[FitResult, Path]:
    """Loads the data, builds the model named by `config`, trains it to early stopping, writes the run folder.

    Returns the result and the run folder (`config.run_dir`, or a new one under `runs/`).
    """
    dataset = dataset_for(config)
    keras.utils.set_random_seed(config.seed)
    model = build_recommender(dataset, config)
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir / CONFIG_FILE, config.to_json().encode())
    return fit(model, dataset, config, run_dir, verbose), run_dir
