"""Seconds per training epoch and per full-ranking evaluation, every variant timed side by side.

Variants are timed round-robin (variant A epoch, variant B epoch, ..., repeated), after one warm-up
epoch each that absorbs tracing and XLA compilation, so the ratios compare like with like on a noisy,
shared machine. Ratios are against the first variant of the same dataset and backbone. The `alphaN=0`
variants drop one MRdIB branch each (alpha1: the sampled bottleneck and its KL; alpha2: the MINE
critic; alpha3: the unique decoders), which shows what each branch costs.

    python benchmarks/training_speed.py                       # tiktok and sports, VBPR, LightGCN and MGCN
    python benchmarks/training_speed.py --datasets tiktok --repeats 5

`sports` is the real MMRec interaction graph read from ../shared/data/sports (or --sports-dir) with
RANDOM features of the real shapes (image 18357x4096, text 18357x384), because its feature files are not
available here: accuracy on it means nothing, speed does.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from data_pipeline import load_dataset  # noqa: E402
from mrdib_tf.config import RunConfig  # noqa: E402
from mrdib_tf.recommender import build_recommender  # noqa: E402
from mrdib_tf.training import Trainer  # noqa: E402

SPORTS_FEATURE_DIMS = {"image": 4096, "text": 384}

#: (label, backbone, settings) per variant; the first of each backbone is the reference for its ratios.
VARIANTS = [
    ("vbpr  xla  bare", "vbpr", {"jit_compile": True, "mrdib": False}),
    ("vbpr  xla  mrdib", "vbpr", {"jit_compile": True, "mrdib": True}),
    ("vbpr  xla  mrdib alpha2=0", "vbpr", {"jit_compile": True, "mrdib": True, "alpha2": 0.0}),
    ("vbpr  xla  mrdib alpha3=0", "vbpr", {"jit_compile": True, "mrdib": True, "alpha3": 0.0}),
    ("vbpr  xla  mrdib alpha1=0", "vbpr", {"jit_compile": True, "mrdib": True, "alpha1": 0.0}),
    ("vbpr  no-xla bare", "vbpr", {"jit_compile": False, "mrdib": False}),
    ("vbpr  no-xla mrdib", "vbpr", {"jit_compile": False, "mrdib": True}),
    ("lightgcn xla", "lightgcn", {"jit_compile": True, "mrdib": False}),
    ("lightgcn no-xla", "lightgcn", {"jit_compile": False, "mrdib": False}),
    ("mgcn  xla  bare", "mgcn", {"jit_compile": True, "mrdib": False}),
    ("mgcn  xla  mrdib", "mgcn", {"jit_compile": True, "mrdib": True}),
    ("mgcn  xla  mrdib alpha1=0", "mgcn", {"jit_compile": True, "mrdib": True, "alpha1": 0.0}),
]


def load(name: str, sports_dir: Path):
    if name != "sports":
        return load_dataset(name=name)
    dataset = load_dataset(data_dir=sports_dir, require_features=False)
    rng = np.random.default_rng(0)
    features = {
        m: rng.standard_normal((dataset.n_items, dim), dtype=np.float32)
        for m, dim in SPORTS_FEATURE_DIMS.items()
    }
    return dataclasses.replace(dataset, features=features)


def warmed_up_trainer(dataset, config: RunConfig) -> tuple[Trainer, Iterator]:
    """A built trainer and its batch stream, after one untimed epoch and evaluation (tracing, XLA)."""
    keras.utils.set_random_seed(config.seed)
    trainer = Trainer(build_recommender(dataset, config), dataset, config, verbose=False)
    trainer.build()
    batches = trainer.batch_stream()
    timed_epoch(trainer, batches, 0)
    return trainer, batches


def timed_epoch(trainer: Trainer, batches: Iterator, epoch: int) -> tuple[float, float]:
    """(seconds of training epoch `epoch`, seconds of the validation evaluation after it)."""
    start = time.perf_counter()
    trainer.train_epoch(epoch, batches)
    trained = time.perf_counter()
    trainer.evaluate(trainer.valid_evaluator)
    return trained - start, time.perf_counter() - trained


def time_variants(dataset, backbones: list[str], repeats: int) -> list[tuple[str, list, list]]:
    trainers = [
        (label, *warmed_up_trainer(dataset, RunConfig(backbone=backbone, **settings)), [], [])
        for label, backbone, settings in VARIANTS
        if backbone in backbones
    ]
    for repeat in range(repeats):
        for label, trainer, batches, epochs, evals in trainers:
            epoch_seconds, eval_seconds = timed_epoch(trainer, batches, repeat + 1)
            epochs.append(epoch_seconds)
            evals.append(eval_seconds)
    return [(label, epochs, evals) for label, _, _, epochs, evals in trainers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="tiktok,sports")
    parser.add_argument("--backbones", default="vbpr,lightgcn,mgcn")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per variant")
    parser.add_argument("--sports-dir", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "sports")
    args = parser.parse_args()
    backbones = args.backbones.split(",")
    print(f"{'dataset':<8} {'variant':<28} {'s/epoch':>8} {'ratio':>6} {'s/eval':>7} {'ratio':>6}  (median of {args.repeats})")
    for name in args.datasets.split(","):
        dataset = load(name, args.sports_dir)
        if name == "sports":
            print("# sports: real interaction graph, RANDOM features of the real shapes (image 4096-d, text 384-d)")
        reference: dict[str, tuple[float, float]] = {}
        for label, epochs, evals in time_variants(dataset, backbones, args.repeats):
            epoch, evaluation = statistics.median(epochs), statistics.median(evals)
            base_epoch, base_eval = reference.setdefault(label.split()[0], (epoch, evaluation))
            print(f"{name:<8} {label:<28} {epoch:8.3f} {epoch / base_epoch:6.2f} "
                  f"{evaluation:7.3f} {evaluation / base_eval:6.2f}", flush=True)


if __name__ == "__main__":
    main()
