"""MINE (Belghazi et al., 2018): a neural Donsker-Varadhan lower bound on mutual information.

MRdIB's redundancy objective minimises I(z_a; z_b) between two modalities' codes. MINE estimates it
with a critic T that maximises

    I_hat = mean_i T(a_i, b_i) - log mean_j exp T(a_j, b_{(j - s) mod n}),

where pairing each a with another row's b samples the product of the marginals. The pairing is a random
cyclic shift s in [1, n - 1] of the batch rather than a random permutation: the rows of a batch are
i.i.d. draws (the training data are fully shuffled), so a_j and b_k from two different rows are
independent and each such pair is a draw from p(a) p(b), whichever k != j is chosen. A shift never pairs
a row with itself (a permutation keeps about one fixed point, a joint pair in the marginal term), and it
costs a slice and a concatenation where a permutation costs a sort, which XLA on CPU compiles very
badly. The rows must be in random order for this to hold: feed shuffled batches.

The critic ascends I_hat while the encoders descend it; `reverse_gradient` lets one loss and one
optimizer step do both (see `MRdIBRegularizer.auxiliary_losses` for the sign convention).
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


def marginal_shift(n: tf.Tensor | int, seed: tf.Tensor) -> tf.Tensor:
    """A uniformly random cyclic shift in [1, n - 1] (0 when n == 1) from a stateless int32 seed of shape [2].

    `tf.roll(b, shift, axis=0)` then pairs row j with row (j - shift) mod n: a derangement of the rows.
    """
    n = tf.convert_to_tensor(n, tf.int32)
    shift = tf.random.stateless_uniform([], seed=seed, minval=1, maxval=tf.maximum(n, 2), dtype=tf.int32)
    return tf.math.floormod(shift, n)


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
        """T(a_i, b_i) for every row i."""
        from_a, from_b = self._first_layer_terms(a, b)
        return self._scores_from_first_layer(from_a + from_b)

    def joint_and_marginal(self, a: tf.Tensor, b: tf.Tensor, shift: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """T(a_i, b_i) and T(a_i, b_{(i - shift) mod n}) in one pass.

        The first layer is linear in concat(a, b), so a W_a and b W_b are computed once and the shifted
        pairing rolls b W_b instead of b: half the first-layer work of two separate calls.
        """
        with keras.name_scope(self.name, caller=self):  # what __call__ would open: variable and op names
            if not self.built:
                self.build(tuple(a.shape), tuple(b.shape))
            from_a, from_b = self._first_layer_terms(a, b)
            n = tf.shape(a)[0]
            both = self._scores_from_first_layer(
                tf.concat([from_a + from_b, from_a + tf.roll(from_b, shift, axis=0)], axis=0)
            )
            return both[:n], both[n:]

    def _first_layer_terms(self, a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """a W_a and b W_b, where [W_a; W_b] is the first hidden layer's kernel split by input rows."""
        kernel = self.hidden[0].kernel
        width = a.shape[-1]
        return tf.matmul(a, kernel[:width]), tf.matmul(b, kernel[width:])

    def _scores_from_first_layer(self, pre_activation: tf.Tensor) -> tf.Tensor:
        first = self.hidden[0]
        x = first.activation(pre_activation + first.bias)
        for layer in self.hidden[1:]:
            x = layer(x)
        return tf.squeeze(self.score(x), axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "seed": self.seed}


def mine_lower_bound(critic: Critic, a: tf.Tensor, b: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The Donsker-Varadhan estimate of I(a; b) from paired rows; `seed` ([2] int32) draws the marginal shift."""
    joint, marginal = critic.joint_and_marginal(a, b, marginal_shift(tf.shape(b)[0], seed))
    return donsker_varadhan(joint, marginal)
