"""MRdIBRegularizer: MRdIB (arXiv 2509.20225) as a training-time Keras layer around any multimodal backbone.

The layer encodes each modality representation h_m with a variational bottleneck q_m(z | h_m) and
returns the auxiliary losses that split what the codes keep into unique, redundant and synergistic
information. It knows nothing of any backbone: it sees per-modality item representations, the batch's
user ids, and which rows are the batch's positive and negative items.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from mrdib_tf.losses import bpr_loss
from mrdib_tf.mine import Critic, mutual_information
from mrdib_tf.sampling import derived_seed, standard_normal

tfd = tfp.distributions

#: sigma (in units of the code's own spread, see `MRdIBRegularizer`) never drops below this, so
#: log sigma in the KL stays finite however far the sigma head is pushed.
SIGMA_FLOOR = 1e-4
#: Keeps the per-dimension spread positive on a constant (dead) code dimension.
SPREAD_EPSILON = 1e-12
# Purposes mixed into derived seeds, so no two branches (or runs) share a random stream.
_NOISE, _CRITIC_INIT, _HEAD_INIT = range(3)
#: Whose per-dimension spread the prior is matched to (see `MRdIBRegularizer`).
PRIOR_SCALES = ("codes", "inputs")
#: Width of the fusion head's hidden layer and output.
FUSION_UNITS = 64


@dataclass(frozen=True)
class Bottleneck:
    """What `MRdIBRegularizer.encode` produced for one step.

    Attributes:
        codes: modality -> what the backbone consumes, one row per given representation row: the
            sampled z_m in training (mu_m at inference) when the codes are on the main path, else h_m
            itself.
        posteriors: modality -> q_m(z | h_m) on the batch's positive then negative rows (a diagonal
            Normal, event shape [d_m]); empty when `alpha_kl` is 0.
        priors: modality -> the matched prior N(c_m, s_m^2) the KL is taken against, same shapes.
        positives, negatives: modality -> the codes of the batch's positive / negative items, standardised
            by (c_m, s_m): what the decoders, the critic and the fusion head read.
    """

    codes: dict[str, tf.Tensor]
    posteriors: dict[str, tfd.Distribution]
    priors: dict[str, tfd.Distribution]
    positives: dict[str, tf.Tensor]
    negatives: dict[str, tf.Tensor]


class _Decoder(keras.layers.Layer):
    """Ranks items for a user from codes alone: <p_u, g(z_i)>, against a user table p of its own.

    MRdIB's unique decoders (g = identity on one modality's code) and its fusion head (g a one-hidden-layer
    ELU MLP on the concatenated codes, so it can use what only the modalities together tell). The user
    side is trained only by this head's loss: it carries no other head's or modality's information and
    sends no gradient into the backbone. Scored on a BPR triple at once; no item bias (it would cancel).

    Args:
        n_users: rows of the user table.
        hidden_units: width of g's hidden layer and output; None for g = identity.
        seed: initialiser seed (seed .. seed + 2).
    """

    def __init__(self, n_users: int, hidden_units: int | None = None, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_users = n_users
        self.hidden_units = hidden_units
        self.seed = seed
        self.transform = (
            [
                keras.layers.Dense(hidden_units, "elu", kernel_initializer=self._initializer(1), name="hidden"),
                keras.layers.Dense(hidden_units, kernel_initializer=self._initializer(2), name="output"),
            ]
            if hidden_units
            else []
        )

    def _initializer(self, index: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(None if self.seed is None else self.seed + index)

    def build(self, codes_shape: tuple) -> None:
        width = codes_shape[-1]
        for layer in self.transform:
            layer.build((None, width))
            width = layer.units
        self.users = self.add_weight(shape=(self.n_users, width), initializer=self._initializer(0), name="users")

    def call(self, users: tf.Tensor, pos_codes: tf.Tensor, neg_codes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(<p_u, g(pos)>, <p_u, g(neg)>) for every row of the triple."""
        preferences = tf.gather(self.users, users)
        scores = []
        for codes in (pos_codes, neg_codes):
            for layer in self.transform:
                codes = layer(codes)
            scores.append(tf.reduce_sum(preferences * codes, axis=-1))
        return scores[0], scores[1]


