"""`python -m trainers.tune`: search MRdIB's weights alpha_kl, alpha_mi and alpha_unique (and optionally the
learning rate) with KerasTuner.

Every trial trains with early stopping on validation; the objective is the validation metric
(`--valid-metric`, default recall@20), so the choice never sees test. Interrupt it and run the same
command again: it continues where it stopped. At the end the best configuration is retrained with the
same seed and its test metrics are reported once. Everything goes to `--run-dir` (default
runs/tune-<dataset>-<backbone>-<tuner>): trials.csv, trials.md, objective.png, best.json, trials/, best/.

Example:
    python -m trainers.tune --dataset tiktok --backbone vbpr --max-trials 12 --epochs 60 --patience 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainers.console import configure_runtime, format_metrics, run_command

DEFAULT_MAX_TRIALS = 12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mrdib_tf.experiments.config import add_run_arguments
    from mrdib_tf.experiments.tuning import DEFAULT_LR_RANGE, PAPER_ALPHA_RANGE, TUNERS

    parser = argparse.ArgumentParser(prog="python -m trainers.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    search = parser.add_argument_group(
        "search (--alpha-kl, --alpha-mi and --alpha-unique are searched; --lr too with --tune-lr)"
    )
    search.add_argument("--max-trials", type=int, default=DEFAULT_MAX_TRIALS,
                        help=f"number of trials; a cap for hyperband (default: {DEFAULT_MAX_TRIALS})")
    search.add_argument("--tuner", choices=TUNERS, default="bayesian", help="search algorithm (default: bayesian)")
    search.add_argument("--tune-lr", action="store_true", help="also search the learning rate")
    search.add_argument("--alpha-range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=PAPER_ALPHA_RANGE,
                        help="log-uniform range of each alpha (default: the paper's %(default)s)")
    search.add_argument("--lr-range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=DEFAULT_LR_RANGE,
                        help="log-uniform range of the learning rate with --tune-lr (default: %(default)s)")
    search.add_argument("--initial-points", type=int, default=None,
                        help="bayesian: random trials before the Gaussian process proposes "
                             "(default: min(3 x tuned dimensions, max(2, max_trials // 2)))")
    search.add_argument("--hyperband-factor", type=int, default=3,
                        help="hyperband: reduction factor; its max_epochs is --epochs (default: 3)")
    search.add_argument("--show-epochs", action=argparse.BooleanOptionalAction, default=True,
                        help="print each trial's per-epoch lines (default: on)")
    return parser.parse_args(argv)


@run_command
def main(argv: list[str] | None = None) -> int:
    configure_runtime()
    args = parse_args(argv)
    from mrdib_tf.experiments.config import config_from_args
    from mrdib_tf.experiments.training import train
    from mrdib_tf.experiments.tuning import Search, SearchSettings

    config = config_from_args(args)
    folder = Path(config.run_dir or Path("runs") / f"tune-{config.dataset_name}-{config.backbone}-{args.tuner}")
    try:
        settings = SearchSettings(
            tuner=args.tuner, max_trials=args.max_trials, tune_lr=args.tune_lr,
            alpha_range=tuple(args.alpha_range), lr_range=tuple(args.lr_range),
            initial_points=args.initial_points, hyperband_factor=args.hyperband_factor,
        )
        search = Search(config, settings, folder, train_fn=lambda c: train(c, verbose=args.show_epochs)[0])
        outcome = search.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are saved in {folder}; run the same command again to continue.",
              file=sys.stderr)
        return 130
    except RuntimeError as error:  # KerasTuner stops after repeated failed trials
        print(f"error: {error}", file=sys.stderr)
        return 1
    best = outcome.best_config
    print(f"\nbest configuration (trial {outcome.best_trial}): alpha_kl={best.alpha_kl:.4g} alpha_mi={best.alpha_mi:.4g} "
          f"alpha_unique={best.alpha_unique:.4g} lr={best.lr:.4g}; validation {config.valid_metric} = "
          f"{outcome.best_objective:.4f} in the search, {outcome.retrained.valid[config.valid_metric]:.4f} retrained")
    print(f"test metrics of the retrained run (best epoch {outcome.retrained.best_epoch}):")
    print(format_metrics(outcome.retrained.test))
    print(f"\nsearch folder: {folder} (trials.md, trials.csv, objective.png, best.json, best/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
