"""The table of a hyper-parameter search's trials (CSV and Markdown) and its objective-per-trial figure."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mrdib_tf.experiments.results import markdown_table

COLUMNS = ("trial", "id", "status", "alpha_kl", "alpha_mi", "alpha_unique", "lr", "objective", "best_epoch", "epochs", "seconds")


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the search recorded it; the measured fields are None for a failed or running trial.

    Attributes:
        trial: its number in the search (from 1, in start order), as progress lines count.
        id: KerasTuner's trial id (`"03"`), also the name of its run folder `trials/trial_<id>`.
        status: KerasTuner's status: COMPLETED, FAILED, INVALID or RUNNING.
        objective: the validation metric at the trial's best epoch.
        best_epoch: that epoch (from 1); epochs: epochs trained; seconds: wall-clock time of the trial.
    """

    trial: int
    id: str
    status: str
    alpha_kl: float
    alpha_mi: float
    alpha_unique: float
    lr: float
    objective: float | None
    best_epoch: int | None
    epochs: int | None
    seconds: float | None


def _cells(record: TrialRecord) -> list[str]:
    def number(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    return [
        str(record.trial), record.id, record.status, number(record.alpha_kl, ".4g"), number(record.alpha_mi, ".4g"),
        number(record.alpha_unique, ".4g"), number(record.lr, ".4g"), number(record.objective, ".5f"),
        number(record.best_epoch, "d"), number(record.epochs, "d"), number(record.seconds, ".1f"),
    ]


def trial_csv(records: Sequence[TrialRecord]) -> str:
    """CSV with `COLUMNS`, one row per trial in start order, full float precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in records:
        writer.writerow(["" if v is None else v for v in (
            r.trial, r.id, r.status, r.alpha_kl, r.alpha_mi, r.alpha_unique, r.lr, r.objective, r.best_epoch, r.epochs, r.seconds,
        )])
    return buffer.getvalue()


def trial_markdown(records: Sequence[TrialRecord], objective_name: str, best_trial: int | None) -> str:
    """The trial table in Markdown; the best trial's number is marked with `*`."""
    headers = [("objective: " + objective_name) if c == "objective" else c for c in COLUMNS]
    rows = []
    for record in records:
        cells = _cells(record)
        if record.trial == best_trial:
            cells[0] += " *"
        rows.append(cells)
    return markdown_table(headers, rows)


def write_trial_tables(records: Sequence[TrialRecord], folder: Path, objective_name: str,
                       best_trial: int | None) -> None:
    """Writes `trials.csv` and `trials.md` in `folder`."""
    (folder / "trials.csv").write_text(trial_csv(records), encoding="utf-8")
    (folder / "trials.md").write_text(trial_markdown(records, objective_name, best_trial), encoding="utf-8")


def plot_objective(records: Sequence[TrialRecord], path: Path, objective_name: str, title: str) -> None:
    """A PNG of the objective of each finished trial and the best so far, by trial number."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    done = [r for r in records if r.objective is not None and math.isfinite(r.objective)]
    figure, axes = plt.subplots(figsize=(7, 4), dpi=120)
    if done:
        numbers = [r.trial for r in done]
        values = [r.objective for r in done]
        best_so_far = [max(values[: i + 1]) for i in range(len(values))]
        axes.plot(numbers, values, "o", label="trial")
        axes.step(numbers, best_so_far, where="post", label="best so far")
        best = max(done, key=lambda r: r.objective)
        axes.annotate(f"trial {best.trial}", (best.trial, best.objective), textcoords="offset points",
                      xytext=(4, 6), fontsize=8)
    failed = [r.trial for r in records if r.status == "FAILED"]
    for number in failed:
        axes.axvline(number, color="tab:red", alpha=0.3, linewidth=1)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("trial" + (" (red lines: failed trials)" if failed else ""))
    axes.set_ylabel(f"validation {objective_name}")
    axes.set_title(title)
    axes.margins(x=0.05, y=0.15)  # room for the annotation above the best point
    axes.grid(alpha=0.3)
    if done:
        axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
