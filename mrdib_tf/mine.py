"""The mutual-information estimate behind MRdIB's redundancy term: InfoNCE with a separable critic.

MRdIB minimises I(z_a; z_b) between two modalities' codes. The estimate is the InfoNCE lower bound
(van den Oord et al., 2018; Poole et al., ICML 2019) with a separable critic s(a, b) = f(a)^T g(b):

    I_hat = log m + mean_i [ s(a_i, b_i) - logsumexp_j s(a_i, b_j) ],

j running over the m rows of a_i's block: the batch is cut into blocks of about `block_size` rows, and
every other row's b in the block serves as a negative for a_i (the rows of a batch are i.i.d. draws, so
a_i and b_j, j != i, are draws from p(a) p(b)). A batched matrix product scores all pairs of a block, and
the bound needs no random pairing at all. It is at most log m (6.2 nats for blocks of 512), far above
the dependence between two modalities' codes; blocks rather than the whole batch of 2,048 rows cut the
quadratic part of the cost fourfold for an estimate as close (`benchmarks/mi_estimator.py`).

f and g are small MLPs on the codes standardised per dimension by the batch's mean and standard
deviation. Mutual information is invariant to per-dimension affine maps, so standardising changes
nothing the critic should measure, but it puts every code at the scale the critic's initialisation and
learning rate expect: a critic on raw codes with entries near 0.003 (MGCN's) is nearly additive, and
measures nothing. `benchmarks/mi_estimator.py` compares this estimator with Donsker-Varadhan (MINE) and
NWJ, with and without standardisation, at several scales, learning rates and step counts.

The critic is trained by its own optimizer, ascending `mutual_information` in its variables, while the
encoders descend the same value in the codes.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from mrdib_tf.precision import full_precision

CRITIC_LEARNING_RATE = 1e-3
"""Adam learning rate of the critic's own optimizer, one update per training step: the studied rate whose
estimate came closest to the truth (faster rates plateau lower, from noisier updates; a second update on
the same batch doubled the cost and gained nothing)."""


class Tower(NamedTuple):
    """One side's variables: (kernel, bias) of each dense layer, and the input-to-output skip kernel."""

    layers: list[tuple[keras.Variable, keras.Variable | None]]
    skip: keras.Variable


def standardize(x: tf.Tensor, epsilon: float) -> tf.Tensor:
    """(x - batch mean) / batch std per column; `epsilon` is added to the variance.

    The statistics are NOT gradient-stopped: the standardised batch is then exactly invariant to any
    per-column affine map of x, so the gradient that reaches x has no component along those maps
    (shrinking or shifting the codes cannot lower the estimate), only along changes of dependence.
    """
    mean, variance = tf.nn.moments(x, axes=[0], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon)


