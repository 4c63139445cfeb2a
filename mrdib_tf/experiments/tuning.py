"""Hyper-parameter search over MRdIB's weights (and optionally the learning rate) with KerasTuner.

A trial is one training run of the configuration the oracle proposes (`mrdib_tf.experiments.training.train`, early
stopping on validation), in `<folder>/trials/trial_<id>/`. The oracle is told validation metrics only
(the objective is `valid_<RunConfig.valid_metric>`, maximised): the choice never sees test. The tuners
subclass KerasTuner's and override `run_trial`, so no Keras model goes through KerasTuner's fit
machinery.

The oracle's state lives in `<folder>/keras_tuner/` (KerasTuner, overwrite=False): running the same
search again reloads it, keeps every finished trial, re-runs the trial that was interrupted with the same
values, and continues to `max_trials`. At the end the best trial's configuration is retrained with the
same seed into `<folder>/best/` and its test metrics are reported once.

Hyperband: its epoch budget per trial ("tuner/epochs") becomes the trial's `epochs` (with early stopping
still on); a trial trains from scratch rather than continuing the previous round's weights, and
`max_trials` caps the number of trials of the schedule set by `--epochs` (Hyperband's max_epochs).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_tuner

from mrdib_tf.experiments.config import RunConfig, setting_differences
from mrdib_tf.experiments.progress import RunClock, format_duration
from mrdib_tf.experiments.results import NON_EXPERIMENT_SETTINGS, RunSummary, train_or_reuse
from mrdib_tf.experiments.trial_table import TrialRecord, plot_objective, write_trial_tables

TUNERS = ("bayesian", "random", "hyperband")
#: The MRdIB paper searches each alpha in {1e-4, 1e-3, 5e-3, 1e-2, 5e-2}; we search that range log-uniformly.
PAPER_ALPHA_RANGE = (1e-4, 5e-2)
DEFAULT_LR_RANGE = (1e-4, 1e-2)
ALPHAS = ("alpha_kl", "alpha_mi", "alpha_unique")
METRIC_FAMILIES = ("recall", "ndcg", "precision", "map")
PROJECT_NAME = "keras_tuner"
SETTINGS_FILE = "search.json"
BEST_FILE = "best.json"


@dataclass(frozen=True)
class SearchSettings:
    """How to search (the run settings themselves are the base `RunConfig`).

    Attributes:
        tuner: "bayesian" (Gaussian-process BayesianOptimization), "random" or "hyperband".
        max_trials: number of trials (for Hyperband, a cap on its schedule).
        tune_lr: also search the Adam learning rate (log-uniform over `lr_range`).
        alpha_range: (low, high) of the log-uniform range of alpha_kl, alpha_mi, alpha_unique.
        lr_range: (low, high) of the learning rate's range when `tune_lr`.
        initial_points: Bayesian: random trials before the Gaussian process proposes; None picks
            min(3 x tuned dimensions (KerasTuner's default), max(2, max_trials // 2)) so a short
            search still gets model-based proposals.
        hyperband_factor: Hyperband's reduction factor.
    """

    tuner: str = "bayesian"
    max_trials: int = 12
    tune_lr: bool = False
    alpha_range: tuple[float, float] = PAPER_ALPHA_RANGE
    lr_range: tuple[float, float] = DEFAULT_LR_RANGE
    initial_points: int | None = None
    hyperband_factor: int = 3

    def __post_init__(self) -> None:
        if self.tuner not in TUNERS:
            raise ValueError(f"Unknown tuner '{self.tuner}'; choose one of {', '.join(TUNERS)}.")
        if self.max_trials < 1:
            raise ValueError(f"--max-trials must be at least 1, got {self.max_trials}.")
        for name, (low, high) in (("alpha", self.alpha_range), ("lr", self.lr_range)):
            if not 0 < low < high:
                raise ValueError(f"--{name}-range needs 0 < LOW < HIGH for a log-uniform range, got {low} {high}.")
        if self.initial_points is not None and self.initial_points < 1:
            raise ValueError(f"--initial-points must be at least 1, got {self.initial_points}.")
        if self.hyperband_factor < 2:
            raise ValueError(f"--hyperband-factor must be at least 2, got {self.hyperband_factor}.")

    @property
    def tuned(self) -> tuple[str, ...]:
        return ALPHAS + (("lr",) if self.tune_lr else ())

    def bayesian_initial_points(self) -> int:
        if self.initial_points is not None:
            return self.initial_points
        return min(3 * len(self.tuned), max(2, self.max_trials // 2))


def search_space(settings: SearchSettings) -> keras_tuner.HyperParameters:
    """alpha_kl, alpha_mi and alpha_unique (and lr when tuned), each log-uniform over its range."""
    space = keras_tuner.HyperParameters()
    for name in ALPHAS:
        space.Float(name, *settings.alpha_range, sampling="log")
    if settings.tune_lr:
        space.Float("lr", *settings.lr_range, sampling="log")
    return space


def trial_config(base: RunConfig, values: dict[str, Any], run_dir: str | Path) -> RunConfig:
    """`base` with the trial's values: the tuned settings, and Hyperband's epoch budget as `epochs`."""
    changes = {name: float(values[name]) for name in (*ALPHAS, "lr") if name in values}
    if "tuner/epochs" in values:
        changes["epochs"] = min(base.epochs, int(values["tuner/epochs"]))
    return base.replace(**changes, run_dir=str(run_dir))


def check_valid_metric(name: str) -> None:
    """Raises a ValueError unless `name` is a metric the evaluator reports, like `recall@20`."""
    from mrdib_tf.metrics import DEFAULT_KS

    match = re.fullmatch(r"([a-z]+)@(\d+)", name)
    if not match or match[1] not in METRIC_FAMILIES or int(match[2]) not in DEFAULT_KS:
        raise ValueError(
            f"--valid-metric '{name}' is not a metric the evaluator reports; use one of "
            f"{', '.join(METRIC_FAMILIES)} at @{', @'.join(map(str, DEFAULT_KS))} (e.g. recall@20)."
        )


class _TrialFunctionTuner:
    """Mixin over a KerasTuner tuner: a trial is `run_trial_fn(trial)`; `trial_ended_fn` follows each trial."""

    def __init__(self, *args, run_trial_fn: Callable, trial_ended_fn: Callable, **kwargs):
        self._run_trial_fn = run_trial_fn
        self._trial_ended_fn = trial_ended_fn
        super().__init__(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        return self._run_trial_fn(trial)

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)  # the oracle records the trial and saves its state first
        self._trial_ended_fn(trial)


class BayesianTuner(_TrialFunctionTuner, keras_tuner.BayesianOptimization):
    """KerasTuner's BayesianOptimization, one training run per trial."""


class RandomTuner(_TrialFunctionTuner, keras_tuner.RandomSearch):
    """KerasTuner's RandomSearch, one training run per trial."""


class HyperbandTuner(_TrialFunctionTuner, keras_tuner.Hyperband):
    """KerasTuner's Hyperband, one training run per trial of `tuner/epochs` epochs."""


@dataclass(frozen=True)
class SearchOutcome:
    """The finished search: the chosen trial, its retrained run, and every trial."""

    best_trial: int
    best_id: str
    best_objective: float
    best_config: RunConfig
    retrained: RunSummary
    records: list[TrialRecord]


class Search:
    """One resumable search in `folder` over `base` with `settings`.

    Args:
        base: the run settings every trial starts from (dataset, backbone, epochs, patience, seed, ...).
        settings: what to search and how.
        folder: the search folder; everything is written under it.
        train_fn: trains a config and returns its `FitResult`, writing `config.run_dir`
            (normally `lambda c: train(c)[0]`; tests inject their own).
        report: where progress lines go.

    Raises:
        ValueError: MRdIB is off, the validation metric is unknown, or `folder` holds a search with
            other settings.
    """

    def __init__(self, base: RunConfig, settings: SearchSettings, folder: str | Path,
                 train_fn: Callable[[RunConfig], Any], report: Callable[[str], None] = print):
        if not base.mrdib:
            raise ValueError("The search tunes MRdIB's alphas: it needs MRdIB on (drop --no-mrdib).")
        check_valid_metric(base.valid_metric)
        self.folder = Path(folder)
        self.base = base.replace(run_dir=str(self.folder))
        self.settings = settings
        self.train_fn = train_fn
        self.report = report
        self.objective = f"valid_{base.valid_metric}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._check_settings_file()
        self.tuner = self._build_tuner()
        self.oracle = self.tuner.oracle
        self._durations = [r.seconds for r in self.records() if r.seconds is not None]
        self.clock = RunClock(earlier_seconds=sum(self._durations))

    # -- set-up ------------------------------------------------------------------------------------

    def _check_settings_file(self) -> None:
        """Writes `search.json`, or checks it: a resumed search must run with the settings it started with."""
        path = self.folder / SETTINGS_FILE
        current = {"base_config": dataclasses.asdict(self.base), "search": dataclasses.asdict(self.settings)}
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            bookkeeping = [k for k in NON_EXPERIMENT_SETTINGS if k != "seed"]
            differences = setting_differences(RunConfig(**stored["base_config"]), self.base, ignore=bookkeeping)
            stored_search = SearchSettings(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in stored["search"].items()
            })
            differences |= {
                k: (getattr(stored_search, k), getattr(self.settings, k))
                for k in ("tuner", "tune_lr", "alpha_range", "lr_range", "initial_points", "hyperband_factor")
                if getattr(stored_search, k) != getattr(self.settings, k)
            }
            if differences:
                described = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differences.items())
                raise ValueError(
                    f"{self.folder}: holds a search with other settings ({described}). Run it with the same "
                    "flags to continue it (only --max-trials may change), or choose another --run-dir."
                )
        path.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")

    def _build_tuner(self) -> keras_tuner.Tuner:
        settings = self.settings
        common = dict(
            objective=keras_tuner.Objective(self.objective, direction="max"),
            hyperparameters=search_space(settings), tune_new_entries=False, allow_new_entries=False,
            seed=self.base.seed, directory=str(self.folder), project_name=PROJECT_NAME, overwrite=False,
            run_trial_fn=self._run_trial, trial_ended_fn=self._trial_ended,
        )
        if settings.tuner == "bayesian":
            return BayesianTuner(max_trials=settings.max_trials,
                                 num_initial_points=settings.bayesian_initial_points(), **common)
        if settings.tuner == "random":
            return RandomTuner(max_trials=settings.max_trials, **common)
        tuner = HyperbandTuner(max_epochs=self.base.epochs, factor=settings.hyperband_factor, **common)
        tuner.oracle.max_trials = settings.max_trials  # Hyperband has no trial budget of its own: cap it
        return tuner

    # -- trials ------------------------------------------------------------------------------------

    def trial_folder(self, trial_id: str) -> Path:
        return self.folder / "trials" / f"trial_{trial_id}"

    def _number(self, trial_id: str) -> int:
        return self.oracle.start_order.index(trial_id) + 1

    def _of_total(self) -> str:
        return f"{'at most ' if self.settings.tuner == 'hyperband' else ''}{self.settings.max_trials}"

    def _describe(self, config: RunConfig) -> str:
        text = " ".join(f"{a}={getattr(config, a):.3g}" for a in ALPHAS) + f" lr={config.lr:.3g}"
        return text + (f" epochs<={config.epochs}" if self.settings.tuner == "hyperband" else "")

    def _run_trial(self, trial) -> dict[str, float]:
        config = trial_config(self.base, trial.hyperparameters.values, self.trial_folder(trial.trial_id))
        self.report(f"[tune] trial {self._number(trial.trial_id)} of {self._of_total()}: "
                    f"{self._describe(config)} -> {config.run_dir}")
        start = time.monotonic()
        try:
            summary, reused = train_or_reuse(config, self.train_fn)
        except ValueError as error:  # bad data or settings: every trial would fail alike, so stop
            raise keras_tuner.errors.FatalValueError(str(error)) from error
        seconds = summary.seconds if reused else time.monotonic() - start
        return {  # validation only: the oracle never sees test
            self.objective: summary.valid[self.base.valid_metric],
            "best_epoch": summary.best_epoch, "epochs": summary.epochs, "seconds": seconds,
        }

    def _trial_ended(self, trial) -> None:
        records = self.records()
        self.write_tables(records)
        number = self._number(trial.trial_id)
        record = records[number - 1]
        remaining = self.settings.max_trials - len(self.oracle.end_order)
        if record.status != "COMPLETED" or record.seconds is None:
            message = (trial.message or "no message").strip().splitlines()[-1]
            self.report(f"[tune] trial {number} of {self._of_total()} {record.status}: {message} "
                        f"(traceback in {self.folder / PROJECT_NAME}/trial_{trial.trial_id}/trial.json)")
            return
        self._durations.append(record.seconds)
        best = self.best_record(records)
        self.report(
            f"[tune] trial {number} of {self._of_total()} done in {format_duration(record.seconds)}: "
            f"{self.objective} = {record.objective:.4f} (best epoch {record.best_epoch}) | best so far "
            f"{best.objective:.4f} (trial {best.trial}) | {self.clock.status(self._durations, remaining)}"
        )

    def records(self) -> list[TrialRecord]:
        """Every trial the oracle has started, in start order, from its saved state."""
        records = []
        for number, trial_id in enumerate(self.oracle.start_order, start=1):
            trial = self.oracle.trials[trial_id]
            config = trial_config(self.base, trial.hyperparameters.values, self.trial_folder(trial_id))

            def measured(name: str) -> float | None:
                return trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None

            epochs, best_epoch = measured("epochs"), measured("best_epoch")
            records.append(TrialRecord(
                trial=number, id=trial_id, status=str(trial.status),
                alpha_kl=config.alpha_kl, alpha_mi=config.alpha_mi, alpha_unique=config.alpha_unique, lr=config.lr,
                objective=measured(self.objective), seconds=measured("seconds"),
                epochs=None if epochs is None else int(epochs),
                best_epoch=None if best_epoch is None else int(best_epoch),
            ))
        return records

    @staticmethod
    def best_record(records: list[TrialRecord]) -> TrialRecord | None:
        """The completed trial with the highest objective (the earliest on ties), or None."""
        completed = [r for r in records if r.status == "COMPLETED" and r.objective is not None]
        return max(completed, key=lambda r: r.objective) if completed else None

    def write_tables(self, records: list[TrialRecord]) -> None:
        best = self.best_record(records)
        write_trial_tables(records, self.folder, self.objective, best.trial if best else None)
        title = f"{self.base.dataset_name} / {self.base.backbone}: {self.settings.tuner} search"
        plot_objective(records, self.folder / "objective.png", self.base.valid_metric, title)

    # -- the whole search --------------------------------------------------------------------------

    def run(self) -> SearchOutcome:
        """Runs (or continues) the trials, then retrains the best configuration and tests it once.

        Raises:
            KeyboardInterrupt: passed on; every finished trial is already saved.
            RuntimeError: no trial finished.
        """
        finished = len(self.oracle.end_order)
        tuned = ", ".join(self.settings.tuned)
        self.report(
            f"[tune] {self.settings.tuner} search over {tuned} (log-uniform) in {self.folder}: "
            f"{self._of_total()} trials, objective {self.objective} (max)"
            + (f"; resuming with {finished} trial(s) finished" if finished else "")
        )
        self.tuner.search(verbose=0)
        records = self.records()
        self.write_tables(records)
        best = self.best_record(records)
        if best is None:
            raise RuntimeError(f"No trial finished; see {self.folder / 'trials.md'} and the trial.json files.")
        values = {k: v for k, v in self.oracle.trials[best.id].hyperparameters.values.items()
                  if not k.startswith("tuner/")}
        best_config = trial_config(self.base, values, self.folder / "best")
        self.report(f"[tune] best: trial {best.trial} (id {best.id}), {self.objective} = "
                    f"{best.objective:.4f}; retraining it with seed {best_config.seed} -> {best_config.run_dir}")
        retrained, _ = train_or_reuse(best_config, self.train_fn)
        (self.folder / BEST_FILE).write_text(json.dumps({
            "trial": best.trial, "id": best.id, "values": values, "objective": self.objective,
            "trial_objective": best.objective, "retrained_run": best_config.run_dir,
            "retrained_best_epoch": retrained.best_epoch, "retrained_valid": retrained.valid,
            "retrained_test": retrained.test,
        }, indent=2) + "\n", encoding="utf-8")
        return SearchOutcome(best.trial, best.id, best.objective, best_config, retrained, records)
