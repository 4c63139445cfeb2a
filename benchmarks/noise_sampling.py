"""Milliseconds to draw one training step's bottleneck noise, every generator timed side by side.

The bottleneck draws one N(0, 1) number per encoded row, modality and code dimension: 4,096 rows x 2
modalities x 64 on tiktok with VBPR (batch 2,048, positives and negatives). Generators are called
round-robin after a warm-up call each, so the ratios (against `mrdib_tf.sampling.standard_normal`)
compare like with like on a shared machine.

    python benchmarks/noise_sampling.py
    python benchmarks/noise_sampling.py --rows 18357 --repeats 9     # sports, a graph backbone's whole table
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from mrdib_tf.sampling import quantile_normals, standard_normal  # noqa: E402


def philox_words_then_quantiles(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The same quantile transform fed by TensorFlow's Philox asked for 64-bit words."""
    return quantile_normals(
        shape,
        lambda count: tf.random.stateless_uniform(
            tf.reshape(count, [1]), seed=seed, minval=None, maxval=None, dtype=tf.uint64
        ),
    )


def tfp_normal_sample(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tfp.distributions.Normal(0.0, 1.0).sample(shape, seed=seed)


def tf_stateless_normal(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.random.stateless_normal(shape, seed=seed)


GENERATORS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "splitmix64 + quantiles (ours)": standard_normal,
    "philox 64-bit words + quantiles": philox_words_then_quantiles,
    "tf.random.stateless_normal": tf_stateless_normal,
    "tfp Normal.sample": tfp_normal_sample,
}


def time_generators(shape: list[int], jit: bool, calls: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per call of each generator, compiled with or without XLA."""
    shape_tensor = tf.constant(shape, tf.int32)
    compiled = {name: tf.function(fn, jit_compile=jit) for name, fn in GENERATORS.items()}
    seeds = [tf.constant([7, step], tf.int32) for step in range(calls)]
    for fn in compiled.values():
        fn(shape_tensor, seeds[0]).numpy()
    times: dict[str, list[float]] = {name: [] for name in compiled}
    for _ in range(repeats):
        for name, fn in compiled.items():
            start = time.perf_counter()
            for seed in seeds:
                draw = fn(shape_tensor, seed)
            draw.numpy()
            times[name].append((time.perf_counter() - start) / calls * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4096, help="encoded rows per step")
    parser.add_argument("--modalities", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64, help="code dimension")
    parser.add_argument("--calls", type=int, default=20, help="draws per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per generator (the median is shown)")
    args = parser.parse_args()
    shape = [args.modalities * args.rows, args.dim]
    print(f"{shape[0] * shape[1]:,} numbers per draw; ms per draw, median of {args.repeats}")
    print(f"{'generator':<34} {'xla ms':>8} {'ratio':>7} {'eager ms':>9} {'ratio':>7}")
    xla = time_generators(shape, True, args.calls, args.repeats)
    eager = time_generators(shape, False, args.calls, args.repeats)
    ours = next(iter(GENERATORS))
    for name in GENERATORS:
        print(f"{name:<34} {xla[name]:8.2f} {xla[name] / xla[ours]:7.2f} "
              f"{eager[name]:9.2f} {eager[name] / eager[ours]:7.2f}", flush=True)


if __name__ == "__main__":
    main()