@keras.saving.register_keras_serializable(package="mrdib_tf")
class Critic(keras.layers.Layer):
    """s(a_i, b_j) = f(a_i)^T g(b_j) for all pairs of rows within blocks, f and g MLPs on standardised inputs.

    Each of f and g is a two-layer ELU MLP plus a linear skip from its input to its output. The skip
    gives the critic the bilinear form a^T W b at once: a linear dependence spread over all code
    dimensions has a full-rank W, which a narrow MLP alone learns slowly. ELU rather than ReLU: the rest
    of the optimal critic for Gaussian codes is a smooth quadratic form, which a smooth activation fits
    with fewer units and no dead units. `call` returns the [blocks, m, m] score matrices.

    Args:
        units: width of the hidden layers of f and g.
        embedding_dim: width of f's and g's outputs, whose dot products are the scores; at least the
            codes' width, or the bilinear part cannot reach every dimension.
        block_size: the most rows a block may have: each row's negatives are the other rows of its block.
        epsilon: added to each column's batch variance; far below the variance of any informative code
            column, it bounds the gradient through a column that has collapsed to a constant.
        seed: seeds the random kernel initialisers, seed .. seed + 7 (None: Keras' global seed).

    Example:
        >>> critic = Critic(units=32, embedding_dim=16, seed=0)
        >>> critic(tf.random.normal([5, 3]), tf.random.normal([5, 4])).shape
        TensorShape([1, 5, 5])
    """

    def __init__(
        self,
        units: int = 64,
        embedding_dim: int = 64,
        block_size: int = 512,
        epsilon: float = 1e-10,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**full_precision(kwargs))
        for name, value in (("units", units), ("embedding_dim", embedding_dim), ("block_size", block_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Critic {name} must be a positive integer, got {value!r}.")
        if not epsilon > 0:
            raise ValueError(f"Critic epsilon must be a positive float, got {epsilon!r}.")
        self.units = units
        self.embedding_dim = embedding_dim
        self.block_size = block_size
        self.epsilon = epsilon
        self.seed = seed

    def build(self, a_shape: tuple, b_shape: tuple) -> None:
        self.tower_a = self._tower("a", a_shape[-1], seed_offset=0)
        self.tower_b = self._tower("b", b_shape[-1], seed_offset=4)

    def _tower(self, side: str, input_dim: int, seed_offset: int) -> Tower:
        """One side's variables: (kernel, bias) per dense layer, then the skip kernel; created in `build`.

        g's output layer has no bias: a constant added to g(b_j) for all j adds f(a_i)^T c to every score
        of row i, which the row's softmax cancels, so that bias would never receive a gradient.

        f's output kernel and skip start at zero, so every score starts at 0 and the estimate at exactly
        0 nats: random initial scores of either sign would start the bound far below zero, and the critic
        would spend its first steps only undoing them. g's gradients flow once f's output moves off zero.
        """
        widths = [input_dim, self.units, self.units, self.embedding_dim]
        layers = []
        for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = k == len(widths) - 2
            kernel = self.add_weight(
                shape=(fan_in, fan_out), initializer=self._initializer(seed_offset + k, side == "a" and last),
                name=f"{side}_kernel_{k}",
            )
            has_bias = side == "a" or not last
            bias = self.add_weight(shape=(fan_out,), initializer="zeros", name=f"{side}_bias_{k}") if has_bias else None
            layers.append((kernel, bias))
        skip = self.add_weight(
            shape=(input_dim, self.embedding_dim), initializer=self._initializer(seed_offset + 3, side == "a"),
            name=f"{side}_skip",
        )
        return Tower(layers, skip)

    def _initializer(self, index: int, zero: bool) -> keras.initializers.Initializer:
        if zero:
            return keras.initializers.Zeros()
        # one integer seed per kernel: an initialiser with a fixed seed repeats its values on every call
        return keras.initializers.GlorotUniform(None if self.seed is None else self.seed + index)

    def embed(self, x: tf.Tensor, tower: Tower) -> tf.Tensor:
        """One side's embedding of the batch-standardised rows of x: the MLP plus the linear skip."""
        x = standardize(tf.cast(x, self.compute_dtype), self.epsilon)
        hidden = x
        for kernel, bias in tower.layers[:-1]:
            hidden = tf.nn.elu(tf.matmul(hidden, kernel) + bias)
        kernel, bias = tower.layers[-1]
        output = tf.matmul(hidden, kernel) + tf.matmul(x, tower.skip)
        return output if bias is None else output + bias

    def call(self, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        """Scores f(a_i)^T g(b_j) within each block of rows: [blocks, rows per block, rows per block].

        n rows form ceil(n / block_size) blocks of equal size; the n mod blocks rows left over (none when
        block_size divides n) are not scored.
        """
        fa, gb = self.embed(a, self.tower_a), self.embed(b, self.tower_b)
        return tf.matmul(in_blocks(fa, self.block_size), in_blocks(gb, self.block_size), transpose_b=True)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "embedding_dim": self.embedding_dim,
            "block_size": self.block_size,
            "epsilon": self.epsilon,
            "seed": self.seed,
        }


def in_blocks(x: tf.Tensor, block_size: int) -> tf.Tensor:
    """The rows of x [n, ...] as [blocks, m, ...]: ceil(n / block_size) blocks of m = n // blocks rows each
    (the n mod blocks rows left over, none when block_size divides n, are dropped)."""
    n = tf.shape(x)[0]
    blocks = (n + block_size - 1) // block_size
    rows = n // blocks
    return tf.reshape(x[: blocks * rows], tf.concat([tf.stack([blocks, rows]), tf.shape(x)[1:]], axis=0))


def info_nce(scores: tf.Tensor, same_item: tf.Tensor | None = None) -> tf.Tensor:
    """mean over blocks and rows i of [scores_ii - logsumexp_{j in C_i} scores_ij + log |C_i|] for [blocks, m, m]
    scores, C_i every row of i's block (or, with the boolean `same_item` [blocks, m, m], every row but i's
    repeats: another row of the same item is no draw from the product of the marginals)."""
    diagonal = tf.linalg.diag_part(scores)
    if same_item is None:
        candidates = tf.cast(tf.shape(scores)[-1], scores.dtype)
        return tf.reduce_mean(diagonal - tf.reduce_logsumexp(scores, axis=-1) + tf.math.log(candidates))
    excluded = tf.logical_and(same_item, tf.logical_not(tf.eye(tf.shape(scores)[-1], dtype=tf.bool)))
    scores = tf.where(excluded, tf.constant(-float("inf"), scores.dtype), scores)
    candidates = tf.reduce_sum(tf.cast(tf.logical_not(excluded), scores.dtype), axis=-1)
    return tf.reduce_mean(diagonal - tf.reduce_logsumexp(scores, axis=-1) + tf.math.log(candidates))


def mutual_information(critic: Critic, a: tf.Tensor, b: tf.Tensor, items: tf.Tensor | None = None) -> tf.Tensor:
    """The InfoNCE estimate of I(a; b) in nats from paired rows of a and b (at most log of the block size).

    Differentiable in the critic's variables (ascend it to tighten the bound) and in a and b (descend it
    to remove shared information). Rows must be i.i.d. draws. `items` [n], when given, names the item
    of each row: rows of a repeated item (popular items repeat within a batch) are then not used as each
    other's negatives.
    """
    scores = critic(a, b)
    if items is None:
        return info_nce(scores)
    blocked = in_blocks(items, critic.block_size)
    return info_nce(scores, tf.equal(blocked[:, :, None], blocked[:, None, :]))
