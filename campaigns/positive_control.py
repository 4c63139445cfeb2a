"""The positive control for MRdIB: corrupted features, every bottleneck form and control, tuned and paired.

Per cell (a dataset, clean or corrupted by `trainers.corrupt`) and backbone:

1. the bare backbone's `reg_weight` grid at the tuning seed; its best on validation is the cell's bare
   setting, which every MRdIB arm of that cell then shares;
2. each arm's own grid at the tuning seed (one setting per arm: the KL weight of a form, the control's
   noise scale or dropout rate, the target rate), its best on validation chosen;
3. the chosen bare setting and every arm's chosen setting on the paired seeds.

Nothing is chosen on test. Jobs become ready as their choices are known and run `--workers` at a time; a
finished run is never run again, so the command resumes where it stopped. `report` prints the tables
(per cell and arm: what the corruption costs the tuned bare model against the clean cell, each arm's paired
gain in test Recall@20 and Recall@5 with its 95% bootstrap interval, seeds up and the sign-flip p-value),
the pooled interval, the placebo of selecting by test, and draws the gain against the corruption level.

    python campaigns/positive_control.py run --root runs/positive-control --cells syn syn-nuis2048
    python campaigns/positive_control.py report --root runs/positive-control --plot docs/positive_control.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TUNING_SEED = 999
PAIRED_SEEDS = (1000, 1001, 1002, 1003, 1004)
METRICS = ("recall@20", "recall@5")
#: The synthetic dataset the `syn` cells start from: preferences driven by the items' features.
SYNTHETIC = {"n_users": 4000, "n_items": 2000, "noise_dims": 0, "interactions_per_user": 10, "seed": 0}


@dataclass(frozen=True)
class Cell:
    """A dataset: `source` (a shipped name, or "syn" for the synthetic one) after `corruption` flags."""

    source: str
    corruption: tuple[str, ...] = ()
    clean: str | None = None  # the cell whose tuned bare model this one's corruption cost is measured against
    level: str = "clean"  # the corruption kind and amount, for the plot


CELLS = {
    "tiktok": Cell("tiktok"),
    "tiktok-nuis2048": Cell("tiktok", ("--nuisance-dims", "image=2048"), "tiktok", "nuisance 2048"),
    "tiktok-snr025": Cell("tiktok", ("--snr", "image=0.25", "--snr", "audio=0.25"), "tiktok", "SNR 0.25"),
    "tiktok-snr1": Cell("tiktok", ("--snr", "image=1", "--snr", "audio=1"), "tiktok", "SNR 1"),
    "tiktok-nuis512": Cell("tiktok", ("--nuisance-dims", "image=512"), "tiktok", "nuisance 512"),
    "tiktok-shuf03": Cell("tiktok", ("--shuffle-rows", "image=0.3", "--shuffle-rows", "audio=0.3"), "tiktok",
                          "shuffle 0.3"),
    "tiktok-keep02": Cell("tiktok", ("--keep-train", "0.2"), None, "keep 0.2"),
    "tiktok-keep05": Cell("tiktok", ("--keep-train", "0.5"), None, "keep 0.5"),
    "tiktok-keep02-snr025": Cell("tiktok", ("--keep-train", "0.2", "--snr", "image=0.25", "--snr", "audio=0.25"),
                                 "tiktok-keep02", "keep 0.2, SNR 0.25"),
    "tiktok-keep02-nuis2048": Cell("tiktok", ("--keep-train", "0.2", "--nuisance-dims", "image=2048"),
                                   "tiktok-keep02", "keep 0.2, nuisance 2048"),
    "syn": Cell("syn"),
    "syn-nuis2048": Cell("syn", ("--nuisance-dims", "image=2048"), "syn", "nuisance 2048"),
    "syn-snr025": Cell("syn", ("--snr", "image=0.25", "--snr", "text=0.25"), "syn", "SNR 0.25"),
}

BARE_GRID = ("0.03", "0.3", "3", "10")
#: A failed run is tried again after this long, this many times in all (a run that another process still
#: holds fails at once, and finishes there).
RETRY_SECONDS = 120
MAX_ATTEMPTS = 4


@dataclass(frozen=True)
class Arm:
    """An MRdIB variant: fixed flags, and the one setting searched on validation with its grid."""

    flags: tuple[str, ...]
    setting: str
    grid: tuple[str, ...]


#: VBPR's other MRdIB weights stay at their defaults in every arm, so arms differ by the bottleneck only.
ARMS = {
    "matched": Arm(("--bottleneck", "matched"), "--alpha-kl", ("0.0025", "0.025", "0.25")),
    "paper": Arm(("--bottleneck", "paper"), "--alpha-kl", ("0.001", "0.01", "0.1")),
    "dvib": Arm(("--bottleneck", "dvib"), "--alpha-kl", ("0.001", "0.01", "0.1")),
    "noise": Arm(("--bottleneck", "noise"), "--initial-sigma", ("0.1", "0.3", "1.0")),
    "dropout": Arm(("--bottleneck", "dropout"), "--dropout-rate", ("0.1", "0.3", "0.5")),
    "rate": Arm(("--bottleneck", "paper", "--alpha-kl", "0.001"), "--target-rate", ("0.5", "1.0", "2.0")),
    # the bottleneck alone on VBPR's raw feature columns, one noise scale per column (the redundancy and
    # unique terms off: on 2,000-wide raw codes they cost ten times the epoch)
    "raw": Arm(("--placement", "raw", "--bottleneck", "matched", "--alpha-mi", "0", "--alpha-unique", "0"),
               "--alpha-kl", ("0.00001", "0.0001", "0.001")),
    "raw-noise": Arm(("--placement", "raw", "--bottleneck", "noise", "--alpha-mi", "0", "--alpha-unique", "0"),
                     "--initial-sigma", ("0.3", "1.0")),
}
#: The rate-targeted arm's default, fixed before any run: it is also run untuned.
DEFAULT_TARGET_RATE = "1.0"


def run_folder(root: Path, cell: str, arm: str, value: str, seed: int) -> Path:
    return root / "runs" / cell / f"{arm}-{value}-s{seed}"


def _metrics(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _best(root: Path, cell: str, arm: str, metric: str = "recall@20") -> str | None:
    """The grid value with the highest validation `metric` at the tuning seed, once every point finished."""
    grid = BARE_GRID if arm == "bare" else ARMS[arm].grid
    scores = {value: _metrics(run_folder(root, cell, arm, value, TUNING_SEED)) for value in grid}
    if any(metrics is None for metrics in scores.values()):
        return None
    return max(grid, key=lambda value: scores[value]["valid"][metric])


def data_dir(root: Path, cell: str) -> Path:
    return PROJECT / "data" / "tiktok" if cell == "tiktok" else root / "data" / cell


def prepare(root: Path, cell: str) -> None:
    """Writes the cell's dataset (the synthetic source, then its corruption) unless it is there."""
    spec = CELLS[cell]
    target = data_dir(root, cell)
    if target.exists():
        return
    if spec.source == "syn":
        source = root / "data" / "syn"
        from data_pipeline.synthetic import STRUCTURE_FILE, write_synthetic_dataset

        if not (source / STRUCTURE_FILE).is_file():  # written last: without it the folder is partial
            write_synthetic_dataset(source, **SYNTHETIC)
    else:
        source = PROJECT / "data" / spec.source
    if spec.corruption:
        subprocess.run([sys.executable, "-m", "trainers.corrupt", "--data-dir", str(source), "--out", str(target),
                        *spec.corruption], check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)


