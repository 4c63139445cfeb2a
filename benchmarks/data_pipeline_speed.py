"""Data pipeline speed: .inter parsing, first conversion to TFRecords, cached load, train_batches throughput.

    python benchmarks/data_pipeline_speed.py                      # ../shared/data/sports, interactions only
    python benchmarks/data_pipeline_speed.py --random-features    # plus image 4096-d / text 384-d features

Every run converts into a fresh temporary cache, so "first load" always includes the conversion.
`--random-features` copies the .inter file beside RANDOM features of MMRec's shapes (the real Amazon
feature files are not available here): it times the feature store, nothing else.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from data_pipeline import load_dataset
from data_pipeline.inter_file import read_inter_file

MMREC_FEATURE_DIMS = {"image": 4096, "text": 384}


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_dir = Path(__file__).resolve().parents[2] / "shared" / "data" / "sports"
    parser.add_argument("--data-dir", type=Path, default=default_dir)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--random-features", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data_dir
        name = folder.name
        if args.random_features:
            folder = Path(scratch) / name
            folder.mkdir()
            shutil.copy(args.data_dir / f"{name}.inter", folder)
            n_items = int(read_inter_file(folder / f"{name}.inter").items.max()) + 1
            rng = np.random.default_rng(0)
            for modality, dim in MMREC_FEATURE_DIMS.items():
                np.save(
                    folder / f"{modality}_feat.npy", rng.standard_normal((n_items, dim), dtype=np.float32)
                )
        cache_root = Path(scratch) / "cache"

        table, parse_s = timed(lambda: read_inter_file(folder / f"{name}.inter"))
        print(f"{name}: {table.users.size:,} rows; .inter parse {parse_s:.2f} s")
        data, first_s = timed(
            lambda: load_dataset(data_dir=folder, cache_root=cache_root, require_features=False)
        )
        print(f"first load (validate + convert + read back): {first_s:.2f} s")
        _, cached_s = timed(
            lambda: load_dataset(data_dir=folder, cache_root=cache_root, require_features=False)
        )
        print(f"cached load: {cached_s:.2f} s; features {sorted(data.features)}")

        for epoch in range(args.epochs):
            start = time.perf_counter()
            batches = data.train_batches(args.batch_size, seed=0, epoch=epoch)
            count = sum(int(batch["user"].shape[0]) for batch in batches)
            seconds = time.perf_counter() - start
            rate = count / seconds
            print(
                f"train_batches epoch {epoch}: {count:,} examples in {seconds:.2f} s = {rate:,.0f} examples/s"
            )


if __name__ == "__main__":
    main()
