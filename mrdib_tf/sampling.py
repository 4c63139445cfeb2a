"""Standard normal noise for the bottleneck's reparameterized samples, from a counter-based SplitMix64.

Every training step draws one standard normal per encoded item row, modality and code dimension, so
how the draw compiles matters. Under XLA on CPU, TensorFlow's stateless generators (Philox, behind
`tf.random.stateless_normal` and TFP's `Normal.sample`) are many times slower than the rest of a step;
Threefry is fast but runs only inside XLA. SplitMix64 (Steele, Lea & Flood, OOPSLA 2014; the generator
of Java's `SplittableRandom`, which passes BigCrush) is a Weyl sequence passed through a 64-bit
finalizer: a few multiplies, shifts and xors per word, elementwise over a counter, so XLA fuses and
vectorises it, and the words are identical with and without XLA. `benchmarks/noise_sampling.py`
measures the alternatives side by side (figures in docs/RESULTS.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's Weyl increment: 2^64 / golden ratio, made odd


def derived_seed(*values: int) -> int:
    """A non-negative int32 seed hashed from integers such as (run seed, purpose, index).

    Hashed, not added: seed + index would give run seed 1000's first stream to run seed 999's second.
    """
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint32)[0] >> 1)


def _mix64(z: tf.Tensor) -> tf.Tensor:
    """SplitMix64's output function (Stafford's "Mix13" variant of MurmurHash3's 64-bit finalizer)."""
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, np.uint64(31)))


def splitmix64(state: tf.Tensor, count: tf.Tensor | int) -> tf.Tensor:
    """The first `count` uint64 outputs of SplitMix64 started from the uint64 scalar `state`.

    Output i is mix64(state + (i + 1) * gamma), computed for every i at once (uint64 arithmetic wraps).
    """
    steps = tf.cast(tf.range(1, tf.cast(count, tf.int64) + 1, dtype=tf.int64), tf.uint64)
    return _mix64(state + steps * np.uint64(GOLDEN_GAMMA))


def seed_state(seed: tf.Tensor) -> tf.Tensor:
    """A uint64 SplitMix64 state from a stateless int32 seed of shape [2], hashed so nearby seeds start far apart."""
    halves = tf.cast(tf.bitcast(tf.cast(seed, tf.int32), tf.uint32), tf.uint64)
    return _mix64(tf.bitwise.bitwise_or(tf.bitwise.left_shift(halves[0], np.uint64(32)), halves[1]))


def standard_normal(shape: tf.Tensor | Sequence[int], seed: tf.Tensor) -> tf.Tensor:
    """float32 N(0, 1) numbers of the given shape from a stateless int32 seed of shape [2].

    `quantile_normals` fed by SplitMix64. A seed fixes the draw, with or without XLA (the two agree up
    to float32 rounding of the quantile function).
    """
    return quantile_normals(shape, lambda count: splitmix64(seed_state(seed), count))


def quantile_normals(
    shape: tf.Tensor | Sequence[int], draw_words: Callable[[tf.Tensor], tf.Tensor]
) -> tf.Tensor:
    """float32 N(0, 1) numbers of `shape`, two from each uint64 word that `draw_words(count)` returns.

    Each number is the normal quantile at u = (k + 1/2) / 2^24 for a uniform 24-bit k: exact quantiles
    of the normal at 2^24 equally likely levels, so |x| <= 5.4 (the tail beyond has probability 7e-8).
    """
    shape = tf.convert_to_tensor(shape, tf.int32)
    count = tf.reduce_prod(shape)
    words = draw_words((count + 1) // 2)
    halves = tf.reshape(tf.bitcast(words, tf.uint32), [-1])[:count]
    return tf.reshape(normal_quantiles(halves), shape)


def normal_quantiles(words: tf.Tensor) -> tf.Tensor:
    """The N(0, 1) quantile at u = (k + 1/2) / 2^24, k the top 24 bits of each uint32 word.

    Computed on the lower half only and mirrored (ndtri of p = min(u, 1 - u), which is exact in
    float32): forming u near 1 rounds k + 1/2 = 2^24 - 1/2 up to u = 1, and TensorFlow's float32
    erfinv is already inf at 1 - 2^-24, so the direct formula drew inf once in 2^24 numbers.
    """
    levels = tf.cast(tf.bitwise.right_shift(words, 8), tf.int32)
    lower = levels < 2**23
    mirrored = tf.where(lower, levels, 2**24 - 1 - levels)
    tail = tf.math.ndtri((tf.cast(mirrored, tf.float32) + 0.5) * np.float32(2.0**-24))
    return tf.where(lower, tail, -tail)
