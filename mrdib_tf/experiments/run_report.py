"""One comparison table over finished run folders: runs with the same settings but the seed are pooled.

Groups are dataset x backbone x MRdIB on/off x alphas, and any other setting that differs between runs
(epochs, lr, ...) splits groups too, so runs that are not comparable are never averaged together; the
settings that vary are shown per row, the ones all runs share are listed under the table. The paired
table sets each MRdIB group against the bare group of the same settings, seed by seed
(`mrdib_tf.experiments.paired`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.paired import PairedDifference, paired_cell, paired_difference
from mrdib_tf.experiments.results import (
    GroupSummary, RunRecord, aggregate, experiment_settings, markdown_table, mean_std_cell,
)

DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
#: Settings shown in their own columns (everything else that varies goes to "other settings").
SHOWN = ("dataset", "data_dir", "backbone", "mrdib", "alpha_kl", "alpha_mi", "alpha_unique")


def _settings_key(config: RunConfig) -> tuple:
    return tuple(sorted(experiment_settings(config).items(), key=lambda kv: kv[0]))


def _key(record: RunRecord) -> tuple:
    return _settings_key(record.config)


def _bare_key(record: RunRecord) -> tuple:
    """The key of the bare runs this run is compared with: its own settings, MRdIB off."""
    return _settings_key(record.config.replace(mrdib=False))


def _orderable(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, (int, float)) else (1, 0.0, str(value))


def _sort_key(record: RunRecord) -> tuple:
    config = record.config
    rest = tuple((name, _orderable(value)) for name, value in _key(record))
    return (config.dataset_name, config.backbone, config.mrdib, rest)


def group_runs(records: Sequence[RunRecord], split: str, metrics: Sequence[str]) -> list[tuple[GroupSummary, list[RunRecord]]]:
    """Each group's summary of `split` metrics with its runs, ordered by dataset, backbone, MRdIB, alphas."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got '{split}'.")
    ordered = sorted(records, key=_sort_key)
    summaries = aggregate(((_key(r), getattr(r.summary, split)) for r in ordered), metrics)
    return [(s, [r for r in ordered if _key(r) == s.key]) for s in summaries]


