"""The MRdIB paper's ablation: the full regularizer, each objective switched off, and the bare backbone.

Every variant is trained with seeds `base.seed .. base.seed + n_seeds - 1` into
`<root>/<variant>/seed-<seed>/`. A run whose folder already holds its `metrics.json` is reused, so an
interrupted ablation continues where it stopped. `ablation.md` and `ablation.json` in `<root>` are
rewritten after every finished run: test metrics at the best validation epoch, mean ± sample std over
seeds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.progress import RunClock, format_duration
from mrdib_tf.experiments.results import (
    RunSummary, aggregate, markdown_table, mean_std_cell, train_or_reuse,
)

ABLATION_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
MARKDOWN_FILE = "ablation.md"
JSON_FILE = "ablation.json"


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: `changes` applied to the full configuration."""

    name: str                    # its folder under the ablation root
    label: str                   # its row label
    changes: Mapping[str, Any] = field(default_factory=dict)


VARIANTS = (
    Variant("full", "full MRdIB"),
    Variant("alpha_kl-0", "alpha_kl = 0 (no bottleneck KL)", {"alpha_kl": 0.0}),
    Variant("alpha_mi-0", "alpha_mi = 0 (no redundancy term)", {"alpha_mi": 0.0}),
    Variant("alpha_unique-0", "alpha_unique = 0 (no unique term)", {"alpha_unique": 0.0}),
    Variant("alpha_mi-alpha_unique-0", "alpha_mi = alpha_unique = 0 (bottleneck only)", {"alpha_mi": 0.0, "alpha_unique": 0.0}),
    Variant("bare", "bare backbone (no MRdIB)", {"mrdib": False}),
)


@dataclass(frozen=True)
class AblationRun:
    variant: Variant
    seed: int
    config: RunConfig


def ablation_runs(base: RunConfig, n_seeds: int, root: str | Path) -> list[AblationRun]:
    """Every (variant, seed) run, seed by seed, so early results already compare all variants.

    Raises:
        ValueError: `base` is not a full MRdIB configuration (MRdIB off, or an alpha already 0, would
            make two variants the same run), or `n_seeds < 1`.
    """
    if n_seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {n_seeds}.")
    if not base.mrdib:
        raise ValueError("The ablation switches MRdIB's terms off one by one: start from MRdIB on (drop --no-mrdib).")
    zero = [name for name in ("alpha_kl", "alpha_mi", "alpha_unique") if getattr(base, name) <= 0]
    if zero:
        raise ValueError(
            f"The full configuration needs every alpha > 0, but {', '.join(zero)} "
            f"{'is' if len(zero) == 1 else 'are'} not: the ablation would train the same run twice."
        )
    root = Path(root)
    return [
        AblationRun(variant, seed, base.replace(
            **variant.changes, seed=seed, run_dir=str(root / variant.name / f"seed-{seed}"),
        ))
        for seed in range(base.seed, base.seed + n_seeds)
        for variant in VARIANTS
    ]


def summarize(finished: Sequence[tuple[AblationRun, RunSummary]], metrics: Sequence[str] = ABLATION_METRICS):
    """Per variant (in `VARIANTS` order, those with finished runs): mean and sample std of test metrics."""
    order = {v.name: i for i, v in enumerate(VARIANTS)}
    groups = aggregate(((run.variant.name, summary.test) for run, summary in finished), metrics)
    return sorted(groups, key=lambda g: order[g.key])


def ablation_markdown(base: RunConfig, finished, total_runs: int, metrics: Sequence[str] = ABLATION_METRICS) -> str:
    """The ablation table over finished runs, with the settings it was run with."""
    labels = {v.name: v for v in VARIANTS}
    configs = {run.variant.name: run.config for run, _ in finished}
    rows = []
    for group in summarize(finished, metrics):
        config = configs[group.key]
        alphas = [f"{getattr(config, a):g}" if config.mrdib else "-" for a in ("alpha_kl", "alpha_mi", "alpha_unique")]
        rows.append([labels[group.key].label, *alphas, group.n,
                     *(mean_std_cell(group.mean[m], group.std[m]) for m in metrics)])
    headers = ["variant", "alpha_kl", "alpha_mi", "alpha_unique", "n", *(f"test {m}" for m in metrics)]
    return (
        f"# MRdIB ablation: {base.dataset_name} / {base.backbone}\n\n"
        f"{len(finished)} of {total_runs} runs finished. Test metrics at the best validation "
        f"{base.valid_metric} epoch; mean ± sample standard deviation over seeds (n = seeds). "
        f"epochs <= {base.epochs}, patience {base.patience}, lr {base.lr:g}, batch {base.batch_size}, "
        f"d = {base.embedding_dim}.\n\n"
        + markdown_table(headers, rows)
    )


def ablation_json(base: RunConfig, finished, metrics: Sequence[str] = ABLATION_METRICS) -> dict[str, Any]:
    """Everything behind the table: per variant its summary and every run's metrics."""
    groups = {g.key: g for g in summarize(finished, metrics)}
    variants = []
    for variant in VARIANTS:
        if variant.name not in groups:
            continue
        group = groups[variant.name]
        variants.append({
            "name": variant.name, "label": variant.label, "changes": dict(variant.changes),
            "n": group.n, "test_mean": group.mean, "test_std": group.std,
            "runs": [
                {"seed": run.seed, "run_dir": run.config.run_dir, "best_epoch": summary.best_epoch,
                 "valid": summary.valid, "test": summary.test}
                for run, summary in finished if run.variant.name == variant.name
            ],
        })
    return {"base_config": dataclasses.asdict(base), "metrics": list(metrics), "variants": variants}


def run_ablation(
    base: RunConfig,
    n_seeds: int,
    root: str | Path,
    train_fn: Callable[[RunConfig], Any],
    report: Callable[[str], None] = print,
) -> list[tuple[AblationRun, RunSummary]]:
    """Trains (or reuses) every ablation run and keeps `ablation.md` / `ablation.json` in `root` current.

    Args:
        base: the full configuration (its seed is the first seed).
        n_seeds: seeds per variant.
        root: the ablation folder.
        train_fn: trains a config and returns its `FitResult`, writing its run folder.
        report: where progress lines go.
    """
    root = Path(root)
    runs = ablation_runs(base, n_seeds, root)
    root.mkdir(parents=True, exist_ok=True)
    clock = RunClock()
    finished: list[tuple[AblationRun, RunSummary]] = []
    trained_seconds: list[float] = []
    for index, run in enumerate(runs, start=1):
        report(f"[ablate] run {index} of {len(runs)}: {run.variant.label}, seed {run.seed} -> {run.config.run_dir}")
        start = time.monotonic()
        summary, reused = train_or_reuse(run.config, train_fn)
        if not reused:
            trained_seconds.append(time.monotonic() - start)
        finished.append((run, summary))
        (root / MARKDOWN_FILE).write_text(ablation_markdown(base, finished, len(runs)), encoding="utf-8")
        (root / JSON_FILE).write_text(json.dumps(ablation_json(base, finished), indent=2) + "\n", encoding="utf-8")
        how = "reused its finished run" if reused else f"trained in {format_duration(time.monotonic() - start)}"
        report(
            f"[ablate] run {index} of {len(runs)} {how}: test recall@20 = {summary.test.get('recall@20', float('nan')):.4f} "
            f"| {clock.status(trained_seconds, len(runs) - index)}"
        )
    return finished
