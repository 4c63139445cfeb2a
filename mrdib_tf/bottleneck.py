"""MRdIB's variational bottleneck for one modality: q(z | h) = Normal(mu(h), (s sigma(h))^2) and its KL.

The prior is matched to a per-dimension mean and spread (c, s) over the batch's item rows, and sigma is
measured in units of s, so the KL does not depend on the scale of h: one weight means the same for
VBPR's projections (entries near 1) and MGCN's propagated views (entries near 0.003).

The encoder maps h to mu and sigma per dimension by default (`encoder="diagonal"`): h is already the
output of the backbone's own learned projection, so a full d x d map on top of it mixes nothing the
backbone cannot, adds capacity the bare model lacks (a linear layer on MMGCN's raw audio features), and
costs two d x d products over every item of a graph backbone each step. With the prior matched to the
codes (the default) the two encoders trained alike on VBPR and MGCN; with the prior matched to the
inputs, where the KL also pulls the means in, the diagonal one fell far behind on VBPR (docs/RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from mrdib_tf.precision import Dense, full_precision
from mrdib_tf.sampling import standard_normal

tfd = tfp.distributions

#: sigma (in units of the spread s) never drops below this, so log sigma in the KL stays finite.
SIGMA_FLOOR = 1e-4
#: Keeps the spread positive on a constant (dead) dimension.
SPREAD_EPSILON = 1e-12
#: Whose per-dimension spread the prior is matched to (see `ModalityBottleneck`).
PRIOR_SCALES = ("codes", "inputs")
#: The maps from h to mu and to sigma's logits: per dimension, or full d x d layers.
ENCODERS = ("diagonal", "dense")


@dataclass(frozen=True)
class Encoding:
    """One modality's bottleneck for one step.

    Attributes:
        codes: [n, d] one code per row given: a reparameterized sample in training, mu at inference.
        batch_codes: [r, d] the codes of the batch rows, standardised by (c, s): what MRdIB's heads read.
        posterior: q(z | h) on the batch rows, event shape [d]; None when the bottleneck is deterministic.
        prior: the form's prior on the same rows (the matched N(c, s^2) here); None likewise.
    """

    codes: tf.Tensor
    batch_codes: tf.Tensor
    posterior: tfd.Distribution | None = None
    prior: tfd.Distribution | None = None
    kl_over_dimensions: str = "sum"

    @property
    def has_kl(self) -> bool:
        return self.posterior is not None

    def kl(self) -> tf.Tensor:
        """KL(q || prior) per item, averaged over the batch rows: the sum over the d dimensions (nats per
        item), or their mean where the form says so (`kl_over_dimensions="mean"`, DVIB's reduction)."""
        per_item = tfd.kl_divergence(self.posterior, self.prior)
        if self.kl_over_dimensions == "mean":
            per_item /= tf.cast(tf.shape(self.batch_codes)[-1], per_item.dtype)
        return tf.reduce_mean(per_item)

    def rate(self) -> tf.Tensor:
        """The KL in nats per item and dimension, whatever the form's reduction."""
        return tf.reduce_mean(self.kl_per_dimension())

    def kl_per_dimension(self) -> tf.Tensor:
        """[d] the KL of each dimension's marginal posterior, averaged over the rows."""
        return tf.reduce_mean(tfd.kl_divergence(self.posterior.distribution, self.prior.distribution), axis=0)

    def noise_to_spread(self) -> tf.Tensor:
        """[d] each dimension's posterior scale averaged over the rows, over the spread of its means."""
        means = self.posterior.distribution.loc
        spread = tf.math.reduce_std(means, axis=0) + SPREAD_EPSILON
        return tf.reduce_mean(self.posterior.distribution.scale + tf.zeros_like(means), axis=0) / spread


def reparameterization_noise(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`standard_normal(shape, seed)`, computed once per step however many ops read it.

    Under XLA the draw (a SplitMix64 hash and a normal quantile per number) is elementwise, so the
    compiler fuses a fresh copy of it into each consumer of the codes (the sample, its batch rows, a
    graph backbone's propagation) and a step computes it several times. XLA does not fuse across a
    conditional, so the draw sits in one whose predicate always holds (the step counter, seed[1], is
    never negative). On tiktok, MRdIB's cost over bare DualGNN is 1.22x an epoch with it and 1.30x with
    the draw inline (`benchmarks/training_speed.py`, whose `fitn ... inline noise` variants time both forms
    side by side; docs/RESULTS.md).
    """
    return tf.cond(seed[1] >= 0, lambda: standard_normal(shape, seed), lambda: tf.zeros(shape))


def batch_moments(rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-dimension mean and standard deviation of `rows` over its rows."""
    mean, variance = tf.nn.moments(rows, axes=[0])
    return mean, tf.sqrt(variance + SPREAD_EPSILON)


@keras.saving.register_keras_serializable(package="mrdib_tf")
class Diagonal(keras.layers.Layer):
    """x * kernel + bias, one kernel entry per dimension: a `Dense` layer whose kernel is diagonal."""

    def __init__(self, kernel_initializer: str | keras.initializers.Initializer = "ones",
                 bias_initializer: str | keras.initializers.Initializer = "zeros", **kwargs) -> None:
        super().__init__(**full_precision(kwargs))
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: tuple) -> None:
        width = input_shape[-1]
        self.kernel = self.add_weight(shape=(width,), initializer=self.kernel_initializer, name="kernel")
        self.bias = self.add_weight(shape=(width,), initializer=self.bias_initializer, name="bias")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x * self.kernel + self.bias

    def get_config(self) -> dict:
        return {**super().get_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}


@keras.saving.register_keras_serializable(package="mrdib_tf")
class ModalityBottleneck(keras.layers.Layer):
    """The variational bottleneck of one modality's representation h [n, d].

    mu = A(h), initialised to the identity (training starts at the backbone's own h). sigma =
    sigmoid(B((mu - c) / s)) in (0, 1), starting at `initial_sigma` everywhere, and the posterior's
    scale is s sigma: noise is measured against the code's spread, whatever its scale. A and B are
    affine maps, per dimension (`Diagonal`, the default) or full (`Dense`), as `encoder` says.
    KL(q || N(c, s^2)) per dimension is -log sigma + (sigma^2 + ((mu - c) / s)^2) / 2 - 1/2.

    `prior_scale` says whose spread (c, s) are, over the batch rows: "codes" (mu's own, with their
    gradient), so that the mean of ((mu - c) / s)^2 is exactly 1 and the KL prices only the noise, a
    signal-to-noise ratio (the rate of a Gaussian channel); or "inputs" (h's, held constant), the
    variational bottleneck of Alemi et al. on standardised inputs, where shrinking the means also lowers
    the KL.

    Args:
        stochastic: sample z in training (False: a deterministic encoder, z = mu, no sigma head).
        initial_sigma: sigma at initialisation, in (0, 1).
        prior_scale: "codes" or "inputs".
        encoder: "diagonal" or "dense" (see the module's docstring).
    """

    def __init__(self, stochastic: bool = True, initial_sigma: float = 0.1, prior_scale: str = "codes",
                 encoder: str = "diagonal", **kwargs):
        super().__init__(**full_precision(kwargs))
        if not isinstance(initial_sigma, (int, float)) or not 0 < initial_sigma < 1:
            raise ValueError(f"initial_sigma must be in (0, 1), got {initial_sigma!r}.")
        if prior_scale not in PRIOR_SCALES:
            raise ValueError(f"prior_scale must be one of {PRIOR_SCALES}, got {prior_scale!r}.")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}.")
        self.stochastic = stochastic
        self.encoder = encoder
        self.initial_sigma = float(initial_sigma)
        self.prior_scale = prior_scale

    def build(self, input_shape: tuple) -> None:
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"a representation must be [n_items, d] with a known d, got shape {tuple(input_shape)}.")
        width = input_shape[-1]
        dense = self.encoder == "dense"
        self.mu = Dense(width, kernel_initializer="identity", name="mu") if dense else Diagonal(name="mu")
        self.mu.build((None, width))
        self.sigma = None
        if self.stochastic:
            logit = keras.initializers.Constant(math.log(self.initial_sigma / (1.0 - self.initial_sigma)))
            self.sigma = (Dense(width, kernel_initializer="zeros", bias_initializer=logit, name="sigma") if dense
                          else Diagonal(kernel_initializer="zeros", bias_initializer=logit, name="sigma"))
            self.sigma.build((None, width))

    def call(self, h: tf.Tensor) -> tf.Tensor:
        """The posterior mean mu(h): the inference path."""
        return self.mu(h)

    def encode(self, h: tf.Tensor, rows: tf.Tensor | None, noise_seed: tf.Tensor | None) -> Encoding:
        """Encodes every row of h; statistics, posterior and prior on `rows` (None: every row).

        Args:
            h: [n, d] the representations.
            rows: the batch's rows of h (positives then negatives), or None when h holds just those.
            noise_seed: a stateless int32 [2] seed for the reparameterization noise; None gives the means.
        """
        if not self.built:
            self.build(tuple(h.shape))
        with keras.name_scope(self.name, caller=self):
            select = (lambda x: x) if rows is None else (lambda x: tf.gather(x, rows))
            mu = self.mu(h)
            # Matched to the codes the statistics keep their gradient: the standardised means then have
            # mean square exactly 1 whatever mu does, so the KL's gradient reaches sigma only.
            reference = select(mu) if self.prior_scale == "codes" else tf.stop_gradient(select(h))
            center, spread = batch_moments(reference)
            if self.sigma is None:
                return Encoding(mu, (select(mu) - center) / spread)
            scale = spread * (SIGMA_FLOOR + (1.0 - SIGMA_FLOOR) * tf.sigmoid(self.sigma((mu - center) / spread)))
            codes = mu if noise_seed is None else mu + scale * reparameterization_noise(tf.shape(mu), noise_seed)
            mu_rows = select(mu)
            posterior = tfd.Independent(tfd.Normal(mu_rows, select(scale)), reinterpreted_batch_ndims=1)
            prior = tfd.Independent(
                tfd.Normal(center + tf.zeros_like(mu_rows), spread + tf.zeros_like(mu_rows)), reinterpreted_batch_ndims=1
            )
            return Encoding(codes, (select(codes) - center) / spread, posterior, prior)

    def get_config(self) -> dict:
        return {**super().get_config(), "stochastic": self.stochastic, "initial_sigma": self.initial_sigma,
                "prior_scale": self.prior_scale, "encoder": self.encoder}
