"""The bottleneck forms `MRdIBRegularizer` can put on each modality, chosen by one setting, `bottleneck`.

- "matched" (`ModalityBottleneck`): the prior matched to the batch's spread of the codes (or inputs);
  with the codes' spread the KL prices only the noise, never the means.
- "paper": the variational information bottleneck as the MRdIB paper describes it: an encoder from the
  standardised representation u = (h - c) / s to a mean and a log-scale, the prior N(0, I) on u's scale,
  the KL summed over dimensions per item, the ranking read from z. The means are pulled in as well.
- "dvib": the bottleneck of the same group's DVIB code: mu = h itself, one noise scale per item from a
  small sigmoid MLP on h, the prior N(0, 0.5^2) in h's own units, the KL averaged over items and
  dimensions.

And two controls with no KL, which tell what the KL adds over plain regularising noise:

- "noise": Gaussian noise of a fixed scale (`initial_sigma` times each dimension's batch spread);
- "dropout": each entry of h zeroed with probability `dropout_rate` (inverted dropout).

Every form returns an `Encoding`; at inference each returns its deterministic map of h.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from mrdib_tf.bottleneck import SIGMA_FLOOR, Encoding, ModalityBottleneck, batch_moments, reparameterization_noise
from mrdib_tf.precision import Dense, full_precision

tfd = tfp.distributions

#: The forms with a KL term, and the controls without one.
KL_FORMS = ("matched", "paper", "dvib")
CONTROL_FORMS = ("noise", "dropout")
FORMS = KL_FORMS + CONTROL_FORMS
#: DVIB's prior scale and its noise network's hidden width.
DVIB_PRIOR_SCALE = 0.5
DVIB_HIDDEN_UNITS = 32
#: The paper form's log-scale is clipped above so that a diverging head cannot overflow exp.
MAX_LOG_SIGMA = 5.0


def _rows(x: tf.Tensor, rows: tf.Tensor | None) -> tf.Tensor:
    return x if rows is None else tf.gather(x, rows)


def _independent(loc: tf.Tensor, scale: tf.Tensor) -> tfd.Distribution:
    return tfd.Independent(tfd.Normal(loc, scale + tf.zeros_like(loc)), reinterpreted_batch_ndims=1)


def _standardised_rows(h: tf.Tensor, rows: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
    """(c, s): the batch rows' per-dimension mean and spread of h, held constant."""
    return batch_moments(tf.stop_gradient(_rows(h, rows)))


@keras.saving.register_keras_serializable(package="mrdib_tf")
class PaperBottleneck(keras.layers.Layer):
    """The deep VIB on standardised inputs: q = N((A h - c) / s, diag(exp(2 B u))) against N(0, I).

    u = (h - c) / s, (c, s) the batch rows' per-dimension mean and spread of h, held constant, so the
    prior is N(0, I) on the standardised input whatever h's scale. The mean is written on h's scale
    (A h, served as it is: inference needs no batch statistics) and the noise on u's (the code is
    A h + s sigma eps). A starts as the identity and B at the constant log(`initial_sigma`).
    KL(q || N(0, I)) = sum_d (sigma_d^2 + m_d^2 - 1) / 2 - log sigma_d, m = (A h - c) / s: shrinking the
    means lowers it, and sigma may grow past the spread (unlike the "matched" form's sigmoid).
    """

    def __init__(self, initial_sigma: float = 0.1, **kwargs) -> None:
        super().__init__(**full_precision(kwargs))
        if not isinstance(initial_sigma, (int, float)) or not initial_sigma > 0:
            raise ValueError(f"initial_sigma must be > 0, got {initial_sigma!r}.")
        self.initial_sigma = float(initial_sigma)

    def build(self, input_shape: tuple) -> None:
        width = input_shape[-1]
        self.mu = Dense(width, kernel_initializer="identity", name="mu")
        self.log_sigma = Dense(width, kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant(math.log(self.initial_sigma)),
                               name="log_sigma")
        self.mu.build((None, width))
        self.log_sigma.build((None, width))

    def call(self, h: tf.Tensor) -> tf.Tensor:
        return self.mu(h)

    def encode(self, h: tf.Tensor, rows: tf.Tensor | None, noise_seed: tf.Tensor | None) -> Encoding:
        if not self.built:
            self.build(tuple(h.shape))
        with keras.name_scope(self.name, caller=self):
            center, spread = _standardised_rows(h, rows)
            mu = self.mu(h)
            sigma = tf.exp(tf.minimum(self.log_sigma((h - center) / spread), MAX_LOG_SIGMA)) + SIGMA_FLOOR
            codes = mu if noise_seed is None else mu + spread * sigma * reparameterization_noise(tf.shape(mu), noise_seed)
            means = (_rows(mu, rows) - center) / spread
            return Encoding(codes, (_rows(codes, rows) - center) / spread, _independent(means, _rows(sigma, rows)),
                            _independent(tf.zeros_like(means), 1.0))

    def get_config(self) -> dict:
        return {**super().get_config(), "initial_sigma": self.initial_sigma}