def _check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    if isinstance(modalities, str) or not all(isinstance(m, str) for m in modalities):
        raise ValueError(f"MRdIBRegularizer: modalities must be a sequence of names, got {modalities!r}.")
    names = tuple(modalities)
    if len(names) < 2:
        raise ValueError(
            f"MRdIBRegularizer: MRdIB needs at least two modalities to disentangle, got {len(names)}: "
            f"{names}. Train the backbone without the regularizer instead."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"MRdIBRegularizer: modality names must be unique, got {names}.")
    bad = [m for m in names if not m or "/" in m]
    if bad:
        raise ValueError(f"MRdIBRegularizer: modality names must be non-empty and contain no '/', got {bad}.")
    return names


def _check_weight(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"MRdIBRegularizer: {name} must be a finite number >= 0 (0 disables it), got {value!r}.")
    return float(value)


def _spread(rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-dimension mean and standard deviation of `rows` over its rows."""
    mean, variance = tf.nn.moments(rows, axes=[0])
    return mean, tf.sqrt(variance + SPREAD_EPSILON)


@keras.saving.register_keras_serializable(package="mrdib_tf")
class MRdIBRegularizer(keras.layers.Layer):
    """MRdIB: a variational bottleneck per modality plus unique / redundancy / synergy objectives.

    Bottleneck. Per modality m, mu_m = Dense(d_m)(h_m) (initialised to the identity) and
    q_m(z | h_m) = Normal(mu_m, (s_m sigma_m)^2), diagonal, where (c_m, s_m) are a per-dimension mean
    and spread over the batch's item rows (see `prior_scale`) and
    sigma_m = sigmoid(Dense(d_m)((mu_m - c_m) / s_m) + b) in (0, 1), starting at `initial_sigma`
    everywhere. The KL is taken against the matched prior N(c_m, s_m^2): KL(q || p) per dimension is
    then -log sigma + (sigma^2 + ((mu - c) / s)^2) / 2 - 1/2 whatever the scale of h_m, so one alpha1
    means the same for VBPR's projections (entries near 1) and MGCN's propagated views (near 0.003).
    L_KL is the KL of the d_m-dimensional posterior (summed over dimensions, nats per item) averaged
    over the batch's positive and negative item rows, summed over modalities, for every backbone alike.

    `prior_scale` says whose spread (c_m, s_m) are: "codes" (mu_m's own over the batch rows, with their
    gradient), so that the mean of the ((mu - c) / s)^2 term is exactly 1 and the KL prices only the
    noise, a signal-to-noise ratio (the rate of a Gaussian channel); or "inputs" (h_m's, held constant),
    the variational bottleneck of Alemi et al. on standardised inputs, where the encoder may also
    shrink its means against the input's spread to lower the KL.

    Where z goes. With `codes_on_main_path` (the paper's MIB: the prediction term reads z), the
    backbone consumes the sampled z_m in training and mu_m at inference. Without it the backbone keeps
    the clean h_m on its main path and z_m feeds only the auxiliary terms below; the export is then the
    bare backbone's.

    Unique (alpha_unique): per modality a decoder ranks the batch's items for its user from z_m alone
    against its own user table (BPR), so each code must keep what its modality alone knows of y.
    Redundancy (alpha_mi): a critic per modality pair estimates I(z_a; z_b) on the batch's positive
    items (`mrdib_tf.mine`); the critic ascends the estimate with its own optimizer (see
    `critic_variables`) while the encoders descend alpha_mi times it through the total loss.
    Synergy: the backbone's own loss when it predicts from all z_m jointly, or with `fusion_head` a
    separate head g_f(concat_m z_m) (an MLP) scored against its own user table with BPR (weight 1).
    The heads read codes standardised by (c_m, s_m), so their losses do not depend on the scale of h_m.

    Noise: the reparameterized sample mu + s sigma eps draws eps with `mrdib_tf.sampling.standard_normal`
    (counter-based, fast under XLA on CPU); every modality has its own stream, derived from (`seed`,
    modality) and a step counter, so no two modalities or seeds share noise. The
    posteriors and priors are TFP distributions and the KL is TFP's.

    alpha_kl = 0 makes the encoder deterministic (z_m = mu_m: no sigma head, no noise). All alphas 0
    reproduces the bare backbone exactly at initialisation.

    Args:
        modalities: two or more modality names, as keys of the representations given to `encode`.
        n_users: number of users (ids 0..n_users-1): the size of the decoders' user tables.
        alpha_kl: weight of L_KL (the paper's alpha1).
        alpha_mi: weight of the estimate of sum over modality pairs of I(z_a; z_b) (alpha2).
        alpha_unique: weight of L_U = sum_m BPR of decoder m (alpha3).
        codes_on_main_path: whether the backbone consumes z_m (True) or keeps h_m (False).
        initial_sigma: sigma_m at initialisation, in units of the code's spread, in (0, 1).
        prior_scale: "codes" or "inputs": whose per-dimension spread the prior and sigma are measured in.
        fusion_head: add a separate synergy head; leave off when the backbone predicts from all z_m
            jointly (its own loss is then the synergy term).
        critic_units: width of the critics' hidden layers.
        seed: fixes the heads' initial weights and every random stream; None draws one from Python's
            `random` (seeded by `keras.utils.set_random_seed`).

    Any alpha may be 0 (the paper's ablations): that branch then creates no variables and builds no ops.

    Example:
        >>> reg = MRdIBRegularizer(["image", "text"], n_users=4, seed=0)
        >>> h = {"image": tf.random.normal([100, 8]), "text": tf.random.normal([100, 8])}
        >>> bottleneck = reg.encode(h, training=True, pos_rows=[0, 1, 2, 3], neg_rows=[4, 5, 6, 7])
        >>> losses = reg.auxiliary_losses(bottleneck, users=[0, 1, 2, 3])
        >>> sorted(losses)
        ['kl', 'mi_estimate', 'total', 'unique']
    """

    def __init__(
        self,
        modalities: Sequence[str],
        n_users: int,
        alpha_kl: float = 0.005,
        alpha_mi: float = 0.05,
        alpha_unique: float = 0.005,
        codes_on_main_path: bool = True,
        initial_sigma: float = 0.1,
        prior_scale: str = "codes",
        fusion_head: bool = False,
        critic_units: int = 64,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.modalities = _check_modalities(modalities)
        if not isinstance(n_users, int) or n_users < 1:
            raise ValueError(f"MRdIBRegularizer: n_users must be a positive integer, got {n_users!r}.")
        self.n_users = n_users
        self.alpha_kl = _check_weight("alpha_kl", alpha_kl)
        self.alpha_mi = _check_weight("alpha_mi", alpha_mi)
        self.alpha_unique = _check_weight("alpha_unique", alpha_unique)
        for name, flag in (("codes_on_main_path", codes_on_main_path), ("fusion_head", fusion_head)):
            if not isinstance(flag, bool):
                raise ValueError(f"MRdIBRegularizer: {name} must be True or False, got {flag!r}.")
        if not isinstance(initial_sigma, (int, float)) or not 0 < initial_sigma < 1:
            raise ValueError(f"MRdIBRegularizer: initial_sigma must be in (0, 1), got {initial_sigma!r}.")
        if prior_scale not in PRIOR_SCALES:
            raise ValueError(f"MRdIBRegularizer: prior_scale must be one of {PRIOR_SCALES}, got {prior_scale!r}.")
        if not isinstance(critic_units, int) or critic_units < 1:
            raise ValueError(f"MRdIBRegularizer: critic_units must be a positive integer, got {critic_units!r}.")
        self.codes_on_main_path = codes_on_main_path
        self.initial_sigma = float(initial_sigma)
        self.prior_scale = prior_scale
        self.fusion_head = fusion_head
        self.critic_units = critic_units
        self.seed = seed
        self._stream_seed = seed if seed is not None else random.randrange(2**31)
        self.step_counter = keras.random.SeedGenerator(0)  # only its step component is used

        self.pairs = tuple(combinations(self.modalities, 2)) if self.alpha_mi > 0 else ()
        self.critics = [
            Critic(critic_units, seed=self._derived(_CRITIC_INIT, k), name=f"critic_{a}_{b}")
            for k, (a, b) in enumerate(self.pairs)
        ]
        self.decoders = (
            {
                m: _Decoder(n_users, seed=self._derived(_HEAD_INIT, k), name=f"decoder_{m}")
                for k, m in enumerate(self.modalities)
            }
            if self.alpha_unique > 0
            else {}
        )
        self.fusion = (
            _Decoder(n_users, FUSION_UNITS, seed=self._derived(_HEAD_INIT, len(self.modalities)), name="fusion_head")
            if fusion_head
            else None
        )

    def _derived(self, purpose: int, index: int) -> int:
        """An int31 seed for one branch, hashed from (run seed, purpose, index): no overlap across seeds."""
        return derived_seed(self._stream_seed, purpose, index)

    @property
    def stochastic(self) -> bool:
        """Whether training codes are sampled (alpha_kl > 0) or the posterior means."""
        return self.alpha_kl > 0

    @property
    def critic_variables(self) -> list[keras.Variable]:
        """The critics' variables: a training step ascends "mi_estimate" in these with their own optimizer
        and leaves them out of the step that descends the total loss."""
        return [v for critic in self.critics for v in critic.trainable_variables]

    def build(self, input_shape: Mapping[str, tuple]) -> None:
        """Creates every variable: encoders from each representation's width, then the heads."""
        self._check_keys(input_shape)
        self.mu, self.sigma = {}, {}
        widths = {}
        for m in self.modalities:
            width = input_shape[m][-1]
            if len(input_shape[m]) != 2 or width is None:
                raise ValueError(
                    f"MRdIBRegularizer: representation '{m}' must be [n_items, d] with a known d, "
                    f"got shape {tuple(input_shape[m])}."
                )
            widths[m] = width
            self.mu[m] = keras.layers.Dense(width, kernel_initializer="identity", name=f"mu_{m}")
            self.mu[m].build((None, width))
            if self.stochastic:
                self.sigma[m] = keras.layers.Dense(
                    width, kernel_initializer="zeros",
                    bias_initializer=keras.initializers.Constant(_logit(self.initial_sigma)), name=f"sigma_{m}",
                )
                self.sigma[m].build((None, width))
        for critic, (a, b) in zip(self.critics, self.pairs):
            critic.build((None, widths[a]), (None, widths[b]))
        for m, decoder in self.decoders.items():
            decoder.build((None, widths[m]))
        if self.fusion is not None:
            self.fusion.build((None, sum(widths.values())))

    def _check_keys(self, representations: Mapping) -> None:
        missing = [m for m in self.modalities if m not in representations]
        extra = [m for m in representations if m not in self.modalities]
        if missing or extra:
            raise ValueError(
                f"MRdIBRegularizer: representations must have exactly the modalities {self.modalities}; "
                f"missing {missing}, unexpected {extra}."
            )

    def _stream(self, purpose: int, index: int, step: tf.Tensor) -> tf.Tensor:
        """The stateless int32 [2] seed of one branch at one step."""
        return tf.stack([tf.constant(self._derived(purpose, index), tf.int32), step])

    def encode(
        self,
        representations: Mapping[str, tf.Tensor],
        training: bool,
        pos_rows: tf.Tensor,
        neg_rows: tf.Tensor,
    ) -> Bottleneck:
        """The codes the backbone should consume, and what the auxiliary terms need for one batch.

        Args:
            representations: modality -> h_m [n, d_m]: every item, or (for a backbone that computes
                only the batch's rows) just those.
            training: a Python bool; True samples z_m (when stochastic), False uses mu_m.
            pos_rows, neg_rows: [b] rows of `representations` holding the batch's positive and
                negative items.
        """
        self._check_keys(representations)
        if not self.built:
            self.build({m: tuple(representations[m].shape) for m in self.modalities})
        original = {m: tf.convert_to_tensor(representations[m]) for m in self.modalities}
        rows = tf.concat([pos_rows, neg_rows], axis=0)
        batch_size = tf.shape(pos_rows)[0]
        step = self._next_step() if training and self.stochastic else None
        codes, posteriors, priors, positives, negatives = {}, {}, {}, {}, {}
        # On the main path every row is encoded (the backbone may mix items); off it, the batch's only.
        if self.codes_on_main_path:
            batch_rows = lambda x: tf.gather(x, rows)  # noqa: E731
        else:
            representations = {m: tf.gather(representations[m], rows) for m in self.modalities}
            batch_rows = tf.identity
        for index, m in enumerate(self.modalities):
            h = tf.convert_to_tensor(representations[m])
            mu = self.mu[m](h)
            # Matched to the codes, the statistics keep their gradient: the batch-standardised means then
            # have mean square exactly 1 whatever mu does, so the KL's gradient reaches sigma only. Matched
            # to the inputs, they are constants the encoder's means are measured against.
            center, spread = _spread(batch_rows(mu) if self.prior_scale == "codes" else tf.stop_gradient(batch_rows(h)))
            z = mu
            if self.stochastic:
                sigma = SIGMA_FLOOR + (1.0 - SIGMA_FLOOR) * tf.sigmoid(self.sigma[m]((mu - center) / spread))
                scale = spread * sigma
                mu_rows = batch_rows(mu)
                posteriors[m] = tfd.Independent(tfd.Normal(mu_rows, batch_rows(scale)), reinterpreted_batch_ndims=1)
                priors[m] = tfd.Independent(
                    tfd.Normal(center + tf.zeros_like(mu_rows), spread + tf.zeros_like(mu_rows)),
                    reinterpreted_batch_ndims=1,
                )
                if training:
                    z = mu + scale * standard_normal(tf.shape(mu), self._stream(_NOISE, index, step))
            standardized = (batch_rows(z) - center) / spread
            positives[m], negatives[m] = standardized[:batch_size], standardized[batch_size:]
            codes[m] = z if self.codes_on_main_path else original[m]
        return Bottleneck(codes, posteriors, priors, positives, negatives)

    def _next_step(self) -> tf.Tensor:
        """This training step's counter: the step component of `step_counter`, advanced by one."""
        return tf.cast(tf.math.floormod(self.step_counter.next()[1], tf.int32.max), tf.int32)

    def call(self, representations: Mapping[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """The inference path: posterior means on the main path (or h_m unchanged), all an export keeps."""
        self._check_keys(representations)
        if not self.built:
            self.build({m: tuple(representations[m].shape) for m in self.modalities})
        if not self.codes_on_main_path:
            return {m: tf.convert_to_tensor(representations[m]) for m in self.modalities}
        return {m: self.mu[m](representations[m]) for m in self.modalities}

    def auxiliary_losses(
        self, bottleneck: Bottleneck, users: tf.Tensor, pos_items: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        """The raw enabled terms ("kl", "mi_estimate", "unique", "synergy") and their weighted "total".

        Args:
            bottleneck: what `encode` returned for this step.
            users: [b] the batch's user ids (the heads' own user tables are indexed by them).
            pos_items: [b] the batch's positive item ids, so that the critic never takes a repeat of an
                item for a draw from the product of the marginals; None when the rows never repeat.

        "total" = alpha_kl * kl + alpha_mi * mi_estimate + alpha_unique * unique + synergy: the paper's
        L without the backbone's own loss; exactly 0.0 when nothing is enabled. The critics' variables
        take the opposite direction on "mi_estimate" (see `critic_variables`).
        """
        with keras.name_scope(self.name, caller=self):
            losses: dict[str, tf.Tensor] = {}
            if self.stochastic:
                losses["kl"] = tf.add_n([
                    tf.reduce_mean(tfd.kl_divergence(q, bottleneck.priors[m])) for m, q in bottleneck.posteriors.items()
                ])
            if self.pairs:
                losses["mi_estimate"] = tf.add_n([
                    mutual_information(critic, bottleneck.positives[a], bottleneck.positives[b], pos_items)
                    for critic, (a, b) in zip(self.critics, self.pairs)
                ])
            if self.decoders:
                losses["unique"] = tf.add_n([
                    bpr_loss(*decoder(users, bottleneck.positives[m], bottleneck.negatives[m]))
                    for m, decoder in self.decoders.items()
                ])
            if self.fusion is not None:
                fused_pos = tf.concat([bottleneck.positives[m] for m in self.modalities], axis=-1)
                fused_neg = tf.concat([bottleneck.negatives[m] for m in self.modalities], axis=-1)
                losses["synergy"] = bpr_loss(*self.fusion(users, fused_pos, fused_neg))
            weights = {"kl": self.alpha_kl, "mi_estimate": self.alpha_mi, "unique": self.alpha_unique,
                       "synergy": 1.0}
            terms = [weights[name] * value for name, value in losses.items()]
            losses["total"] = tf.add_n(terms) if terms else tf.zeros([], dtype=self.compute_dtype)
            return losses

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "modalities": list(self.modalities),
            "n_users": self.n_users,
            "alpha_kl": self.alpha_kl,
            "alpha_mi": self.alpha_mi,
            "alpha_unique": self.alpha_unique,
            "codes_on_main_path": self.codes_on_main_path,
            "initial_sigma": self.initial_sigma,
            "prior_scale": self.prior_scale,
            "fusion_head": self.fusion_head,
            "critic_units": self.critic_units,
            "seed": self.seed,
        }


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))
