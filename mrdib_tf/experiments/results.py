"""Finished run folders as records, reused instead of retrained, and aggregated over seeds.

A finished run folder (written by `mrdib_tf.experiments.training.train`) holds `config.json` (the `RunConfig`) and
`metrics.json` (the `FitResult`: best epoch, validation and test metrics, timings). The tuner, the
ablation and `trainers.report` all read runs through `read_run`, skip finished runs through
`train_or_reuse`, and summarise seeds through `aggregate`, so every table is computed from files.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrdib_tf.experiments.config import RunConfig, setting_differences
from mrdib_tf.experiments.run_folder import CONFIG_FILE, METRICS_FILE

#: Settings that do not change what a run learns: runs differing only in these are the same experiment.
NON_EXPERIMENT_SETTINGS = ("seed", "run_dir", "eval_batch_users", "jit_compile", "steps_per_execution")
#: Settings that only matter with MRdIB on (MGCN's `placement` says where MRdIB plugs in: a bare MGCN
#: computes the same either way).
MRDIB_SETTINGS = ("alpha_kl", "alpha_mi", "alpha_unique", "fusion_head", "codes_on_main_path", "initial_sigma",
                  "prior_scale", "encoder", "bottleneck", "dropout_rate", "target_rate", "rate_step", "critic_lr",
                  "critic_rows", "placement")


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports, as `metrics.json` holds it.

    Attributes:
        best_epoch: the epoch (from 1) with the best validation metric; test is measured there.
        valid: validation metrics at the best epoch.
        test: test metrics at the best epoch.
        epochs: epochs trained (early stopping included).
        seconds: training plus per-epoch evaluation time.
    """

    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    epochs: int
    seconds: float

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], source: str = "metrics") -> "RunSummary":
        """From a `FitResult` as a dict (the content of `metrics.json`); `source` names it in errors."""
        missing = [k for k in ("best_epoch", "valid", "test", "epoch_seconds", "eval_seconds") if k not in metrics]
        if missing:
            raise ValueError(f"{source}: missing {missing}; expected the FitResult a Trainer writes.")
        return cls(
            best_epoch=int(metrics["best_epoch"]),
            valid={k: float(v) for k, v in metrics["valid"].items()},
            test={k: float(v) for k, v in metrics["test"].items()},
            epochs=len(metrics["epoch_seconds"]),
            seconds=float(sum(metrics["epoch_seconds"]) + sum(metrics["eval_seconds"])),
        )

    @classmethod
    def of(cls, fit_result: Any) -> "RunSummary":
        """From a `FitResult` (any dataclass with its fields)."""
        return cls.from_metrics(dataclasses.asdict(fit_result), source=type(fit_result).__name__)


@dataclass(frozen=True)
class RunRecord:
    """A finished run folder: where it is, how it was configured, what it reported."""

    run_dir: Path
    config: RunConfig
    summary: RunSummary


def is_finished_run(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / METRICS_FILE).is_file()


def read_run(run_dir: str | Path) -> RunRecord:
    """Reads `config.json` and `metrics.json` of a finished run folder.

    Raises:
        ValueError: a file is missing or is not what a Trainer writes (the message names the file).
    """
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, METRICS_FILE):
        if not (run_dir / name).is_file():
            raise ValueError(
                f"{run_dir / name}: missing. A finished run folder holds {CONFIG_FILE} and {METRICS_FILE}; "
                "a run that is still training or was interrupted has no metrics.json yet."
            )
    metrics_path = run_dir / METRICS_FILE
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{metrics_path}: not valid JSON ({error}).") from error
    return RunRecord(
        run_dir=run_dir,
        config=RunConfig.from_json_file(run_dir / CONFIG_FILE),
        summary=RunSummary.from_metrics(metrics, source=str(metrics_path)),
    )


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """The finished run folders among `paths` and below them, sorted, without duplicates.

    Raises:
        ValueError: a path does not exist, or holds no finished run.
    """
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.is_dir():
            raise ValueError(f"{path}: not a folder; expected a run folder or a folder of run folders.")
        runs = {p.parent for p in path.rglob(METRICS_FILE) if is_finished_run(p.parent)}
        if not runs:
            raise ValueError(f"{path}: no finished run below it (no folder with {CONFIG_FILE} and {METRICS_FILE}).")
        found |= runs
    return sorted(found)


def train_or_reuse(config: RunConfig, train_fn: Callable[[RunConfig], Any]) -> tuple[RunSummary, bool]:
    """The summary of the run `config` describes: read from `config.run_dir` if it finished there, else trained.

    Args:
        config: the run; `run_dir` must be set (it is where the run is, or will be).
        train_fn: trains a config and returns its `FitResult` (normally `train(config)[0]`); it must
            write the run folder for a later call to reuse it.

    Returns:
        (summary, reused): `reused` is True when the run folder already held a finished run.

    Raises:
        ValueError: the folder holds a finished run with other settings (never silently overwritten).
    """
    if not config.run_dir:
        raise ValueError("train_or_reuse needs config.run_dir: the folder the run is (or will be) in.")
    run_dir = Path(config.run_dir)
    if is_finished_run(run_dir):
        record = read_run(run_dir)
        bookkeeping = [k for k in NON_EXPERIMENT_SETTINGS if k != "seed"]
        differences = setting_differences(record.config, config, ignore=bookkeeping)
        if differences:
            described = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differences.items())
            raise ValueError(
                f"{run_dir}: holds a finished run with other settings ({described}). "
                "Use another --run-dir, or the settings of that run."
            )
        return record.summary, True
    return RunSummary.of(train_fn(config)), False


def experiment_settings(config: RunConfig) -> dict[str, Any]:
    """The settings that define an experiment: all but seed and bookkeeping; no MRdIB settings for bare runs."""
    settings = dataclasses.asdict(config)
    dropped = set(NON_EXPERIMENT_SETTINGS) | (set() if config.mrdib else set(MRDIB_SETTINGS))
    return {k: v for k, v in settings.items() if k not in dropped}


@dataclass(frozen=True)
class GroupSummary:
    """Mean and sample standard deviation (ddof=1; None for a single run) of metrics over a group of runs."""

    key: Hashable
    n: int
    mean: dict[str, float]
    std: dict[str, float | None]


def aggregate(
    runs: Iterable[tuple[Hashable, Mapping[str, float]]], metrics: Sequence[str]
) -> list[GroupSummary]:
    """Groups `(key, metrics)` pairs by key (first-seen order) and summarises each metric over the group.

    Raises:
        ValueError: a run lacks one of `metrics` (the message names the group and the metrics it has).
    """
    groups: dict[Hashable, list[Mapping[str, float]]] = {}
    for key, values in runs:
        missing = [m for m in metrics if m not in values]
        if missing:
            raise ValueError(f"A run of group {key!r} has no {missing}; it has {sorted(values)}.")
        groups.setdefault(key, []).append(values)
    summaries = []
    for key, members in groups.items():
        table = np.array([[float(v[m]) for m in metrics] for v in members], dtype=np.float64)
        mean = table.mean(axis=0)
        std = table.std(axis=0, ddof=1) if len(members) > 1 else [None] * len(metrics)
        summaries.append(GroupSummary(
            key=key, n=len(members),
            mean={m: float(x) for m, x in zip(metrics, mean)},
            std={m: (None if s is None else float(s)) for m, s in zip(metrics, std)},
        ))
    return summaries


def mean_std_cell(mean: float, std: float | None, digits: int = 4) -> str:
    """`0.1234 ± 0.0056`, or the mean alone when the spread is undefined (one run)."""
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are written with `str`, `|` escaped."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *map(line, rows)]) + "\n"
