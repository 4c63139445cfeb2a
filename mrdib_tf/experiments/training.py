"""A training run under MMRec's protocol, on Keras' `Model.fit`: full-ranking validation every epoch,
early stopping on it, the best weights restored and tested once, the run folder written (and resumed
after a kill: `run_folder`, `resume`)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from mrdib_tf.callbacks import EpochStart, FullRankingValidation, NonFiniteLossGuard
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.distribution import compile_limits, is_chief, make_strategy, shard_by_batch, worker_run_dir
from mrdib_tf.experiments.models import build_recommender, dataset_for
from mrdib_tf.experiments.resume import EpochBackup, ResumableEarlyStopping, ResumeState, discard_resume_state
from mrdib_tf.experiments.run_folder import CHECKPOINT_FILE, METRICS_FILE, claim_run_folder, write_atomically
from mrdib_tf.metrics import FullRankingEvaluator
from mrdib_tf.precision import FULL_PRECISION, MIXED_POLICY
from mrdib_tf.recommender import Recommender

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


class EpochReport(keras.callbacks.Callback):
    """Times each epoch's training and prints one line per epoch: every loss term and validation Recall/NDCG@20."""

    def __init__(self, valid_metric: str, verbose: bool, resumed: ResumeState | None = None) -> None:
        super().__init__()
        self.monitor = f"val_{valid_metric}"
        self.verbose = verbose
        self.epoch_seconds: list[float] = list(resumed.epoch_seconds) if resumed else []
        self.history: list[dict[str, float]] = list(resumed.history) if resumed else []
        self._best = max((row[_history_name(self.monitor)] for row in self.history), default=-float("inf"))

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


def whole_epoch_execution(steps_per_epoch: int, limit: int) -> int:
    """The most training steps per compiled call, at most `limit`, that divide an epoch evenly.

    Keras runs `steps_per_execution` steps per call and, on an endless pipeline, an epoch of S steps
    as ceil(S / N) calls of N steps each: with N not dividing S every epoch would take more batches than
    it has and shift all later epochs. A divisor of S keeps every epoch exactly the batches of the
    one-step-per-call run (and so its losses and metrics), at the speed of fewer calls.
    """
    if steps_per_epoch < 1 or limit < 1:
        raise ValueError(f"steps_per_epoch and limit must be >= 1, got {steps_per_epoch} and {limit}.")
    return max(n for n in range(1, min(limit, steps_per_epoch) + 1) if steps_per_epoch % n == 0)


def compile_for_training(model: Recommender, config: RunConfig, steps_per_epoch: int) -> None:
    """Builds and compiles `model` as every run trains it: MMRec's Adam, XLA, whole epochs per call (as far
    as the strategy in scope allows: `distribution.compile_limits`)."""
    jit_compile, steps_limit = compile_limits(tf.distribute.get_strategy(), config.jit_compile,
                                              config.steps_per_execution)
    optimizer = keras.optimizers.Adam(config.lr, epsilon=ADAM_EPSILON)
    if config.mixed_precision:  # float16 gradients of small losses underflow without it
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.build()
    model.compile(optimizer=optimizer, jit_compile=jit_compile,
                  steps_per_execution=whole_epoch_execution(steps_per_epoch, steps_limit))


def learning_rate_decay(config: RunConfig) -> keras.callbacks.LearningRateScheduler:
    """MMRec's `learning_rate_scheduler`: epoch e (from 0) trains at lr x lr_decay^(e / lr_decay_epochs).

    Set from the epoch index alone before each epoch, so a resumed run continues the same schedule.
    """
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, _: config.lr * config.lr_decay ** (epoch / config.lr_decay_epochs))