def fit_command(root: Path, cell: str, arm: str, value: str, seed: int, reg_weight: str) -> list[str]:
    folder = run_folder(root, cell, arm, value, seed)
    command = [sys.executable, "-m", "trainers.fit", "--backbone", "vbpr", "--data-dir", str(data_dir(root, cell)),
               "--seed", str(seed), "--run-dir", str(folder)]
    if arm == "bare":
        return command + ["--no-mrdib", "--reg-weight", value]
    spec = ARMS[arm]
    return command + ["--reg-weight", reg_weight, *spec.flags, spec.setting, value]


def _jobs_of(root: Path, cell: str, arms: list[str]) -> list[tuple[str, str, int, str]]:
    """(arm, value, seed, bare reg_weight) of every job of a cell whose choices are known."""
    jobs = [("bare", value, TUNING_SEED, value) for value in BARE_GRID]
    bare = _best(root, cell, "bare")
    if bare is None:
        return jobs
    jobs += [("bare", bare, seed, bare) for seed in PAIRED_SEEDS]
    for arm in arms:
        jobs += [(arm, value, TUNING_SEED, bare) for value in ARMS[arm].grid]
        if arm == "rate":
            jobs += [(arm, DEFAULT_TARGET_RATE, seed, bare) for seed in PAIRED_SEEDS]
        chosen = _best(root, cell, arm)
        if chosen is not None:
            jobs += [(arm, chosen, seed, bare) for seed in PAIRED_SEEDS]
    return jobs


