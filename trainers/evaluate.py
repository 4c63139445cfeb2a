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
    """`{"valid": metrics, "test": metrics}` of the run's best checkpoint, evaluated as its Trainer did."""
    from mrdib_tf.runs import load_trained_run
    from mrdib_tf.training import Trainer

    model, dataset, config, _ = load_trained_run(run_dir)
    trainer = Trainer(model, dataset, config, run_dir=None, verbose=False)
    return {
        "valid": trainer.evaluate(trainer.valid_evaluator),
        "test": trainer.evaluate(trainer.test_evaluator),
    }


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
