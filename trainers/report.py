"""`python -m trainers.report RUNS...`: one Markdown table over finished run folders.

Each RUN is a run folder (config.json + metrics.json) or any folder above run folders (a tune or
ablation folder, runs/). Runs with the same settings except the seed are pooled: mean ± sample std, n.
With --paired, a second table sets each MRdIB group against the bare runs of the same settings seed by
seed: the per-seed differences, on how many seeds MRdIB is higher, and a sign-flip p-value (exact up to
16 seeds).

Example:
    python -m trainers.report runs/ablate-tiktok-vbpr runs/tiktok-vbpr-bare-20261101-120000
    python -m trainers.report runs/ --paired --metrics recall@5 ndcg@5 recall@20 ndcg@20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mrdib_tf.experiments.run_report import DEFAULT_METRICS
from trainers.console import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainers.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUNS", help="run folders, or folders above them")
    parser.add_argument("--split", choices=("test", "valid"), default="test", help="metrics of which split (default: test)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                        help=f"metric columns (default: {' '.join(DEFAULT_METRICS)})")
    parser.add_argument("--paired", action="store_true",
                        help="also set each MRdIB group against the bare runs of the same settings, seed by seed")
    parser.add_argument("--output", type=Path, default=None, help="also write the Markdown table to this file")
    parser.add_argument("--json", type=Path, default=None, help="also write the groups and their runs as JSON")
    return parser.parse_args(argv)


@run_command
def main(argv: list[str] | None = None) -> int:
    from mrdib_tf.experiments.results import find_runs, read_run
    from mrdib_tf.experiments.run_report import report_json, report_markdown, report_paired_markdown

    args = parse_args(argv)
    records = [read_run(folder) for folder in find_runs(args.runs)]
    table = report_markdown(records, args.split, args.metrics)
    if args.paired:
        table += "\n" + report_paired_markdown(records, args.split, args.metrics)
    data = report_json(records, args.split, args.metrics) if args.json else None
    print(table)
    if args.output:
        args.output.write_text(table, encoding="utf-8")
    if data is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
