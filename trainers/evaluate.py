"""`python -m trainers.evaluate --run-dir DIR`: reload a finished run's best weights and print its metrics.

Recomputes the validation and test metrics (MMRec's full ranking) from the checkpoint; they equal
the run's `metrics.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainers.console import configure_runtime, format_metrics, run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainers.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a finished run folder (written by trainers.fit)")
    return parser.parse_args(argv)


def evaluate_run(run_dir: str | Path) -> dict[str, dict[str, float]]:
    """`{"valid": metrics, "test": metrics}` of the run's best checkpoint, evaluated as its training did."""
    from mrdib_tf.callbacks import FullRankingValidation
    from mrdib_tf.experiments.runs import load_trained_run
    from mrdib_tf.metrics import FullRankingEvaluator

    model, dataset, config, _ = load_trained_run(run_dir)
    validation = FullRankingValidation(
        FullRankingEvaluator(dataset.train, dataset.valid, batch_users=config.eval_batch_users),
        jit_compile=config.jit_compile,
    )
    validation.set_model(model)
    test = FullRankingEvaluator(dataset.train, dataset.test, batch_users=config.eval_batch_users)
    return {"valid": validation.evaluate(), "test": validation.evaluate(test)}


@run_command
def main(argv: list[str] | None = None) -> int:
    configure_runtime()
    args = parse_args(argv)
    results = evaluate_run(args.run_dir)
    for split in ("valid", "test"):
        print(f"{split}:\n{format_metrics(results[split])}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
