"""Resuming a killed training where it stopped, bit for bit: the state after every finished epoch.

Keras' `BackupAndRestore` saves the weights and the epoch; a run here needs more to continue exactly as an
uninterrupted one would: the optimizers' slots (the model's and the critics'), the random streams'
counters (the noise generator's state is a variable but not a weight), early stopping's patience count and
best value, the best-checkpoint callback's best value, and the history so far. The data pipeline's shuffle
and negatives are stateless, keyed by (seed, epoch), so the epoch number restores them.

After each epoch `EpochBackup` writes `resume/epoch-<N>.weights.h5` (every variable of the model and its
optimizers) and then `resume/state.json`, which names that file; both by rename, so a kill at any moment
leaves the previous consistent pair. `ResumeState.read` reads the pair back.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mrdib_tf.experiments.run_folder import atomic_target, write_atomically

RESUME_DIR = "resume"
STATE_FILE = "state.json"


@dataclass
class ResumeState:
    """Where a run stood after its last finished epoch.

    Attributes:
        epochs_done: finished epochs (the next epoch's 0-based index).
        weights_file: the file, in the resume folder, holding the model's and optimizers' variables.
        history, epoch_seconds: the `EpochReport` rows and timings so far.
        stopping: early stopping's `wait`, `best` and `best_epoch`, and whether it had stopped training.
        streams: every model variable that is not a weight (the random streams' counters), in the
            model's order (their paths carry process-wide name counters, so positions are what matches).
    """

    epochs_done: int
    weights_file: str
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    stopping: dict[str, Any] = field(default_factory=dict)
    streams: list[list] = field(default_factory=list)

    @classmethod
    def read(cls, run_dir: Path) -> "ResumeState | None":
        """The run's last saved state, or None if it never finished an epoch."""
        path = run_dir / RESUME_DIR / STATE_FILE
        if not path.exists():
            return None
        try:
            state = cls(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path}: not a resume state written by this version ({error}); "
                             "delete the run folder to train from the start.") from error
        if not (run_dir / RESUME_DIR / state.weights_file).is_file():
            raise ValueError(f"{path}: names {state.weights_file}, which is missing; "
                             "delete the run folder to train from the start.")
        return state

    def restore(self, model: keras.Model, run_dir: Path) -> None:
        """Loads the saved variables into a built, compiled `model` whose optimizer is built."""
        model.load_weights(run_dir / RESUME_DIR / self.weights_file)
        variables = _stream_variables(model)
        shapes = [list(np.shape(value)) for value in self.streams]
        if shapes != [list(v.shape) for v in variables]:
            raise ValueError(f"{run_dir / RESUME_DIR / STATE_FILE}: saved random-stream states of shapes {shapes} "
                             "do not fit this model; the run folder is from another model.")
        for variable, value in zip(variables, self.streams):
            variable.assign(np.asarray(value, dtype=variable.dtype))


def discard_resume_state(run_dir: Path) -> None:
    """Deletes a finished run's resume state (as large as the model and its optimizer slots together)."""
    shutil.rmtree(run_dir / RESUME_DIR, ignore_errors=True)


def _stream_variables(model: keras.Model) -> list:
    """The model's variables that `save_weights` leaves out (random-stream counters, not metrics')."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' `EarlyStopping`, started from a resumed run's patience count, best value and best weights."""

    def __init__(self, *args: Any, resume_from: dict[str, Any] | None = None,
                 best_weights: list[np.ndarray] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume_from = resume_from or {}
        self._resumed_best_weights = best_weights

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self._resume_from:
            self.wait = self._resume_from["wait"]
            self.best = self._resume_from["best"]
            self.best_epoch = self._resume_from["best_epoch"]
            self.best_weights = self._resumed_best_weights


class EpochBackup(keras.callbacks.Callback):
    """After every epoch, saves what `ResumeState` restores. Put it after every callback whose state it saves."""

    def __init__(self, run_dir: Path, report: Any, stopping: keras.callbacks.EarlyStopping) -> None:
        super().__init__()
        self.folder = run_dir / RESUME_DIR
        self.report, self.stopping = report, stopping

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        weights_file = f"epoch-{epoch + 1:05d}.weights.h5"
        with atomic_target(self.folder / weights_file) as temporary:
            self.model.save_weights(temporary)
        state = ResumeState(
            epochs_done=epoch + 1,
            weights_file=weights_file,
            history=self.report.history,
            epoch_seconds=self.report.epoch_seconds,
            stopping={"wait": self.stopping.wait, "best": _plain(self.stopping.best),
                      "best_epoch": self.stopping.best_epoch, "stopped": bool(self.model.stop_training)},
            streams=[v.numpy().tolist() for v in _stream_variables(self.model)],
        )
        write_atomically(self.folder / STATE_FILE, json.dumps(asdict(state)).encode())
        for older in self.folder.glob("epoch-*.weights.h5"):
            if older.name != weights_file:
                older.unlink()


def _plain(value: Any) -> Any:
    return None if value is None else float(value)