def fit(model: Recommender, dataset, config: RunConfig, run_dir: Path | None = None,
        verbose: bool = True, resume_dir: Path | None = None) -> FitResult:
    """Trains `model` to early stopping on validation, restores its best epoch and tests it once.

    With `run_dir`, writes its TensorBoard logs, the best weights, the state after every epoch and
    `metrics.json` there, and continues from that state if an earlier training of it was interrupted
    (from `resume_dir`'s state when given: a worker resumes from its chief's, so all resume one epoch).
    """
    resume_dir = resume_dir or run_dir
    resumed = ResumeState.read(resume_dir) if resume_dir is not None else None
    keras.utils.set_random_seed(config.seed)
    steps = dataset.steps_per_epoch(config.batch_size)
    compile_for_training(model, config, steps)
    best_weights = _restore(model, resume_dir, resumed) if resumed else None
    monitor = f"val_{config.valid_metric}"
    validation = FullRankingValidation(
        FullRankingEvaluator(dataset.train, dataset.valid, batch_users=config.eval_batch_users),
        jit_compile=config.jit_compile,
    )
    stopping = ResumableEarlyStopping(monitor, mode="max", patience=config.patience, restore_best_weights=True,
                                      resume_from=resumed.stopping if resumed else None, best_weights=best_weights)
    report = EpochReport(config.valid_metric, verbose, resumed)
    callbacks = [EpochStart(), NonFiniteLossGuard(), validation, report, stopping]
    if config.lr_decay != 1.0:
        callbacks.insert(1, learning_rate_decay(config))  # before the report, which logs its rate
    if run_dir is not None:
        (run_dir / CHECKPOINT_FILE).parent.mkdir(parents=True, exist_ok=True)
        callbacks += [
            keras.callbacks.ModelCheckpoint(run_dir / CHECKPOINT_FILE, monitor=monitor, mode="max",
                                            save_best_only=True, save_weights_only=True,
                                            initial_value_threshold=resumed.stopping["best"] if resumed else None),
            keras.callbacks.TensorBoard(run_dir / "tensorboard"),
            EpochBackup(run_dir, report, stopping),  # last: it saves the others' state
        ]
    first_epoch = resumed.epochs_done if resumed else 0
    if resumed and (resumed.stopping["stopped"] or first_epoch >= config.epochs):
        model.set_weights(best_weights)  # training had ended; only testing was left
    else:
        batches = shard_by_batch(dataset.train_epochs(config.batch_size, config.seed, first_epoch=first_epoch,
                                                      negative_pool=config.negative_pool))
        model.fit(batches, epochs=config.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
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
        stopped_early=len(report.history) < config.epochs,
    )
    if run_dir is not None:
        write_atomically(run_dir / METRICS_FILE, result.to_json().encode())
        discard_resume_state(run_dir)  # a finished run never resumes; the state is a model + optimizer copy
    return result


def _restore(model: Recommender, run_dir: Path, resumed: ResumeState) -> list:
    """Loads an interrupted run's last state into `model`; returns its best epoch's weights (for the end)."""
    if not model.optimizer.built:  # so that the checkpoints' optimizer slots have variables to load into
        model.optimizer.build(model.trainable_variables)
    model.load_weights(run_dir / CHECKPOINT_FILE)
    best_weights = model.get_weights()
    resumed.restore(model, run_dir)
    return best_weights


def train(config: RunConfig, verbose: bool = True) -> tuple[FitResult, Path]:
    """Loads the data, builds the model named by `config`, trains it to early stopping, writes the run folder.

    The folder is `config.run_dir`, or a new one under `runs/`. If it holds an interrupted run of the same
    settings, training continues from its last finished epoch and ends as the uninterrupted run would.

    Returns:
        The result and the run folder.

    Raises:
        ValueError: the folder holds a finished run, a run of other settings, or is in use
            (`run_folder.claim_run_folder`).
    """
    strategy = make_strategy(config.strategy, config.cpu_devices)  # before TensorFlow runs anything
    keras.mixed_precision.set_global_policy(MIXED_POLICY if config.mixed_precision else FULL_PRECISION)
    dataset = dataset_for(config)  # then: bad data stops the run before anything is written
    chief, resume_dir = is_chief(), None
    if not chief:
        resume_dir = _chief_folder(config)
        config = config.replace(run_dir=str(worker_run_dir(resume_dir)))
    folder = claim_run_folder(config)
    try:
        with strategy.scope():
            keras.utils.set_random_seed(config.seed)
            model = build_recommender(dataset, config)
            if verbose and chief:
                state = "resuming the interrupted run in" if folder.resuming else "run folder:"
                print(f"{state} {folder.path} (to resume if interrupted: the same command with --run-dir "
                      f"{folder.path})", flush=True)
            return fit(model, dataset, config, folder.path, verbose and chief, resume_dir), folder.path
    finally:
        folder.release()


def _chief_folder(config: RunConfig) -> Path:
    """The run folder a non-chief worker resumes from: its chief's, which must name one and be unfinished."""
    if not config.run_dir:
        raise ValueError("`strategy=multi-worker` needs `run_dir`, the same on every worker: the chief "
                         "writes the run there, and the others keep their state beside it.")
    chief_dir = Path(config.run_dir)
    if (chief_dir / METRICS_FILE).exists():
        raise ValueError(f"{chief_dir}: holds a finished run; this worker has nothing to train.")
    return chief_dir
