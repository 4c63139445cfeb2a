"""Seconds to get MGCN's k-NN item graphs: built from the features against read from the graph cache.

Both are timed in one process, taking turns (build, cold cache write, warm read; repeated), on the
real sports catalogue size with RANDOM features of the real shapes (18357 x 4096 image, 18357 x 384
text; the values do not change the work). The warm read includes hashing the feature table, which is
what finds the cached file.

    python benchmarks/knn_graph_cache.py
    python benchmarks/knn_graph_cache.py --dataset clothing --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from data_pipeline.registry import MMREC_DATASETS  # noqa: E402
from mrdib_tf.backbones.graph import knn_item_graph  # noqa: E402
from mrdib_tf.experiments.graph_cache import cached_knn_graph  # noqa: E402
from mrdib_tf.experiments.models import MGCN_KNN_K  # noqa: E402


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sports", choices=sorted(MMREC_DATASETS))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    spec = MMREC_DATASETS[args.dataset]
    rng = np.random.default_rng(0)
    print(f"{args.dataset}: {spec.n_items} items, RANDOM features of the real shapes; seconds, median of {args.repeats}")
    print(f"{'modality':<8} {'build':>8} {'cached':>8} {'build/cached':>13}")
    for modality, dim in spec.feature_dims.items():
        features = rng.standard_normal((spec.n_items, dim), dtype=np.float32)
        builds, reads = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                builds.append(timed(lambda: knn_item_graph(features, MGCN_KNN_K)))
                cached_knn_graph(features, MGCN_KNN_K, Path(folder), modality)  # writes the file
                reads.append(timed(lambda: cached_knn_graph(features, MGCN_KNN_K, Path(folder), modality)))
        build, read = statistics.median(builds), statistics.median(reads)
        print(f"{modality:<8} {build:8.2f} {read:8.3f} {build / read:13.1f}", flush=True)


if __name__ == "__main__":
    main()
