"""`python -m trainers.fit`: train a backbone (with MRdIB by default) to early stopping and report test metrics.

With no flags it trains VBPR + MRdIB on the shipped tiktok dataset.
"""

from __future__ import annotations

import argparse
import sys

from trainers.console import configure_runtime, format_metrics, run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mrdib_tf.experiments.config import add_run_arguments

    parser = argparse.ArgumentParser(prog="python -m trainers.fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    return parser.parse_args(argv)


@run_command
def main(argv: list[str] | None = None) -> int:
    configure_runtime()
    from mrdib_tf.experiments.config import config_from_args
    from mrdib_tf.experiments.training import train

    config = config_from_args(parse_args(argv))
    result, run_dir = train(config)
    print(f"\nbest epoch {result.best_epoch} (validation {config.valid_metric} = "
          f"{result.valid[config.valid_metric]:.4f}); test metrics at that epoch:")
    print(format_metrics(result.test))
    print(f"\nrun folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
