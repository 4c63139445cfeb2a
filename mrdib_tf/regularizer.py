"""MRdIBRegularizer: MRdIB (arXiv 2509.20225) as a drop-in Keras layer around any multimodal recommender.

Put it where your model has one representation per modality for its items; call it in training with the
batch's users and which rows are its positive and negative items. It returns the codes your model should
use in place of the representations and adds its objectives to the model's losses (`add_loss`), so
`Model.fit` trains them with nothing else to do. At inference it returns the posterior means (or the
representations themselves, see `codes_on_main_path`), which is all an export keeps.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import keras
import tensorflow as tf

from mrdib_tf.bottleneck import Encoding
from mrdib_tf.bottleneck_forms import CONTROL_FORMS, FORMS, KL_FORMS, make_bottleneck
from mrdib_tf.heads import PreferenceHead
from mrdib_tf.losses import bpr_loss
from mrdib_tf.mine import CRITIC_LEARNING_RATE, Critic, mutual_information
from mrdib_tf.precision import full_precision
from mrdib_tf.sampling import derived_seed

#: Width of the fusion head's hidden layer and output.
FUSION_UNITS = 64
#: How many of a batch's positives the critics score by default: two of `Critic`'s blocks. Trained on
#: 1,024 rows a step, the critic still estimates known mutual information of 0.5 to 3 nats within 10%
#: after 1,000 steps, at half the cost of the whole batch; on 512 it falls 11% short at 0.5 nats
#: (`benchmarks/mi_estimator.py`).
CRITIC_ROWS = 1024
#: The raw terms MRdIB reports, in the order of its objective.
TERMS = ("kl", "mi_estimate", "unique", "synergy")
#: The KL weight a rate-targeted bottleneck starts from when alpha_kl is 0.
INITIAL_RATE_WEIGHT = 1e-3
#: The most a rate-targeted weight moves in one step: a factor exp(+-rate_step).
_MAX_RATE_ERROR = 1.0
#: A rate-targeted weight stays within these, so a target below the form's floor (the matched prior's
#: half a nat per dimension) stops at the top one instead of overflowing.
RATE_WEIGHT_BOUNDS = (1e-8, 1e3)
# Purposes mixed into derived seeds, so no two branches (or runs) share a random stream.
_NOISE, _CRITIC_INIT, _HEAD_INIT = range(3)


@dataclass(frozen=True)
class Bottleneck:
    """What `MRdIBRegularizer.encode` produced for one step.

    Attributes:
        codes: modality -> what the backbone consumes, one row per given representation row: the
            sampled z_m in training (mu_m at inference) on the main path, else h_m itself.
        encodings: modality -> its `Encoding` (posterior, prior and standardised batch codes).
        batch_size: b; the batch codes hold the b positives, then the b negatives.
    """

    codes: dict[str, tf.Tensor]
    encodings: dict[str, Encoding]
    batch_size: tf.Tensor

    def positives(self, modality: str) -> tf.Tensor:
        return self.encodings[modality].batch_codes[: self.batch_size]

    def negatives(self, modality: str) -> tf.Tensor:
        return self.encodings[modality].batch_codes[self.batch_size :]


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


@keras.saving.register_keras_serializable(package="mrdib_tf")
class MRdIBRegularizer(keras.layers.Layer):
    """MRdIB: a variational bottleneck per modality plus unique / redundancy / synergy objectives.

    Bottleneck (alpha_kl): per modality a `ModalityBottleneck`, q_m(z | h_m) with a
    prior matched to the codes' spread over the batch's item rows, so that alpha_kl means the same
    whatever the scale of h_m. L_KL is the KL of the d_m-dimensional posterior averaged over the batch's
    positive and negative item rows, summed over modalities, for every backbone alike.

    Where z goes. With `codes_on_main_path` (the paper's MIB: the prediction term reads z), the model
    consumes the sampled z_m in training and mu_m at inference. Without it the model keeps the clean h_m
    and z_m feeds only the terms below; the export is then the bare model's.

    Unique (alpha_unique): per modality a `PreferenceHead` ranks the batch's items for its user
    from z_m alone against its own user table (BPR): each code must keep what its modality alone knows.
    Redundancy (alpha_mi): per modality pair an InfoNCE critic (`mrdib_tf.mine`) estimates
    I(z_a; z_b) on `critic_rows` of the batch's positive items, taken evenly across the batch (a sample
    of the batch is an unbiased estimate of the batch's, at a fraction of the critic's cost, which grows
    with its rows); the model descends alpha_mi times the estimate while the
    critic ascends it with an optimizer of its own, inside this layer (its variables are not trainable
    by the model's optimizer). Synergy: the model's own loss when it predicts from all z_m jointly, or
    with `fusion_head` a separate head g_f(concat_m z_m) (an MLP) with BPR, weight 1. The heads read
    codes standardised over the batch rows, so their losses do not depend on the scale of h_m either.

    Noise: every modality has its own stream, derived from (`seed`, modality) and a step counter, so no
    two modalities or seeds share noise (`mrdib_tf.sampling`). alpha_kl = 0 (and no target rate) makes a
    KL form deterministic (z_m = mu_m, no sigma head). Any alpha may be 0 (the paper's ablations): that
    branch then creates no variables and builds no ops; all alphas 0 with a KL form reproduces the bare
    model (the controls add their noise whatever the alphas).

    The paper calls the three weights alpha1 (alpha_kl), alpha2 (alpha_mi) and alpha3 (alpha_unique) and
    searches each in {1e-4, 1e-3, 5e-3, 1e-2, 5e-2}; this project uses only the names that say what each
    weighs.

    The raw terms are reported as the layer's metrics ("kl", "mi_estimate", "unique", "synergy"), which
    `Model.fit` logs with the loss.

    Args:
        modalities: two or more modality names, as keys of the representations.
        n_users: number of users (ids 0..n_users-1): the size of the heads' user tables.
        alpha_kl: weight of L_KL.
        alpha_mi: weight of the estimate of sum over modality pairs of I(z_a; z_b).
        alpha_unique: weight of L_U = sum_m BPR of decoder m.
        codes_on_main_path: whether the model consumes z_m (True) or keeps h_m (False).
        initial_sigma: the noise scale at initialisation, in units of each code dimension's spread.
        prior_scale: "codes" or "inputs": see `ModalityBottleneck` (the "matched" form only).
        encoder: "diagonal" or "dense" maps from h to mu and sigma: see `ModalityBottleneck` (likewise).
        bottleneck: the form on each modality, one of `mrdib_tf.bottleneck_forms.FORMS`: "matched" (the
            default), "paper", "dvib", or a control without a KL ("noise" at `initial_sigma`, "dropout").
        dropout_rate: the "dropout" control's rate.
        target_rate: nats per item and code dimension each modality's bottleneck should hold. Set, the
            KL's weight is no longer alpha_kl but one weight per modality, started at alpha_kl (or 1e-3
            at 0) and moved each training step by dual ascent: multiplied by exp(rate_step x e), e the
            relative excess of the step's rate over the target, clipped to [-1, 1]. None: fixed alpha_kl.
        rate_step: the dual ascent's step size (in log-weight per unit of relative excess).
        fusion_head: add a separate synergy head.
        critic_units: width of the critics' hidden layers.
        critic_rows: the most positives per batch the critics score (every k-th row of the batch).
        critic_learning_rate: Adam learning rate of the critics' own optimizer.
        seed: fixes the heads' initial weights and every random stream; None draws one from Python's
            `random` (seeded by `keras.utils.set_random_seed`).

    Example:
        >>> reg = MRdIBRegularizer(["image", "text"], n_users=4, seed=0)
        >>> h = {"image": tf.random.normal([100, 8]), "text": tf.random.normal([100, 8])}
        >>> codes = reg(h, users=[0, 1, 2, 3], pos_rows=[0, 1, 2, 3], neg_rows=[4, 5, 6, 7], training=True)
        >>> len(reg.losses), sorted(m.name for m in reg.metrics)
        (1, ['kl', 'mi_estimate', 'unique'])
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
        encoder: str = "diagonal",
        bottleneck: str = "matched",
        dropout_rate: float = 0.1,
        target_rate: float | None = None,
        rate_step: float = 0.01,
        fusion_head: bool = False,
        critic_units: int = 64,
        critic_rows: int = CRITIC_ROWS,
        critic_learning_rate: float = CRITIC_LEARNING_RATE,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**full_precision(kwargs))
        self.modalities = _check_modalities(modalities)
        if not isinstance(n_users, int) or n_users < 1:
            raise ValueError(f"MRdIBRegularizer: n_users must be a positive integer, got {n_users!r}.")
        self.n_users = n_users
        self.alpha_kl = _check_weight("alpha_kl", alpha_kl)
        self.alpha_mi = _check_weight("alpha_mi", alpha_mi)
        self.alpha_unique = _check_weight("alpha_unique", alpha_unique)
        if bottleneck not in FORMS:
            raise ValueError(f"MRdIBRegularizer: bottleneck must be one of {FORMS}, got {bottleneck!r}.")
        if target_rate is not None:
            if bottleneck not in KL_FORMS:
                raise ValueError(f"MRdIBRegularizer: target_rate needs a form with a KL {KL_FORMS}, "
                                 f"not the control '{bottleneck}'.")
            if not isinstance(target_rate, (int, float)) or not 0 < target_rate < math.inf:
                raise ValueError(f"MRdIBRegularizer: target_rate must be a finite number > 0 (nats per "
                                 f"dimension), got {target_rate!r}.")
        if not isinstance(rate_step, (int, float)) or not 0 < rate_step < math.inf:
            raise ValueError(f"MRdIBRegularizer: rate_step must be a finite number > 0, got {rate_step!r}.")
        self.bottleneck = bottleneck
        self.dropout_rate = dropout_rate
        self.target_rate = None if target_rate is None else float(target_rate)
        self.rate_step = float(rate_step)
        self.initial_sigma = initial_sigma
        self.prior_scale = prior_scale
        self.encoder = encoder
        for name, flag in (("codes_on_main_path", codes_on_main_path), ("fusion_head", fusion_head)):
            if not isinstance(flag, bool):
                raise ValueError(f"MRdIBRegularizer: {name} must be True or False, got {flag!r}.")
        for name, value in (("critic_units", critic_units), ("critic_rows", critic_rows)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ValueError(f"MRdIBRegularizer: {name} must be an integer >= 2, got {value!r}.")
        if not critic_learning_rate > 0:
            raise ValueError(f"MRdIBRegularizer: critic_learning_rate must be > 0, got {critic_learning_rate!r}.")
        self.codes_on_main_path = codes_on_main_path
        self.fusion_head = fusion_head
        self.critic_units = critic_units
        self.critic_rows = critic_rows
        self.critic_learning_rate = float(critic_learning_rate)
        self.seed = seed
        self._stream_seed = seed if seed is not None else random.randrange(2**31)
        self.step_counter = keras.random.SeedGenerator(0)  # only its step component is used
        #: False: the training step takes the critics' step (`apply_critic_gradients` or `train_critics`).
        self.critic_step_in_call = True
        #: False: the training step takes the KL weights' step (`hold_rate`) after the model's update.
        self.rate_step_in_call = True
        # what a training call leaves for the step after the model's update (the critics' batch, the
        # rates), per thread: MirroredStrategy traces each replica in its own
        self._pending = threading.local()

        try:
            self.bottlenecks = {
                m: make_bottleneck(bottleneck, stochastic=self.stochastic, initial_sigma=initial_sigma,
                                   prior_scale=prior_scale, encoder=encoder, dropout_rate=dropout_rate,
                                   name=f"bottleneck_{m}")
                for m in self.modalities
            }
        except ValueError as error:
            raise ValueError(f"MRdIBRegularizer: {error}") from None
        self.pairs = tuple(combinations(self.modalities, 2)) if self.alpha_mi > 0 else ()
        self.critics = [
            Critic(critic_units, seed=self._derived(_CRITIC_INIT, k), name=f"critic_{a}_{b}")
            for k, (a, b) in enumerate(self.pairs)
        ]
        self.critic_optimizer = keras.optimizers.Adam(self.critic_learning_rate) if self.pairs else None
        self.decoders = (
            {
                m: PreferenceHead(n_users, seed=self._derived(_HEAD_INIT, k), name=f"decoder_{m}")
                for k, m in enumerate(self.modalities)
            }
            if self.alpha_unique > 0
            else {}
        )
        self.fusion = (
            PreferenceHead(n_users, FUSION_UNITS, seed=self._derived(_HEAD_INIT, len(self.modalities)),
                           name="fusion_head")
            if fusion_head
            else None
        )
        self.weights_of_terms = {"kl": self.alpha_kl if self.has_kl else 0.0, "mi_estimate": self.alpha_mi,
                                 "unique": self.alpha_unique, "synergy": 1.0 if fusion_head else 0.0}
        reported = [name for name, w in self.weights_of_terms.items() if w > 0 or (name == "kl" and self.has_kl)]
        reported += ["kl_weight", "rate"] if self.target_rate is not None else []
        self.trackers = {name: keras.metrics.Mean(name=name) for name in reported}
        self.kl_weights = None

    @property
    def stochastic(self) -> bool:
        """Whether training codes are sampled (a control, a KL weight, or a target rate) or are the means."""
        return self.bottleneck in CONTROL_FORMS or self.alpha_kl > 0 or self.target_rate is not None

    @property
    def has_kl(self) -> bool:
        """Whether the objective holds the bottleneck's KL (a KL form at alpha_kl > 0 or a target rate)."""
        return self.bottleneck in KL_FORMS and (self.alpha_kl > 0 or self.target_rate is not None)

    @property
    def critic_variables(self) -> list[keras.Variable]:
        """The critics' variables, trained by the layer's own optimizer to ascend the MI estimate."""
        return [v for critic in self.critics for v in critic.weights]

    def _derived(self, purpose: int, index: int) -> int:
        """An int31 seed for one branch, hashed from (run seed, purpose, index): no overlap across seeds."""
        return derived_seed(self._stream_seed, purpose, index)

    def build(self, input_shape: Mapping[str, tuple]) -> None:
        """Creates every variable: the bottlenecks from each representation's width, then the heads."""
        self._check_keys(input_shape)
        widths = {}
        for m in self.modalities:
            try:
                self.bottlenecks[m].build(tuple(input_shape[m]))
            except ValueError as error:
                raise ValueError(f"MRdIBRegularizer: representation '{m}': {error}") from None
            widths[m] = input_shape[m][-1]
        for critic, (a, b) in zip(self.critics, self.pairs):
            critic.build((None, widths[a]), (None, widths[b]))
            critic.trainable = False  # the model's optimizer must not descend what the critic ascends
        if self.critic_optimizer is not None:
            self.critic_optimizer.build(self.critic_variables)
        if self.target_rate is not None:
            start = self.alpha_kl if self.alpha_kl > 0 else INITIAL_RATE_WEIGHT
            self.kl_weights = self.add_weight(name="kl_weights", shape=(len(self.modalities),),
                                              initializer=keras.initializers.Constant(start), trainable=False)
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

    def _build_for(self, representations: Mapping[str, tf.Tensor]) -> None:
        self._check_keys(representations)
        if not self.built:
            self.build({m: tuple(representations[m].shape) for m in self.modalities})

    def call(
        self,
        representations: Mapping[str, tf.Tensor],
        users: tf.Tensor | None = None,
        pos_rows: tf.Tensor | None = None,
        neg_rows: tf.Tensor | None = None,
        pos_items: tf.Tensor | None = None,
        training: bool = False,
    ) -> dict[str, tf.Tensor]:
        """The codes the model should use for `representations`; in training, MRdIB's losses too.

        Args:
            representations: modality -> h_m [n, d_m]: every item, or just the batch's rows.
            users: [b] the batch's user ids. Needed in training; without it the call is the inference path.
            pos_rows, neg_rows: [b] rows of the representations holding the batch's positive and negative
                items.
            pos_items: [b] the positives' item ids, when rows are not ids: the critic then never takes a
                repeat of an item for a draw from the product of the marginals. Defaults to `pos_rows`.
            training: True samples the codes and adds the losses (with `users` given).
        """
        self._build_for(representations)
        if not training or users is None:
            if self.codes_on_main_path:
                return {m: self.bottlenecks[m](representations[m]) for m in self.modalities}
            return {m: tf.convert_to_tensor(representations[m]) for m in self.modalities}
        if pos_rows is None or neg_rows is None:
            raise ValueError("MRdIBRegularizer: training needs pos_rows and neg_rows with users.")
        bottleneck = self.encode(representations, True, pos_rows, neg_rows)
        pos_items = pos_rows if pos_items is None else pos_items
        losses = self.auxiliary_losses(bottleneck, users, pos_items)
        self.add_loss(losses["total"])
        if self.target_rate is not None:
            losses.update(self._rates(bottleneck))
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        if self.pairs and self.critic_step_in_call:
            self._train_critics(bottleneck, pos_items)
        elif self.pairs:
            self._pending.critic_batch = (bottleneck, pos_items)
        return bottleneck.codes

    def train_critics(self) -> None:
        """The critics' step on the codes of the last training call, for a training step that runs it after
        the model's own update (`critic_step_in_call = False`; `Recommender` does so under loss scaling).

        Equal to the step inside `call`: the codes carry no gradient and the model's update leaves the
        critics alone. Outside the model's gradient tape, the critics' optimizer may all-reduce across
        replicas: MirroredStrategy's merge call inside that tape loses gradients (seen on CPU devices).
        """
        pending = getattr(self._pending, "critic_batch", None)
        if pending is None:
            raise ValueError("MRdIBRegularizer.train_critics: no training call since the last critic step.")
        self._pending.critic_batch = None
        bottleneck, pos_items = pending
        self._train_critics(bottleneck, pos_items)

    def apply_critic_gradients(self, gradients: Sequence[tf.Tensor]) -> None:
        """The critics' step from the gradient of a loss holding alpha_mi x the estimate, one per critic
        variable (`critic_variables` order): for a training step whose one backward pass serves the model
        and the critics (`critic_step_in_call = False`, as `Recommender` trains). Ascending the estimate
        is descending -gradient / alpha_mi: the step `train_critics` takes, without its second pass.
        """
        self._pending.critic_batch = None
        self.critic_optimizer.apply([-g / self.alpha_mi for g in gradients], self.critic_variables)

    def encode(
        self, representations: Mapping[str, tf.Tensor], training: bool, pos_rows: tf.Tensor, neg_rows: tf.Tensor
    ) -> Bottleneck:
        """The codes the model should consume, and what the auxiliary terms need, for one batch.

        On the main path every row is encoded (a graph backbone mixes items); off it, only the batch's.
        """
        self._build_for(representations)
        rows = tf.concat([pos_rows, neg_rows], axis=0)
        step = self._next_step() if training and self.stochastic else None
        codes, encodings = {}, {}
        for index, m in enumerate(self.modalities):
            h = tf.convert_to_tensor(representations[m])
            seed = None if step is None else tf.stack([tf.constant(self._derived(_NOISE, index), tf.int32), step])
            if self.codes_on_main_path:
                encodings[m] = self.bottlenecks[m].encode(h, rows, seed)
                codes[m] = encodings[m].codes
            else:
                encodings[m] = self.bottlenecks[m].encode(tf.gather(h, rows), None, seed)
                codes[m] = h
        return Bottleneck(codes, encodings, tf.shape(pos_rows)[0])

    def _rates(self, bottleneck: Bottleneck) -> dict[str, tf.Tensor]:
        """This step's rates (nats per item and dimension) for the logs, and their dual-ascent step: taken
        here, or kept for `hold_rate` when a training step takes it after the model's update
        (`rate_step_in_call = False`, as `Recommender` trains)."""
        rates = tf.stack([tf.stop_gradient(bottleneck.encodings[m].rate()) for m in self.modalities])
        logged = {"kl_weight": tf.reduce_mean(self.kl_weights), "rate": tf.reduce_mean(rates)}
        if self.rate_step_in_call:
            self._step_kl_weights(rates)
        else:
            self._pending.rates = rates
        return logged

    def hold_rate(self) -> None:
        """The KL weights' dual-ascent step on the rates of the last training call, outside the model's
        gradient tape, where the replicas may average their rates (inside it, MirroredStrategy's
        collective loses gradients, as with the critics)."""
        rates = getattr(self._pending, "rates", None)
        if rates is None:
            raise ValueError("MRdIBRegularizer.hold_rate: no training call since the last step of the weights.")
        self._pending.rates = None
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:  # each replica's copy takes the same step
            rates = context.all_reduce(tf.distribute.ReduceOp.MEAN, rates)
        self._step_kl_weights(rates)

    def _step_kl_weights(self, rates: tf.Tensor) -> None:
        excess = tf.clip_by_value(rates / self.target_rate - 1.0, -_MAX_RATE_ERROR, _MAX_RATE_ERROR)
        updated = self.kl_weights * tf.exp(self.rate_step * excess)
        self.kl_weights.assign(tf.clip_by_value(updated, *RATE_WEIGHT_BOUNDS))

    def _next_step(self) -> tf.Tensor:
        """This training step's counter: the step component of `step_counter`, advanced by one."""
        return tf.cast(tf.math.floormod(self.step_counter.next()[1], tf.int32.max), tf.int32)

    def auxiliary_losses(
        self, bottleneck: Bottleneck, users: tf.Tensor, pos_items: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        """The raw enabled terms ("kl", "mi_estimate", "unique", "synergy") and their weighted "total".

        "total" = alpha_kl * kl + alpha_mi * mi_estimate + alpha_unique * unique + synergy: the paper's L
        without the model's own loss (under a target rate, sum_m w_m * kl_m with the dual-ascent weights
        in place of alpha_kl * kl); exactly 0.0 when nothing is enabled.
        """
        with keras.name_scope(self.name, caller=self):
            losses: dict[str, tf.Tensor] = {}
            weighted_kl = None
            if self.has_kl:
                kls = [bottleneck.encodings[m].kl() for m in self.modalities]
                losses["kl"] = tf.add_n(kls)
                weighted_kl = (self.alpha_kl * losses["kl"] if self.kl_weights is None else
                               tf.add_n([self.kl_weights[k] * kl for k, kl in enumerate(kls)]))
            if self.pairs:
                losses["mi_estimate"] = self._mutual_information(bottleneck, pos_items)
            if self.decoders:
                losses["unique"] = tf.add_n([
                    bpr_loss(*decoder(users, bottleneck.positives(m), bottleneck.negatives(m)))
                    for m, decoder in self.decoders.items()
                ])
            if self.fusion is not None:
                fused_pos = tf.concat([bottleneck.positives(m) for m in self.modalities], axis=-1)
                fused_neg = tf.concat([bottleneck.negatives(m) for m in self.modalities], axis=-1)
                losses["synergy"] = bpr_loss(*self.fusion(users, fused_pos, fused_neg))
            terms = [self.weights_of_terms[name] * value for name, value in losses.items() if name != "kl"]
            terms += [] if weighted_kl is None else [weighted_kl]
            losses["total"] = tf.add_n(terms) if terms else tf.zeros([], dtype=self.compute_dtype)
            return losses

    def _mutual_information(self, bottleneck: Bottleneck, pos_items: tf.Tensor | None,
                            stop_gradient: bool = False) -> tf.Tensor:
        """Sum over modality pairs of the critics' estimate of I(z_a; z_b) on the sampled positives."""
        def positives(m: str) -> tf.Tensor:
            codes = self._critic_sample(bottleneck.positives(m))
            return tf.stop_gradient(codes) if stop_gradient else codes

        items = None if pos_items is None else self._critic_sample(pos_items)
        return tf.add_n([
            mutual_information(critic, positives(a), positives(b), items)
            for critic, (a, b) in zip(self.critics, self.pairs)
        ])

    def _critic_sample(self, rows: tf.Tensor) -> tf.Tensor:
        """Every k-th row of the batch's b, k = max(1, b // critic_rows), at most `critic_rows` of them:
        spread over the whole batch, so even a batch in some order (grouped by user) is sampled evenly."""
        stride = tf.maximum(1, tf.shape(rows)[0] // self.critic_rows)
        return rows[::stride][: self.critic_rows]

    def _train_critics(self, bottleneck: Bottleneck, pos_items: tf.Tensor | None) -> None:
        """One step of the critics' own optimizer up the estimate, on the codes as they are (no gradient)."""
        variables = self.critic_variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])  # not trainable: watched by hand, through their values
            objective = -self._mutual_information(bottleneck, pos_items, stop_gradient=True)
            objective /= tf.distribute.get_strategy().num_replicas_in_sync  # replicas' gradients are summed
        self.critic_optimizer.apply(tape.gradient(objective, [v.value for v in variables]), variables)

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
            "encoder": self.encoder,
            "bottleneck": self.bottleneck,
            "dropout_rate": self.dropout_rate,
            "target_rate": self.target_rate,
            "rate_step": self.rate_step,
            "fusion_head": self.fusion_head,
            "critic_units": self.critic_units,
            "critic_rows": self.critic_rows,
            "critic_learning_rate": self.critic_learning_rate,
            "seed": self.seed,
        }
