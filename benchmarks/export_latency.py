"""Latency of the exported `serving_default` (p50, p99) per batch size, MRdIB export beside bare export.

Both exports of a catalogue are loaded from disk with `tf.saved_model.load` (as TF Serving would load
them, minus its server) and called in turn (bare, MRdIB, MRdIB, bare, ...) with the same random user
ids, after a warm-up, so the MRdIB/bare ratio compares like with like on a noisy machine.

    python benchmarks/export_latency.py                                 # tiktok- and clothing-size
    python benchmarks/export_latency.py --sizes tiktok --batches 1,64 --repeats 50
    python benchmarks/export_latency.py --runs runs/tiktok-vbpr-bare-X runs/tiktok-vbpr-mrdib-Y

By default the exports are built straight from `mrdib_tf.export`'s builder with RANDOM embeddings
(no training needed; latency does not depend on the values) of the catalogue's shape: tiktok-size
9,308 users x 6,710 items, clothing-size 39,387 users x 23,033 items, 128-d (VBPR's 2 x 64). The
training items to exclude are the real datasets' train splits when their `.inter` files are found
(data/<name>/ or ../shared/data/<name>/), else random sets of a similar size. `--runs BARE MRDIB`
times two real finished runs instead (exported with `trainers.export`).
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS (the index) imports only under tf_keras; set before TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_pipeline.interactions import UserItems  # noqa: E402
from mrdib_tf.export import ExportMetadata, RetrievalModule, write_version  # noqa: E402

SIZES = {"tiktok": (9308, 6710), "clothing": (39387, 23033)}
DATA_DIRS = (ROOT / "data", ROOT.parent / "shared" / "data")


def train_items(name: str, n_users: int, n_items: int, rng: np.random.Generator) -> tuple[UserItems, str]:
    """The real train split of dataset `name` if its `.inter` file is found, else random sets of ~6 items."""
    for folder in DATA_DIRS:
        inter = folder / name / f"{name}.inter"
        if inter.is_file():
            rows = np.loadtxt(inter, dtype=np.int64, skiprows=1, usecols=(0, 1, 2))
            train = rows[rows[:, 2] == 0]
            if train[:, 0].max() < n_users and train[:, 1].max() < n_items:
                return UserItems.from_pairs(train[:, 0], train[:, 1], n_users, n_items), f"real train split ({inter})"
    counts = np.clip(rng.poisson(6, n_users), 1, n_items)
    users = np.repeat(np.arange(n_users), counts)
    return UserItems.from_pairs(users, rng.integers(0, n_items, users.size), n_users, n_items), "random train sets"


def random_exports(name: str, dim: int, top_k: int, root: Path) -> tuple[dict[str, Path], str]:
    """A "bare" and an "mrdib" export of random embeddings of the catalogue `name`'s shape."""
    n_users, n_items = SIZES[name]
    rng = np.random.default_rng(0)
    train, source = train_items(name, n_users, n_items, rng)
    exports = {}
    for variant in ("bare", "mrdib"):
        module = RetrievalModule(
            rng.standard_normal((n_users, dim), dtype=np.float32),
            rng.standard_normal((n_items, dim), dtype=np.float32),
            train, top_k,
            ExportMetadata(backbone="random", dataset=f"{name}-size", mrdib=variant == "mrdib",
                           note="random embeddings (latency benchmark)"),
        )
        exports[variant] = write_version(module, root, f"{name}-{variant}")
    max_train = int(np.diff(train.indptr).max())
    return exports, f"RANDOM {dim}-d embeddings, {source}, K={top_k}, max train items per user {max_train}"


def run_exports(bare: str, mrdib: str, top_k: int, root: Path) -> tuple[dict[str, Path], str]:
    """The exports of two finished runs, as `trainers.export` writes them."""
    from trainers.export import export_run

    exports = {variant: export_run(run, root, name=variant, top_k=top_k) for variant, run in
               (("bare", bare), ("mrdib", mrdib))}
    return exports, f"real runs {bare} (bare) and {mrdib} (MRdIB), K={top_k}"


def time_batches(exports: dict[str, Path], batches: list[int], repeats: dict[int, int]) -> dict:
    """{(variant, batch): [seconds per call]}: the variants called in turn, alternating who goes first."""
    models = {variant: tf.saved_model.load(str(path)) for variant, path in exports.items()}
    signatures = {variant: model.signatures["serving_default"] for variant, model in models.items()}
    n_users = int(models["bare"].signatures["metadata"](unused=tf.constant(0, tf.int64))["n_users"])
    rng = np.random.default_rng(1)
    times: dict[tuple[str, int], list[float]] = {}
    for batch in batches:
        ids = [tf.constant(rng.integers(0, n_users, batch), tf.int64) for _ in range(repeats[batch])]
        for signature in signatures.values():  # warm-up
            for warm in ids[:3]:
                signature(user_id=warm)["item_ids"].numpy()
        for call, user_ids in enumerate(ids):
            order = list(signatures.items())
            for variant, signature in order if call % 2 == 0 else order[::-1]:  # neither always goes first
                start = time.perf_counter()
                signature(user_id=user_ids)["item_ids"].numpy()
                times.setdefault((variant, batch), []).append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiktok,clothing", help="catalogue sizes (random embeddings)")
    parser.add_argument("--runs", nargs=2, metavar=("BARE_RUN", "MRDIB_RUN"),
                        help="time two real finished runs instead of random embeddings")
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per batch size and variant (default: 200 / 100 / 30 for 1 / 64 / 1024)")
    parser.add_argument("--dim", type=int, default=128, help="embedding size of random exports")
    parser.add_argument("--top-k", type=int, default=20)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    repeats = {b: args.repeats or (200 if b < 64 else 100 if b < 1024 else 30) for b in batches}
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; serving_default latency in ms; "
          "ratio = MRdIB p50 / bare p50")
    print(f"{'catalogue':<10} {'batch':>5} {'calls':>5} {'bare p50':>9} {'bare p99':>9} "
          f"{'mrdib p50':>9} {'mrdib p99':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as root:
        jobs = [("runs", *run_exports(*args.runs, args.top_k, Path(root)))] if args.runs else [
            (name, *random_exports(name, args.dim, args.top_k, Path(root))) for name in args.sizes.split(",")
        ]
        for name, exports, description in jobs:
            print(f"# {name}: {description}")
            times = time_batches(exports, batches, repeats)
            for batch in batches:
                bare, mrdib = (np.array(times[(v, batch)]) * 1e3 for v in ("bare", "mrdib"))
                print(f"{name:<10} {batch:>5} {bare.size:>5} {np.median(bare):9.2f} {np.percentile(bare, 99):9.2f} "
                      f"{np.median(mrdib):9.2f} {np.percentile(mrdib, 99):9.2f} "
                      f"{np.median(mrdib) / np.median(bare):6.2f}", flush=True)


if __name__ == "__main__":
    main()
