"""MINE (Belghazi et al., 2018): a neural Donsker-Varadhan lower bound on mutual information.

MRdIB's redundancy objective minimises I(z_a; z_b) between two modalities' codes. MINE estimates it
with a critic T that maximises

    I_hat = mean_i T(a_i, b_i) - log mean_j exp T(a_j, b_perm(j)),

where pairing a with a shuffled b samples the product of the marginals. The critic ascends I_hat while
the encoders descend it; `reverse_gradient` lets one loss and one optimizer step do both (see
`MRdIBRegularizer.auxiliary_losses` for the sign convention).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@tf.custom_gradient
def reverse_gradient(x: tf.Tensor):
    """Identity in the forward pass; negates the gradient in the backward pass."""

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        return -upstream

    return tf.identity(x), grad


def random_permutation(n: tf.Tensor | int, seed: tf.Tensor) -> tf.Tensor:
    """A uniformly random permutation of range(n) from a stateless int32 seed of shape [2].

    argsort of uniform noise rather than tf.random.shuffle: it is stateless (reproducible from the
    seed) and compiles under XLA.
    """
    return tf.argsort(tf.random.stateless_uniform([n], seed=seed))


def donsker_varadhan(joint_scores: tf.Tensor, marginal_scores: tf.Tensor) -> tf.Tensor:
    """mean(joint) - log mean exp(marginal), the log-mean-exp taken stably as logsumexp - log n."""
    n = tf.cast(tf.shape(marginal_scores)[0], marginal_scores.dtype)
    log_mean_exp = tf.reduce_logsumexp(marginal_scores) - tf.math.log(n)
    return tf.reduce_mean(joint_scores) - log_mean_exp


class Critic(keras.layers.Layer):
    """T(a, b): an MLP on concat(a, b) with two ELU hidden layers, one score per row.

    ELU rather than ReLU: the optimal critic for Gaussian codes is a smooth quadratic form, which a
    smooth activation fits with fewer units and no dead units.

    Args:
        units: width of both hidden layers.
        seed: seeds the weight initialisers, seed .. seed + 2 (None: Keras' global seed).
    """

    def __init__(self, units: int = 64, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"Critic units must be a positive integer, got {units!r}.")
        self.units = units
        self.seed = seed
        self.hidden = [
            keras.layers.Dense(units, activation="elu", kernel_initializer=self._initializer(k), name=f"hidden_{k}")
            for k in range(2)
        ]
        self.score = keras.layers.Dense(1, kernel_initializer=self._initializer(2), name="score")

    def _initializer(self, index: int) -> keras.initializers.Initializer:
        # One integer seed per dense: an initialiser with a fixed seed repeats its values on every call.
        return keras.initializers.GlorotUniform(None if self.seed is None else self.seed + index)

    def build(self, a_shape: tuple, b_shape: tuple) -> None:
        shape = (a_shape[0], a_shape[-1] + b_shape[-1])
        for layer in self.hidden:
            layer.build(shape)
            shape = (shape[0], self.units)
        self.score.build(shape)

    def call(self, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        x = tf.concat([a, b], axis=-1)
        for layer in self.hidden:
            x = layer(x)
        return tf.squeeze(self.score(x), axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "seed": self.seed}


def mine_lower_bound(critic: Critic, a: tf.Tensor, b: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The Donsker-Varadhan estimate of I(a; b) from paired rows, shuffling b with `seed` ([2] int32)."""
    shuffled_b = tf.gather(b, random_permutation(tf.shape(b)[0], seed))
    return donsker_varadhan(critic(a, b), critic(a, shuffled_b))

