"""`python -m trainers.ablate`: the MRdIB paper's ablation over several seeds.

Variants: full MRdIB (the --alpha-kl, --alpha-mi and --alpha-unique given); alpha_kl = 0;
alpha_mi = 0; alpha_unique = 0; alpha_mi = alpha_unique = 0; and the bare backbone. Each trains with seeds --seed .. --seed + S - 1 into
<run-dir>/<variant>/seed-<seed>/ (default run-dir: runs/ablate-<dataset>-<backbone>). ablation.md and
ablation.json hold test Recall and NDCG at 10 and 20, mean ± sample std over seeds. Finished runs are
reused, so an interrupted ablation continues when the same command runs again.

Example:
    python -m trainers.ablate --dataset tiktok --backbone vbpr --seeds 3 --epochs 60 --patience 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainers.console import configure_runtime, run_command

DEFAULT_SEEDS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mrdib_tf.experiments.config import add_run_arguments

    parser = argparse.ArgumentParser(prog="python -m trainers.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"seeds per variant, from --seed on (default: {DEFAULT_SEEDS})")
    parser.add_argument("--show-epochs", action=argparse.BooleanOptionalAction, default=False,
                        help="print each run's per-epoch lines (default: off)")
    return parser.parse_args(argv)


@run_command
def main(argv: list[str] | None = None) -> int:
    configure_runtime()
    args = parse_args(argv)
    from mrdib_tf.experiments.ablation import MARKDOWN_FILE, run_ablation
    from mrdib_tf.experiments.config import config_from_args
    from mrdib_tf.experiments.training import train

    config = config_from_args(args)
    folder = Path(config.run_dir or Path("runs") / f"ablate-{config.dataset_name}-{config.backbone}")
    try:
        run_ablation(config, args.seeds, folder, train_fn=lambda c: train(c, verbose=args.show_epochs)[0])
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are saved in {folder}; run the same command again to continue.",
              file=sys.stderr)
        return 130
    print()
    print((folder / MARKDOWN_FILE).read_text(encoding="utf-8"))
    print(f"ablation folder: {folder} ({MARKDOWN_FILE}, ablation.json, one folder per variant and seed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