def _varying_settings(settings: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(settings whose value differs between the groups that have them, the others with their one value).

    A bare run has no MRdIB settings: `fusion_head` varies only if MRdIB runs disagree on it.
    """
    names = sorted({name for s in settings for name in s} - set(SHOWN))
    values = {n: {repr(s[n]): s[n] for s in settings if n in s} for n in names}
    varying = [n for n in names if len(values[n]) > 1]
    shared = {n: next(iter(values[n].values())) for n in names if n not in varying}
    return varying, shared


def _alpha_cells(config: RunConfig) -> list[str]:
    return [f"{getattr(config, a):g}" if config.mrdib else "-" for a in ("alpha_kl", "alpha_mi", "alpha_unique")]


def _other_settings_cell(settings: dict[str, Any], varying: Sequence[str]) -> list[str]:
    """The "other settings" cell of a row (none when no setting varies)."""
    return [", ".join(f"{n}={settings.get(n, '-')}" for n in varying)] if varying else []


def _has_repeated_seed(runs: Sequence[RunRecord]) -> bool:
    return len({r.config.seed for r in runs}) < len(runs)


def report_markdown(records: Sequence[RunRecord], split: str = "test",
                    metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """The Markdown comparison table: mean ± sample std over seeds, n runs, the seeds used."""
    groups = group_runs(records, split, metrics)
    varying, shared = _varying_settings([dict(summary.key) for summary, _ in groups])
    headers = ["dataset", "backbone", "MRdIB", "alpha_kl", "alpha_mi", "alpha_unique",
               *(["other settings"] if varying else []), "n", "seeds", *(f"{split} {m}" for m in metrics)]
    rows, repeated = [], []
    for summary, runs in groups:
        config = runs[0].config
        seeds = sorted(r.config.seed for r in runs)
        if _has_repeated_seed(runs):
            repeated.append(f"{config.dataset_name}/{config.backbone} ({', '.join(str(r.run_dir) for r in runs)})")
        rows.append([config.dataset_name, config.backbone, "on" if config.mrdib else "off", *_alpha_cells(config),
                     *_other_settings_cell(dict(summary.key), varying), summary.n, ", ".join(map(str, seeds)),
                     *(mean_std_cell(summary.mean[m], summary.std[m]) for m in metrics)])
    lines = [
        f"{len(records)} finished runs in {len(groups)} groups. {split.capitalize()} metrics at each run's best "
        "validation epoch; mean ± sample standard deviation over the runs of a group (one run: no spread).\n",
        markdown_table(headers, rows),
    ]
    if shared:
        lines.append("Shared settings: " + ", ".join(f"{k}={v}" for k, v in shared.items()) + ".\n")
    if repeated:
        lines.append("Warning: groups with a repeated seed (the same run counted more than once?): "
                     + "; ".join(repeated) + ".\n")
    return "\n".join(lines)


def _by_seed(runs: Sequence[RunRecord], split: str, metric: str) -> dict[int, float]:
    return {r.config.seed: getattr(r.summary, split)[metric] for r in runs}


def paired_groups(groups: Sequence[tuple[GroupSummary, list[RunRecord]]], split: str, metrics: Sequence[str]
                  ) -> tuple[list[tuple[list[RunRecord], list[PairedDifference]]], list[tuple[list[RunRecord], str]]]:
    """Of `group_runs`' groups: (each MRdIB group's runs with its `PairedDifference` per metric against the
    bare runs of the same settings, the MRdIB groups that cannot be paired with why: no bare run on a shared
    seed, or a seed run twice on either side, which would leave the pairing ambiguous)."""
    by_key = {summary.key: runs for summary, runs in groups}
    paired, unpaired = [], []
    for _, runs in groups:
        if not runs[0].config.mrdib:
            continue
        bare = by_key.get(_bare_key(runs[0]), [])
        if _has_repeated_seed(runs) or _has_repeated_seed(bare):
            unpaired.append((runs, "a seed run twice"))
            continue
        pairs = [paired_difference(_by_seed(runs, split, m), _by_seed(bare, split, m)) for m in metrics]
        if pairs[0] is None:
            unpaired.append((runs, "no bare run of the same settings on a shared seed"))
        else:
            paired.append((runs, pairs))
    return paired, unpaired


def report_paired_markdown(records: Sequence[RunRecord], split: str = "test",
                           metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """Each MRdIB group against the bare group of the same settings, on the seeds both have.

    Per metric: the change of the means, then the mean ± sample std of the per-seed differences, on how
    many seeds MRdIB is higher, and the sign-flip p-value. Settings that vary between the MRdIB
    groups besides the alphas are shown per row; groups without a bare counterpart, or sharing no seed
    with it, are named under the table.
    """
    paired, unpaired = paired_groups(group_runs(records, split, metrics), split, metrics)
    varying, _ = _varying_settings([dict(_key(runs[0])) for runs, _ in paired])
    headers = ["dataset", "backbone", "alpha_kl", "alpha_mi", "alpha_unique",
               *(["other settings"] if varying else []), "pairs", "seeds", *(f"{split} {m}" for m in metrics)]
    rows = []
    for runs, pairs in paired:
        config = runs[0].config
        rows.append([config.dataset_name, config.backbone, *_alpha_cells(config),
                     *_other_settings_cell(dict(_key(runs[0])), varying), len(pairs[0].seeds),
                     ", ".join(map(str, pairs[0].seeds)), *map(paired_cell, pairs)])
    lines = [
        "MRdIB against bare runs of the same settings and seeds: change of the means (mean ± sample std of "
        "the per-seed differences, seeds where MRdIB is higher, two-sided sign-flip p-value: exact up to 16 "
        "seeds, sampled above).\n",
        markdown_table(headers, rows),
    ]
    if unpaired:
        lines.append("Not paired: " + "; ".join(
            f"{runs[0].config.dataset_name}/{runs[0].config.backbone} ({runs[0].run_dir}): {reason}"
            for runs, reason in unpaired) + ".\n")
    return "\n".join(lines)


def report_json(records: Sequence[RunRecord], split: str = "test",
                metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, Any]:
    """The groups behind the tables: their settings, summaries and runs, and each MRdIB group's paired view."""
    groups = group_runs(records, split, metrics)
    paired, _ = paired_groups(groups, split, metrics)
    return {"split": split, "metrics": list(metrics), "groups": [
        {"settings": dict(summary.key), "n": summary.n, "mean": summary.mean, "std": summary.std,
         "runs": [{"run_dir": str(r.run_dir), "seed": r.config.seed, split: getattr(r.summary, split)}
                  for r in runs]}
        for summary, runs in groups
    ], "paired": [
        {"settings": dict(_key(runs[0])), "seeds": list(pairs[0].seeds), "against_bare": {
            m: {"relative_change": d.relative_change, "mean_difference": d.mean, "std_difference": d.std,
                "higher": d.higher, "p_value": d.p_value}
            for m, d in zip(metrics, pairs)}}
        for runs, pairs in paired
    ]}
