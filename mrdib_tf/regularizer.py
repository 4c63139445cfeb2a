"""MRdIBRegularizer: MRdIB (arXiv 2509.20225) as a training-time Keras layer around any multimodal backbone.

The layer replaces each modality representation h_m by a code z_m from a variational bottleneck and
returns the auxiliary losses that split what the codes keep into unique, redundant and synergistic
information. It knows nothing of any backbone: it sees per-modality item representations, the batch's
user embeddings and the batch's (positive, negative) item ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from mrdib_tf.losses import bpr_loss
from mrdib_tf.mine import Critic, mine_lower_bound, reverse_gradient
from mrdib_tf.sampling import standard_normal

tfd = tfp.distributions

# sigma = softplus(dense(h) - SIGMA_OFFSET) + SIGMA_FLOOR: with the dense zero-initialised, every code
# starts with scale softplus(-5) + 1e-4 ~= 0.007, so training starts close to the bare backbone, and
# the floor keeps sigma (and log sigma in the KL) finite however far the dense is pushed down.
SIGMA_OFFSET = 5.0
SIGMA_FLOOR = 1e-4


@dataclass(frozen=True)
class Bottleneck:
    """What `MRdIBRegularizer.encode` produced for one set of representations.

    Attributes:
        posteriors: modality -> q_m(z | h_m) over all rows given to `encode`: a diagonal Normal with
            event shape [d_m] (a point mass at mu_m when `alpha_kl` is 0).
        codes: modality -> z_m [n, d_m]: a reparameterized sample in training, mu_m at inference.
        seed: the step's stateless seed ([2] int32) that the sampling used and the MINE shifts derive
            from; None at inference, where nothing is drawn.
    """

    posteriors: dict[str, tfd.Distribution]
    codes: dict[str, tf.Tensor]
    seed: tf.Tensor | None = None


class _PreferenceHead(keras.layers.Layer):
    """g(z) = z K + c in user space, scored against the user as <u, g(z)> (MRdIB's decoders and fusion head).

    Called on a BPR triple at once: <u, z K + c> = <u K^T, z> + <u, c>, so u K^T is computed once for the
    positive and the negative codes, one matmul where scoring each side separately takes two.
    """

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed

    def build(self, users_shape: tuple, pos_codes_shape: tuple, neg_codes_shape: tuple) -> None:
        self.kernel = self.add_weight(
            shape=(pos_codes_shape[-1], users_shape[-1]),
            initializer=keras.initializers.GlorotUniform(self.seed),
            name="kernel",
        )
        self.bias = self.add_weight(shape=(users_shape[-1],), initializer="zeros", name="bias")

    def call(self, users: tf.Tensor, pos_codes: tf.Tensor, neg_codes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(<u_i, g(pos_i)>, <u_i, g(neg_i)>) for every row i."""
        users_in_code_space = tf.matmul(users, self.kernel, transpose_b=True)
        user_bias = tf.reduce_sum(users * self.bias, axis=-1)
        return (
            tf.reduce_sum(users_in_code_space * pos_codes, axis=-1) + user_bias,
            tf.reduce_sum(users_in_code_space * neg_codes, axis=-1) + user_bias,
        )


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


def _fold_seed(seed: tf.Tensor, index: int) -> tf.Tensor:
    """The index-th branch's seed within a step: `seed` shifted by `index` in its first component.

    `SeedGenerator` advances the second component by one per step, so no two (step, branch) pairs share
    a seed. An addition rather than `stateless_fold_in`: a hashed seed is a scalar computation that XLA
    may fuse into, and repeat for, every element of the random tensor it seeds.
    """
    return seed + tf.constant([index, 0], dtype=seed.dtype)


def _standard_normal_like(posterior: tfd.Distribution) -> tfd.Distribution:
    loc = posterior.distribution.loc
    return tfd.Independent(tfd.Normal(tf.zeros_like(loc), tf.ones_like(loc)), reinterpreted_batch_ndims=1)


class MRdIBRegularizer(keras.layers.Layer):
    """MRdIB: a variational bottleneck per modality plus unique / redundancy / synergy objectives.

    Per modality m, q_m(z | h_m) = Normal(mu_m(h_m), diag sigma_m(h_m)^2) with mu_m = Dense(d_m)
    (initialised to the identity, so posterior means start equal to h_m) and sigma_m = softplus(Dense(d_m)(h_m) - 5)
    + 1e-4 (zero-initialised, so every scale starts at ~0.007). The backbone consumes z_m where it consumed
    h_m; `auxiliary_losses` returns the rest of the objective.

    The training codes are the reparameterized sample mu_m + sigma_m * eps (what `tfd.Normal.sample`
    computes), with eps from `mrdib_tf.sampling.standard_normal`: one number per encoded row and code
    dimension, which TFP's Philox-based sampler draws about eighty times slower under XLA on CPU
    (`benchmarks/noise_sampling.py`). The posteriors stay TFP distributions and the KL is TFP's.

    alpha_kl = 0 means a deterministic encoder, z_m = mu_m(h_m) in training too (the posterior is a point
    mass): the sigma heads and the sampling exist only to give the KL rate term something to compress, and
    without that term nothing but noise would be gained (the task loss alone drives sigma to its floor).
    It also makes all-zero alphas reproduce the bare backbone exactly at initialisation: codes == h_m and
    "total" == 0, with no dependence on seeds.

    Sign convention of the redundancy term: "total" contains -alpha_mi * I_hat, where I_hat is computed
    from `reverse_gradient`-wrapped codes. Descending "total" therefore makes the critics ascend I_hat
    (tightening the bound) while the encoders receive +alpha_mi * dI_hat/dz and descend it: one loss, one
    optimizer step. The value of "total" is thus not the paper's L (which has +alpha_mi * I_hat); its
    gradients are. With Adam the critics' alpha_mi-scaled gradients still move at the full learning rate.

    Seeds: `seed` fixes the weight initialisers of the critics and heads and the stream of per-step
    randomness (reparameterization noise, MINE's marginal shifts). A training `encode` advances
    `self.seed_generator`, a stateless counter that compiled steps advance, once; every modality's noise
    and every pair's shift get their own seed folded from that one. None draws it from Keras' global
    seed. The noise is the same with and without XLA (up to float32 rounding of the normal quantile);
    MINE's shifts come from TensorFlow's Philox, which XLA and eager implement differently.

    Variables: `encode` creates mu_m and sigma_m; the critics and heads (which need the user width) are
    created by the first `auxiliary_losses`. Run one step eagerly before building an optimizer over
    `trainable_variables`; a compiled first step also creates them correctly.

    Args:
        modalities: two or more modality names, as keys of the representations given to `encode`.
        alpha_kl: weight of L_KL, the mean over the encoded rows of sum_m KL(q_m || N(0, I)): every
            item for a graph backbone, the batch's positive and negative items for a row-wise one.
        alpha_mi: weight of the MINE estimate of sum over modality pairs of I(z_a; z_b).
        alpha_unique: weight of L_U, sum_m BPR of a per-modality decoder g_m(z_m) against the user.
        fusion_head: add a separate synergy head g_f(concat_m z_m) scored with BPR (weight 1). Leave off
            when the backbone predicts from all z_m jointly: its own loss is then the synergy term.
        critic_units: width of the MINE critics' two hidden layers.
        seed: see "Seeds" above.

    Any alpha may be 0 (the paper's ablations): that branch then creates no variables, builds no ops and
    leaves its key out of `auxiliary_losses`.

    Example:
        >>> reg = MRdIBRegularizer(["image", "text"], seed=0)
        >>> h = {"image": tf.random.normal([100, 8]), "text": tf.random.normal([100, 8])}
        >>> bottleneck = reg.encode(h, training=True)
        >>> losses = reg.auxiliary_losses(bottleneck, tf.random.normal([4, 16]), [0, 1, 2, 3], [4, 5, 6, 7])
        >>> sorted(losses)
        ['kl', 'mi_estimate', 'total', 'unique']
    """

    def __init__(
        self,
        modalities: Sequence[str],
        alpha_kl: float = 0.005,
        alpha_mi: float = 0.05,
        alpha_unique: float = 0.005,
        fusion_head: bool = False,
        critic_units: int = 64,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.modalities = _check_modalities(modalities)
        self.alpha_kl = _check_weight("alpha_kl", alpha_kl)
        self.alpha_mi = _check_weight("alpha_mi", alpha_mi)
        self.alpha_unique = _check_weight("alpha_unique", alpha_unique)
        if not isinstance(fusion_head, bool):
            raise ValueError(f"MRdIBRegularizer: fusion_head must be True or False, got {fusion_head!r}.")
        if not isinstance(critic_units, int) or critic_units < 1:
            raise ValueError(f"MRdIBRegularizer: critic_units must be a positive integer, got {critic_units!r}.")
        self.fusion_head = fusion_head
        self.critic_units = critic_units
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

        self.pairs = tuple(combinations(self.modalities, 2)) if self.alpha_mi > 0 else ()
        self.critics = [
            Critic(critic_units, seed=self._head_seed(k), name=f"critic_{a}_{b}")
            for k, (a, b) in enumerate(self.pairs)
        ]
        self.decoders = (
            {
                m: _PreferenceHead(seed=self._head_seed(len(self.pairs) + k), name=f"decoder_{m}")
                for k, m in enumerate(self.modalities)
            }
            if self.alpha_unique > 0
            else {}
        )
        self.fusion = (
            _PreferenceHead(seed=self._head_seed(len(self.pairs) + len(self.modalities)), name="fusion_head")
            if fusion_head
            else None
        )

    def _head_seed(self, index: int) -> int | None:
        """Initialiser seed of the index-th head: its own block of 100 (a Critic uses seed .. seed + 2)."""
        return None if self.seed is None else self.seed + 100 * (index + 1)

    @property
    def stochastic(self) -> bool:
        """Whether training codes are sampled (alpha_kl > 0) or the posterior means."""
        return self.alpha_kl > 0

    def build(self, input_shape: Mapping[str, tuple]) -> None:
        """Creates mu_m (and sigma_m when stochastic) as Dense(d_m) from each representation's width."""
        self._check_keys(input_shape)
        self.mu, self.sigma = {}, {}
        for m in self.modalities:
            width = input_shape[m][-1]
            if len(input_shape[m]) != 2 or width is None:
                raise ValueError(
                    f"MRdIBRegularizer: representation '{m}' must be [n_items, d] with a known d, "
                    f"got shape {tuple(input_shape[m])}."
                )
            self.mu[m] = keras.layers.Dense(width, kernel_initializer="identity", name=f"mu_{m}")
            self.mu[m].build((None, width))
            if self.stochastic:
                self.sigma[m] = keras.layers.Dense(width, kernel_initializer="zeros", name=f"sigma_{m}")
                self.sigma[m].build((None, width))

    def _check_keys(self, representations: Mapping) -> None:
        missing = [m for m in self.modalities if m not in representations]
        extra = [m for m in representations if m not in self.modalities]
        if missing or extra:
            raise ValueError(
                f"MRdIBRegularizer: representations must have exactly the modalities {self.modalities}; "
                f"missing {missing}, unexpected {extra}."
            )

    def _next_seed(self) -> tf.Tensor:
        """A fresh stateless int32 seed of shape [2] from `seed_generator`."""
        return tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max), tf.int32)

    def encode(self, representations: Mapping[str, tf.Tensor], training: bool) -> Bottleneck:
        """q_m(z | h_m) for every row of every modality, and the codes the backbone should consume.

        Args:
            representations: modality -> h_m [n_items, d_m].
            training: a Python bool; True samples z_m (when stochastic), False returns mu_m.
        """
        self._check_keys(representations)
        if not self.built:
            self.build({m: tuple(representations[m].shape) for m in self.modalities})
        seed = self._next_seed() if training and (self.stochastic or self.pairs) else None
        posteriors, codes = {}, {}
        for index, m in enumerate(self.modalities):
            h = representations[m]
            mu = self.mu[m](h)
            if self.stochastic:
                sigma = tf.math.softplus(self.sigma[m](h) - SIGMA_OFFSET) + SIGMA_FLOOR
                posteriors[m] = tfd.Independent(tfd.Normal(mu, sigma), reinterpreted_batch_ndims=1)
                codes[m] = mu + sigma * standard_normal(tf.shape(mu), _fold_seed(seed, index)) if training else mu
            else:
                posteriors[m] = tfd.VectorDeterministic(mu)
                codes[m] = mu
        return Bottleneck(posteriors=posteriors, codes=codes, seed=seed)

    def call(self, representations: Mapping[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """The codes only: posterior means at inference, which is all an exported model keeps."""
        return self.encode(representations, training=training).codes

    def auxiliary_losses(
        self,
        bottleneck: Bottleneck,
        user_embeddings: tf.Tensor,
        pos_items: tf.Tensor,
        neg_items: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        """The raw enabled terms ("kl", "mi_estimate", "unique", "synergy") and their weighted "total".

        Args:
            bottleneck: what `encode` returned for this step.
            user_embeddings: [b, du] the batch's users, in the space the backbone scores in.
            pos_items, neg_items: [b] rows of the encoded representations (item ids when every item
                was encoded) of the BPR triples.

        "total" = alpha_kl * kl - alpha_mi * mi_estimate (gradient-reversed, see the class docstring)
        + alpha_unique * unique + synergy; exactly 0.0 when nothing is enabled.
        """
        with keras.name_scope(self.name, caller=self):  # heads built here get paths under this layer's
            return self._auxiliary_losses(bottleneck, user_embeddings, pos_items, neg_items)

    def _auxiliary_losses(
        self, bottleneck: Bottleneck, user_embeddings: tf.Tensor, pos_items: tf.Tensor, neg_items: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        losses: dict[str, tf.Tensor] = {}
        terms: list[tf.Tensor] = []
        if self.stochastic:
            losses["kl"] = tf.add_n([
                tf.reduce_mean(tfd.kl_divergence(q, _standard_normal_like(q)))
                for q in bottleneck.posteriors.values()
            ])
            terms.append(self.alpha_kl * losses["kl"])
        if self.pairs or self.decoders or self.fusion is not None:
            pos_codes = {m: tf.gather(bottleneck.codes[m], pos_items) for m in self.modalities}
        if self.pairs:
            # an inference-time bottleneck drew no seed; the shifts then take a fresh one
            seed = bottleneck.seed if bottleneck.seed is not None else self._next_seed()
            reversed_codes = {m: reverse_gradient(z) for m, z in pos_codes.items()}
            losses["mi_estimate"] = tf.add_n([
                mine_lower_bound(
                    critic, reversed_codes[a], reversed_codes[b], _fold_seed(seed, len(self.modalities) + k)
                )
                for k, (critic, (a, b)) in enumerate(zip(self.critics, self.pairs))
            ])
            terms.append(-self.alpha_mi * losses["mi_estimate"])
        if self.decoders or self.fusion is not None:
            neg_codes = {m: tf.gather(bottleneck.codes[m], neg_items) for m in self.modalities}
        if self.decoders:
            losses["unique"] = tf.add_n([
                bpr_loss(*head(user_embeddings, pos_codes[m], neg_codes[m])) for m, head in self.decoders.items()
            ])
            terms.append(self.alpha_unique * losses["unique"])
        if self.fusion is not None:
            fused_pos = tf.concat([pos_codes[m] for m in self.modalities], axis=-1)
            fused_neg = tf.concat([neg_codes[m] for m in self.modalities], axis=-1)
            losses["synergy"] = bpr_loss(*self.fusion(user_embeddings, fused_pos, fused_neg))
            terms.append(losses["synergy"])
        losses["total"] = tf.add_n(terms) if terms else tf.zeros([], dtype=user_embeddings.dtype)
        return losses

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "modalities": list(self.modalities),
            "alpha_kl": self.alpha_kl,
            "alpha_mi": self.alpha_mi,
            "alpha_unique": self.alpha_unique,
            "fusion_head": self.fusion_head,
            "critic_units": self.critic_units,
            "seed": self.seed,
        }
