"""`python -m trainers.corrupt --data-dir SRC --out DST`: a corrupted copy of an MMRec dataset.

DST is an MMRec-layout folder (`DST/<name>.inter`, `DST/<modality>_feat.npy`, named after DST) that every
other command reads with `--data-dir DST`, plus `corruption.json`: the recipe, the source files' SHA-256
and what was measured of each transform. Per modality, repeatable:

  --nuisance-dims MOD=K   append K Gaussian columns at the modality's mean column spread
  --snr MOD=X             add Gaussian noise of variance var(column) / X to every column
  --shuffle-rows MOD=P    a fraction P of items take another item's row
  --missing-rows MOD=P    a fraction P of rows set to the column means (Amazon's items without an image)

and --keep-train P (each user keeps a fraction P of its training rows; validation and test unchanged).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainers.console import run_command


@run_command
def main(argv: list[str] | None = None) -> int:
    from data_pipeline.corruption import CorruptionRecipe, corrupt_dataset, parse_amounts

    parser = argparse.ArgumentParser(prog="python -m trainers.corrupt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="the source MMRec folder (read only)")
    parser.add_argument("--out", type=Path, required=True, help="the new folder to write (must not exist)")
    for flag, metavar in (("nuisance-dims", "MOD=K"), ("snr", "MOD=X"), ("shuffle-rows", "MOD=P"),
                          ("missing-rows", "MOD=P")):
        parser.add_argument(f"--{flag}", action="append", metavar=metavar)
    parser.add_argument("--keep-train", type=float, default=None, help="fraction of each user's training rows kept")
    parser.add_argument("--seed", type=int, default=0, help="fixes every draw (default 0)")
    args = parser.parse_args(argv)
    recipe = CorruptionRecipe(
        nuisance_dims=parse_amounts(args.nuisance_dims, "--nuisance-dims", int),
        snr=parse_amounts(args.snr, "--snr", float),
        shuffle_rows=parse_amounts(args.shuffle_rows, "--shuffle-rows", float),
        missing_rows=parse_amounts(args.missing_rows, "--missing-rows", float),
        keep_train=args.keep_train, seed=args.seed,
    )
    record = corrupt_dataset(args.data_dir, args.out, recipe)
    print(json.dumps(record["measured"], indent=2, sort_keys=True))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