@keras.saving.register_keras_serializable(package="mrdib_tf")
class DVIBBottleneck(keras.layers.Layer):
    """DVIB's bottleneck: z = h + sigma(h) eps, one sigma per item in (0, 1), against N(0, 0.5^2).

    sigma(h) = sigmoid(MLP(h)), a ReLU MLP d -> 32 -> 32 -> 1 (DVIB's `NoiseLevelNetwork`), floored at
    1e-6 as DVIB clamps it. Everything is in h's own units: the KL pulls h towards 0 and sigma
    towards 0.5, and is averaged over dimensions as well as items, as DVIB's `.mean()` does.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**full_precision(kwargs))

    def build(self, input_shape: tuple) -> None:
        width = input_shape[-1]
        self.noise_network = [Dense(DVIB_HIDDEN_UNITS, activation="relu", name="hidden_1"),
                              Dense(DVIB_HIDDEN_UNITS, activation="relu", name="hidden_2"),
                              Dense(1, activation="sigmoid", name="noise_level")]
        shape = (None, width)
        for layer in self.noise_network:
            layer.build(shape)
            shape = (None, layer.units)

    def call(self, h: tf.Tensor) -> tf.Tensor:
        return tf.convert_to_tensor(h)

    def sigma(self, h: tf.Tensor) -> tf.Tensor:
        """[n, 1] each row's noise scale."""
        x = h
        for layer in self.noise_network:
            x = layer(x)
        return tf.maximum(x, 1e-6)

    def encode(self, h: tf.Tensor, rows: tf.Tensor | None, noise_seed: tf.Tensor | None) -> Encoding:
        if not self.built:
            self.build(tuple(h.shape))
        with keras.name_scope(self.name, caller=self):
            h = tf.convert_to_tensor(h)
            sigma = self.sigma(h)
            z = h if noise_seed is None else h + sigma * reparameterization_noise(tf.shape(h), noise_seed)
            center, spread = _standardised_rows(h, rows)
            h_rows = _rows(h, rows)
            return Encoding(z, (_rows(z, rows) - center) / spread, _independent(h_rows, _rows(sigma, rows)),
                            _independent(tf.zeros_like(h_rows), DVIB_PRIOR_SCALE), kl_over_dimensions="mean")


@keras.saving.register_keras_serializable(package="mrdib_tf")
class FixedNoise(keras.layers.Layer):
    """The noise control: z = h + `scale` s eps, s each dimension's batch spread of h (held constant); no KL."""

    def __init__(self, scale: float = 0.1, **kwargs) -> None:
        super().__init__(**full_precision(kwargs))
        if not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"the noise control's scale (initial_sigma) must be > 0, got {scale!r}.")
        self.scale = float(scale)

    def call(self, h: tf.Tensor) -> tf.Tensor:
        return tf.convert_to_tensor(h)

    def encode(self, h: tf.Tensor, rows: tf.Tensor | None, noise_seed: tf.Tensor | None) -> Encoding:
        h = tf.convert_to_tensor(h)
        center, spread = _standardised_rows(h, rows)
        z = h if noise_seed is None else h + self.scale * spread * reparameterization_noise(tf.shape(h), noise_seed)
        return Encoding(z, (_rows(z, rows) - center) / spread)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="mrdib_tf")
class FeatureDropout(keras.layers.Layer):
    """The dropout control: each entry of h zeroed with probability `rate`, the rest scaled by 1 / (1 - rate).

    The mask comes from the same counter-based normals as the bottleneck's noise (an entry is kept when
    its normal exceeds the normal quantile of `rate`), so a seed fixes it with and without XLA.
    """

    def __init__(self, rate: float = 0.1, **kwargs) -> None:
        super().__init__(**full_precision(kwargs))
        if not isinstance(rate, (int, float)) or not 0 < rate < 1:
            raise ValueError(f"dropout_rate must be in (0, 1), got {rate!r}.")
        self.rate = float(rate)

    def call(self, h: tf.Tensor) -> tf.Tensor:
        return tf.convert_to_tensor(h)

    def encode(self, h: tf.Tensor, rows: tf.Tensor | None, noise_seed: tf.Tensor | None) -> Encoding:
        h = tf.convert_to_tensor(h)
        z = h
        if noise_seed is not None:
            threshold = tfd.Normal(0.0, 1.0).quantile(self.rate)
            keep = reparameterization_noise(tf.shape(h), noise_seed) > threshold
            z = tf.where(keep, h / (1.0 - self.rate), tf.zeros_like(h))
        center, spread = _standardised_rows(h, rows)
        return Encoding(z, (_rows(z, rows) - center) / spread)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}


def make_bottleneck(form: str, *, stochastic: bool, initial_sigma: float, prior_scale: str, encoder: str,
                    dropout_rate: float, name: str) -> keras.layers.Layer:
    """The layer of one modality for `form` (see the module's docstring)."""
    if form == "matched":
        return ModalityBottleneck(stochastic, initial_sigma, prior_scale, encoder, name=name)
    if form == "paper":
        return PaperBottleneck(initial_sigma, name=name)
    if form == "dvib":
        return DVIBBottleneck(name=name)
    if form == "noise":
        return FixedNoise(initial_sigma, name=name)
    if form == "dropout":
        return FeatureDropout(dropout_rate, name=name)
    raise ValueError(f"bottleneck must be one of {FORMS}, got {form!r}.")