def ready_jobs(root: Path, cells: list[str], arms: dict[str, list[str]]) -> list[tuple[Path, list[str]]]:
    """Every job whose choices are known and whose run has not finished, cell by cell in the given order."""
    pending: dict[Path, list[str]] = {}
    for cell in cells:
        for arm, value, seed, bare in _jobs_of(root, cell, arms[cell]):
            folder = run_folder(root, cell, arm, value, seed)
            if _metrics(folder) is None and folder not in pending:
                pending[folder] = fit_command(root, cell, arm, value, seed, bare)
    return list(pending.items())


def run(root: Path, cells: list[str], arms: dict[str, list[str]], workers: int) -> None:
    for cell in cells:
        prepare(root, cell)
    running: dict[Path, subprocess.Popen] = {}
    failures: dict[Path, list[float]] = {}  # folder -> times it failed (a folder another process holds fails)
    while True:
        for folder, process in list(running.items()):
            if process.poll() is not None:
                del running[folder]
                if process.returncode != 0:
                    failures.setdefault(folder, []).append(time.monotonic())
                    print(f"failed ({process.returncode}): {folder}", flush=True)
                else:
                    print(f"done: {folder}", flush=True)

        def may_start(folder: Path) -> bool:
            times = failures.get(folder, [])
            return folder not in running and len(times) < MAX_ATTEMPTS and (
                not times or time.monotonic() - times[-1] > RETRY_SECONDS)

        ready = ready_jobs(root, cells, arms)
        pending = [(f, c) for f, c in ready if may_start(f)]
        if not running and not any(len(failures.get(f, [])) < MAX_ATTEMPTS for f, _ in ready):
            return
        while pending and len(running) < workers:
            folder, command = pending.pop(0)
            (root / "logs").mkdir(parents=True, exist_ok=True)
            with (root / "logs" / f"{folder.parent.name}-{folder.name}.log").open("w") as log:
                running[folder] = subprocess.Popen(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
                                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        time.sleep(5)


def _seed_values(root: Path, cell: str, arm: str, value: str, split: str, metric: str) -> dict[int, float]:
    values = {}
    for seed in PAIRED_SEEDS:
        metrics = _metrics(run_folder(root, cell, arm, value, seed))
        if metrics is not None:
            values[seed] = metrics[split][metric]
    return values


def _interval(cells) -> str:
    from mrdib_tf.experiments.paired import pooled_relative_gain

    estimate, low, high = pooled_relative_gain(cells)
    return f"{100 * estimate:+.1f}% [{100 * low:+.1f}, {100 * high:+.1f}]"


def _paired(root: Path, cell: str, arm: str, value: str, bare: str, split: str, metric: str):
    from mrdib_tf.experiments.paired import paired_difference

    return paired_difference(_seed_values(root, cell, arm, value, split, metric),
                             _seed_values(root, cell, "bare", bare, split, metric))


def report(root: Path, cells: list[str], arms: dict[str, list[str]], plot: Path | None) -> str:
    """The campaign's tables in Markdown (and the plot): see the module's docstring."""
    lines = ["### Corruption cost: the tuned bare model on each cell against the tuned bare model on its clean "
             "cell (same seeds)", "",
             "| cell | bare reg_weight (valid R@20) | test R@20 | cost, test R@20 [95%] | test R@5 | cost, test R@5 [95%] |",
             "| --- | --- | --- | --- | --- | --- |"]
    for cell in cells:
        bare = _best(root, cell, "bare")
        if bare is None:
            continue
        valid = _metrics(run_folder(root, cell, "bare", bare, TUNING_SEED))["valid"]["recall@20"]
        row = [cell, f"{bare} ({valid:.4f})"]
        clean = CELLS[cell].clean
        clean_bare = _best(root, clean, "bare") if clean in cells else None
        for metric in METRICS:
            values = _seed_values(root, cell, "bare", bare, "test", metric)
            row.append(f"{sum(values.values()) / max(len(values), 1):.4f} (n={len(values)})")
            from mrdib_tf.experiments.paired import paired_difference

            cost = None if clean_bare is None else paired_difference(
                values, _seed_values(root, clean, "bare", clean_bare, "test", metric))
            row.append(_interval([cost]) if cost is not None and len(cost.seeds) > 1 else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "### Each arm against the tuned bare model, paired seed by seed (seeds "
              f"{PAIRED_SEEDS[0]}-{PAIRED_SEEDS[-1]}; settings chosen on validation at seed {TUNING_SEED})", "",
              "| cell | arm | chosen (valid R@20; bare's) | valid R@20 | test R@20 [95%], up, p | test R@5 [95%], up, p |"
              " chosen by valid R@5 |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    pooled: dict[tuple[str, str], list] = {}
    for cell in cells:
        bare = _best(root, cell, "bare")
        if bare is None:
            continue
        bare_valid = _metrics(run_folder(root, cell, "bare", bare, TUNING_SEED))["valid"]["recall@20"]
        for arm in arms[cell]:
            chosen = _best(root, cell, arm)
            variants = [(arm, chosen)] if chosen is not None else []
            if arm == "rate" and chosen != DEFAULT_TARGET_RATE:
                variants.insert(0, ("rate (default)", DEFAULT_TARGET_RATE))
            for label, value in variants:
                tuned = _metrics(run_folder(root, cell, arm, value, TUNING_SEED))
                if tuned is None:
                    continue
                row = [cell, label, f"{value} ({tuned['valid']['recall@20']:.4f}; {bare_valid:.4f})"]
                valid = _paired(root, cell, arm, value, bare, "valid", "recall@20")
                row.append("-" if valid is None or len(valid.seeds) < 2 else _interval([valid]))
                for metric in METRICS:
                    difference = _paired(root, cell, arm, value, bare, "test", metric)
                    if difference is None or len(difference.seeds) < 2:
                        row.append("-")
                        continue
                    row.append(f"{_interval([difference])}, {difference.higher}/{len(difference.seeds)}, "
                               f"p {difference.p_value:.2g}")
                    if CELLS[cell].corruption:
                        pooled.setdefault((label, metric), []).append(difference)
                by_r5 = _best(root, cell, arm, "recall@5")
                row.append("-" if label != arm else "same" if by_r5 == chosen else str(by_r5))
                lines.append("| " + " | ".join(row) + " |")
    lines += ["", "### Pooled over the corrupted cells (mean of the cells' relative gains, paired bootstrap)", "",
              "| arm | cells | test R@20 [95%] | test R@5 [95%] |", "| --- | --- | --- | --- |"]
    for label in dict.fromkeys(label for label, _ in pooled):
        r20, r5 = pooled.get((label, "recall@20"), []), pooled.get((label, "recall@5"), [])
        lines.append(f"| {label} | {len(r20)} | {_interval(r20) if r20 else '-'} | {_interval(r5) if r5 else '-'} |")
    lines += ["", *placebo(root, cells)]
    if plot is not None:
        draw(root, cells, arms, plot)
        lines += ["", f"Plot: {plot}"]
    return "\n".join(lines)


def placebo(root: Path, cells: list[str]) -> list[str]:
    """What selecting by test, as MMRec does, makes of bare runs alone: the grid point chosen by test
    Recall@5 at the tuning seed against the one chosen by validation Recall@20, and the best of the paired
    seeds by test against their mean."""
    lines = ["### The selection rule as a placebo (bare runs only)", "",
             "| cell | grid point by test R@5 against by valid R@20, test R@5 | best of the seeds by test R@5 against their mean |",
             "| --- | --- | --- |"]
    for cell in cells:
        runs = {v: _metrics(run_folder(root, cell, "bare", v, TUNING_SEED)) for v in BARE_GRID}
        if any(m is None for m in runs.values()):
            continue
        by_valid = max(BARE_GRID, key=lambda v: runs[v]["valid"]["recall@20"])
        by_test = max(BARE_GRID, key=lambda v: runs[v]["test"]["recall@5"])
        grid_gain = runs[by_test]["test"]["recall@5"] / runs[by_valid]["test"]["recall@5"] - 1
        seeds = list(_seed_values(root, cell, "bare", by_valid, "test", "recall@5").values())
        seed_gain = (max(seeds) / (sum(seeds) / len(seeds)) - 1) if len(seeds) > 1 else float("nan")
        lines.append(f"| {cell} | {100 * grid_gain:+.1f}% ({by_test} against {by_valid}) | "
                     f"{100 * seed_gain:+.1f}% (best of {len(seeds)}) |")
    return lines


def draw(root: Path, cells: list[str], arms: dict[str, list[str]], path: Path) -> None:
    """Each arm's paired gain in test Recall@20 (95% bootstrap interval) against the cell, clean first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrdib_tf.experiments.paired import pooled_relative_gain

    figure, axis = plt.subplots(figsize=(max(8, 2.0 * len(cells)), 4.5))
    names = list(dict.fromkeys(arm for cell in cells for arm in arms[cell]))
    width = 0.8 / max(len(names), 1)
    for k, arm in enumerate(names):
        xs, ys, lows, highs = [], [], [], []
        for i, cell in enumerate(cells):
            bare = _best(root, cell, "bare")
            chosen = _best(root, cell, arm) if arm in arms[cell] else None
            if bare is None or chosen is None:
                continue
            difference = _paired(root, cell, arm, chosen, bare, "test", "recall@20")
            if difference is None or len(difference.seeds) < 2:
                continue
            estimate, low, high = pooled_relative_gain([difference])
            xs.append(i + (k - (len(names) - 1) / 2) * width)
            ys.append(100 * estimate)
            lows.append(100 * (estimate - low))
            highs.append(100 * (high - estimate))
        axis.errorbar(xs, ys, yerr=[lows, highs], fmt="o", capsize=3, label=arm)
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xticks(range(len(cells)), [f"{c}\n({CELLS[c].level})" for c in cells], fontsize=8)
    axis.set_ylabel("test Recall@20, MRdIB arm over tuned bare (%)")
    axis.set_title("VBPR: each arm over the tuned bare model (paired seeds, 95% bootstrap interval)", fontsize=10)
    axis.legend(fontsize=8, ncol=3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("run", "report"))
    parser.add_argument("--root", type=Path, required=True, help="holds data/, runs/ and logs/")
    parser.add_argument("--cells", nargs="+", default=["syn", "syn-nuis2048"], choices=sorted(CELLS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--arms-of", action="append", default=[], metavar="CELL=ARM,ARM",
                        help="the arms of one cell, instead of --arms (',' alone: the bare model only)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=None, help="report: also draw the gains to this PNG")
    args = parser.parse_args(argv)
    arms = {cell: list(args.arms) for cell in args.cells}
    for entry in args.arms_of:
        cell, _, names = entry.partition("=")
        arms[cell] = [name for name in names.split(",") if name]
        unknown = [n for n in arms[cell] if n not in ARMS] + ([cell] if cell not in CELLS else [])
        if unknown:
            parser.error(f"--arms-of {entry}: unknown {unknown}")
    if args.stage == "run":
        run(args.root, args.cells, arms, args.workers)
    else:
        print(report(args.root, args.cells, arms, args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
