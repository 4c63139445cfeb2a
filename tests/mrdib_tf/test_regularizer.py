"""MRdIBRegularizer: the calibrated bottleneck, its KL against the closed form, the heads, the critics' min-max,
independent random streams, the alpha-0 ablations and XLA, each checked against numbers computed here in numpy."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from mrdib_tf.bottleneck import ENCODERS, SIGMA_FLOOR, SPREAD_EPSILON, reparameterization_noise
from mrdib_tf.mine import mutual_information
from mrdib_tf.regularizer import FUSION_UNITS, MRdIBRegularizer
from mrdib_tf.sampling import standard_normal

DIMS = {"image": 6, "text": 4}
N_ITEMS, N_USERS = 30, 7
POS, NEG = np.array([1, 4, 4, 9, 12, 20, 3, 0]), np.array([2, 5, 8, 8, 29, 11, 17, 6])
USERS = np.array([0, 1, 2, 3, 4, 5, 6, 0])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bpr(pos, neg):
    return np.mean(np.logaddexp(0.0, neg - pos))


def _representations(n=N_ITEMS, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return {m: (scale * rng.normal(loc=0.5, size=(n, d))).astype(np.float32) for m, d in DIMS.items()}


def _make(**kwargs):
    return MRdIBRegularizer(list(DIMS), n_users=N_USERS, **{"seed": 0, **kwargs})


def _built(**kwargs):
    reg = _make(**kwargs)
    reg.encode(_representations(), False, POS, NEG)
    return reg


@pytest.fixture(params=ENCODERS)
def encoder(request):
    """Each encoder of the bottleneck: its numbers are checked against the numpy reference below."""
    return request.param


def _randomize_encoders(reg, seed=2):
    """Random mu and sigma weights (returned), so the checks do not lean on the identity/constant init.

    A dense encoder's kernels are [d, d], a diagonal one's [d]; `_affine` applies either."""
    rng = np.random.default_rng(seed)
    weights = {}
    for m, d in DIMS.items():
        shape = tuple(reg.bottlenecks[m].mu.kernel.shape)
        mu = [rng.normal(size=shape).astype(np.float32) * 0.5, rng.normal(size=d).astype(np.float32)]
        sigma = [rng.normal(size=shape).astype(np.float32) * 0.5, rng.normal(size=d).astype(np.float32)]
        reg.bottlenecks[m].mu.set_weights(mu)
        if reg.stochastic:
            reg.bottlenecks[m].sigma.set_weights(sigma)
        weights[m] = (mu, sigma)
    return weights


def _affine(x, kernel, bias):
    """x A + b for a dense kernel [d, d]; x * a + b, per dimension, for a diagonal one [d]."""
    return (x @ kernel if kernel.ndim == 2 else x * kernel) + bias


def _numpy_bottleneck(h, weights, rows, prior_scale="codes"):
    """mu over every row; (center, spread) of mu (or h) over `rows`; sigma in spread units."""
    (mu_w, mu_b), (sigma_w, sigma_b) = weights
    mu = _affine(h.astype(np.float64), mu_w, mu_b)
    reference = (mu if prior_scale == "codes" else h.astype(np.float64))[rows]
    center = reference.mean(axis=0)
    spread = np.sqrt(reference.var(axis=0) + SPREAD_EPSILON)
    sigma = SIGMA_FLOOR + (1 - SIGMA_FLOOR) * _sigmoid(_affine((mu - center) / spread, sigma_w, sigma_b))
    return mu, center, spread, sigma


ROWS = np.concatenate([POS, NEG])


# ---- construction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("modalities", [["image"], []])
def test_fewer_than_two_modalities_is_a_value_error(modalities):
    with pytest.raises(ValueError, match=r"at least two modalities.*got %d" % len(modalities)):
        MRdIBRegularizer(modalities, n_users=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"modalities": "image"}, "sequence of names"),
        ({"modalities": ["image", "image"]}, "unique"),
        ({"modalities": ["image", "a/b"]}, "no '/'"),
        ({"alpha_kl": -0.1}, "alpha_kl must be a finite number >= 0"),
        ({"alpha_mi": float("nan")}, "alpha_mi"),
        ({"critic_units": 0}, "critic_units"),
        ({"n_users": 0}, "n_users must be a positive integer"),
        ({"initial_sigma": 1.0}, r"initial_sigma must be in \(0, 1\)"),
        ({"codes_on_main_path": "yes"}, "codes_on_main_path must be True or False"),
        ({"prior_scale": "unit"}, "prior_scale must be one of"),
        ({"encoder": "full"}, "encoder must be one of"),
        ({"critic_rows": 1}, "critic_rows must be an integer >= 2"),
    ],
)
def test_invalid_arguments_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MRdIBRegularizer(**{"modalities": ["image", "text"], "n_users": 3, **kwargs})


def test_representations_must_match_the_modalities():
    reg = MRdIBRegularizer(["image", "text"], n_users=3)
    with pytest.raises(ValueError, match=r"missing \['text'\], unexpected \['audio'\]"):
        reg({"image": np.zeros((3, 2), np.float32), "audio": np.zeros((3, 2), np.float32)})


def test_get_config_round_trips():
    reg = _make(alpha_kl=0.01, alpha_mi=0.0, alpha_unique=0.02, codes_on_main_path=False, initial_sigma=0.3,
                prior_scale="inputs",
                fusion_head=True, critic_units=16, seed=7, name="m")
    clone = MRdIBRegularizer.from_config(reg.get_config())
    assert clone.get_config() == reg.get_config()
    assert clone.modalities == ("image", "text") and clone.n_users == N_USERS and not clone.codes_on_main_path


def test_every_variable_is_created_by_build():
    reg = _make(alpha_kl=0.1, alpha_mi=0.1, alpha_unique=0.1, fusion_head=True)
    reg.build({m: (N_ITEMS, d) for m, d in DIMS.items()})
    paths = sorted(v.path.split("/", 1)[1] for v in reg.weights)
    before = len(paths)
    reg.auxiliary_losses(reg.encode(_representations(), True, POS, NEG), USERS)
    assert len(reg.weights) == before  # nothing more appears on the first training call
    assert {"critic_image_text", "decoder_image", "decoder_text", "fusion_head", "bottleneck_image", "bottleneck_text"} <= {
        p.split("/")[0] for p in paths
    }
    assert tuple(reg.decoders["text"].users.shape) == (N_USERS, DIMS["text"])


# ---- bottleneck --------------------------------------------------------------------------------------


def test_initial_means_are_the_representations_and_sigma_starts_at_initial_sigma_of_the_spread():
    reg = _make(initial_sigma=0.25)
    h = _representations()
    bottleneck = reg.encode(h, False, POS, NEG)
    for m in DIMS:
        np.testing.assert_array_equal(bottleneck.codes[m].numpy(), h[m])
        spread = np.sqrt(h[m][ROWS].astype(np.float64).var(axis=0) + SPREAD_EPSILON)
        want = (SIGMA_FLOOR + (1 - SIGMA_FLOOR) * 0.25) * spread
        np.testing.assert_allclose(bottleneck.encodings[m].posterior.stddev().numpy(), np.broadcast_to(want, (16, DIMS[m])),
                                   rtol=1e-5)


def test_a_diagonal_encoder_maps_each_dimension_on_its_own():
    """mu_k and sigma_k read h_k alone: no code dimension mixes in another (the dense encoder does)."""
    h = tf.constant(_representations()["image"])
    for encoder, mixes in (("diagonal", False), ("dense", True)):
        reg = _built(encoder=encoder)
        _randomize_encoders(reg)
        bottleneck = reg.bottlenecks["image"]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(h)
            mu = bottleneck(h)
            sigma = bottleneck.encode(h, None, None).posterior.stddev()
        for output in (mu, sigma):
            jacobian = tape.batch_jacobian(output, h).numpy()  # [n, d, d]
            off_diagonal = jacobian * (1 - np.eye(DIMS["image"]))
            assert (np.abs(off_diagonal).max() > 1e-6) == mixes, encoder
    assert len(_built(encoder="diagonal").bottlenecks["image"].mu.weights[0].shape) == 1


def test_inference_codes_are_the_posterior_means_deterministically(encoder):
    reg = _built(encoder=encoder)
    weights = _randomize_encoders(reg)
    h = _representations()
    first, second = reg(h), reg(h)
    for m in DIMS:
        mu = _numpy_bottleneck(h[m], weights[m], ROWS)[0]
        np.testing.assert_allclose(first[m].numpy(), mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(first[m].numpy(), second[m].numpy())


def test_off_the_main_path_the_backbone_keeps_h_and_only_the_batch_rows_are_encoded():
    reg = _make(codes_on_main_path=False, alpha_unique=0.1)
    h = _representations()
    bottleneck = reg.encode(h, True, POS, NEG)
    for m in DIMS:
        np.testing.assert_array_equal(bottleneck.codes[m].numpy(), h[m])
        np.testing.assert_array_equal(reg(h)[m].numpy(), h[m])
        assert bottleneck.encodings[m].posterior.batch_shape == (len(ROWS),)
        assert tuple(bottleneck.positives(m).shape) == (len(POS), DIMS[m])


def test_training_codes_are_fresh_reparameterized_samples(encoder):
    reg = _built(encoder=encoder)
    weights = _randomize_encoders(reg)
    h = _representations(n=2000)
    pos, neg = np.arange(1000), np.arange(1000, 2000)
    first, second = reg.encode(h, True, pos, neg), reg.encode(h, True, pos, neg)
    for m in DIMS:
        mu, _, spread, sigma = _numpy_bottleneck(h[m], weights[m], np.arange(2000))
        eps_1 = (first.codes[m].numpy() - mu) / (spread * sigma)
        eps_2 = (second.codes[m].numpy() - mu) / (spread * sigma)
        tolerance = 4.0 / np.sqrt(eps_1.size)  # 2000 x d standard normals: mean within ~4 standard errors
        assert abs(eps_1.mean()) < tolerance and abs(eps_2.mean()) < tolerance
        assert abs(eps_1.std() - 1.0) < 0.03 and abs(eps_2.std() - 1.0) < 0.03
        assert abs(np.corrcoef(eps_1.ravel(), eps_2.ravel())[0, 1]) < tolerance


def _noise(seed: int, modality: str, n: int = 400) -> np.ndarray:
    """The standardised noise the layer draws for `modality` on its first training step with `seed`."""
    reg = MRdIBRegularizer(["a", "b"], n_users=2, seed=seed)
    h = {m: np.zeros((n, 4), np.float32) + np.arange(n, dtype=np.float32)[:, None] for m in ("a", "b")}
    rows = np.arange(n)
    bottleneck = reg.encode(h, True, rows[: n // 2], rows[n // 2 :])
    return (bottleneck.codes[modality].numpy() - h[modality]) / bottleneck.encodings[modality].posterior.stddev().numpy()


def test_every_seed_and_modality_has_its_own_noise_stream():
    draws = {(s, m): _noise(s, m) for s in (999, 1000, 1001) for m in ("a", "b")}
    np.testing.assert_array_equal(_noise(999, "a"), draws[(999, "a")])  # a seed fixes its noise
    keys = list(draws)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            correlation = np.corrcoef(draws[first].ravel(), draws[second].ravel())[0, 1]
            assert abs(correlation) < 4 / np.sqrt(draws[first].size), (first, second, correlation)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_noise_drawn_once_behind_its_conditional_is_the_seeds_draw(jit_compile):
    """The conditional only keeps XLA from recomputing the draw: every step's seed, step 0 included, gives
    exactly `standard_normal`'s numbers, compiled alike."""
    once = tf.function(reparameterization_noise, jit_compile=jit_compile)
    inline = tf.function(standard_normal, jit_compile=jit_compile)
    for seed in ([7, 0], [7, 1], [123456, 2**31 - 1]):
        shape, seed = tf.constant([50, 3]), tf.constant(seed, tf.int32)
        np.testing.assert_array_equal(once(shape, seed).numpy(), inline(shape, seed).numpy())


# ---- losses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("on_main_path, prior_scale", [(True, "codes"), (False, "codes"), (True, "inputs")])
def test_kl_is_the_closed_form_against_the_matched_prior_over_the_batch_rows(on_main_path, prior_scale, encoder):
    reg = _built(alpha_mi=0.0, alpha_unique=0.0, codes_on_main_path=on_main_path, prior_scale=prior_scale,
                 encoder=encoder)
    weights = _randomize_encoders(reg)
    h = _representations()
    losses = reg.auxiliary_losses(reg.encode(h, True, POS, NEG), USERS)
    expected = 0.0
    for m in DIMS:
        # off the main path only the batch rows are encoded: the same numbers, computed on those rows
        mu, center, spread, sigma = _numpy_bottleneck(h[m], weights[m], ROWS, prior_scale)
        standardized = (mu[ROWS] - center) / spread
        per_dimension = -np.log(sigma[ROWS]) + (sigma[ROWS] ** 2 + standardized**2) / 2 - 0.5
        expected += per_dimension.sum(axis=1).mean()
    np.testing.assert_allclose(float(losses["kl"]), expected, rtol=1e-4)
    np.testing.assert_allclose(float(losses["total"]), 0.005 * expected, rtol=1e-4)


def test_kl_does_not_depend_on_the_scale_of_the_representations():
    reg = _make(alpha_mi=0.0, alpha_unique=0.0)
    kl = [float(reg.auxiliary_losses(reg.encode(_representations(scale=s), True, POS, NEG), USERS)["kl"])
          for s in (1.0, 0.003)]
    np.testing.assert_allclose(kl[1], kl[0], rtol=1e-4)
    sigma = SIGMA_FLOOR + (1 - SIGMA_FLOOR) * 0.1  # at initialisation: mean standardised mu^2 is exactly 1
    np.testing.assert_allclose(kl[0], sum(DIMS.values()) * (-np.log(sigma) + sigma**2 / 2), rtol=1e-4)


def test_matched_to_the_codes_the_kl_prices_only_the_noise(encoder):
    """With sigma independent of mu (its kernel at zero), the KL has no gradient in the means when the
    prior is matched to the codes; matched to the inputs, shrinking the means lowers it."""
    h = _representations()
    for prior_scale, moves_means in (("codes", False), ("inputs", True)):
        reg = _built(alpha_mi=0.0, alpha_unique=0.0, prior_scale=prior_scale, encoder=encoder)
        with tf.GradientTape() as tape:
            kl = reg.auxiliary_losses(reg.encode(h, True, POS, NEG), USERS)["kl"]
        gradient = tape.gradient(kl, reg.bottlenecks["image"].mu.kernel)
        assert (float(tf.reduce_max(tf.abs(gradient))) > 1e-3) == moves_means, (prior_scale, gradient)


def test_unique_and_synergy_are_bpr_of_the_heads_on_standardised_codes_against_their_own_users(encoder):
    reg = _built(alpha_kl=0.0, alpha_mi=0.0, alpha_unique=0.3, fusion_head=True, encoder=encoder)
    weights = _randomize_encoders(reg)
    h = _representations()
    losses = reg.auxiliary_losses(reg.encode(h, True, POS, NEG), USERS)
    codes = {}
    for m in DIMS:
        mu, center, spread, _ = _numpy_bottleneck(h[m], weights[m], ROWS)
        codes[m] = (mu - center) / spread

    def head_bpr(head, z, transform=lambda x: x):
        users = head.users.numpy()[USERS]
        return _bpr(np.sum(users * transform(z[POS]), axis=1), np.sum(users * transform(z[NEG]), axis=1))

    def fusion_mlp(x):
        (w1, b1), (w2, b2) = ([v.numpy() for v in layer.weights] for layer in reg.fusion.transform)
        hidden = x @ w1 + b1
        return np.where(hidden > 0, hidden, np.expm1(np.minimum(hidden, 0))) @ w2 + b2

    unique = sum(head_bpr(reg.decoders[m], codes[m]) for m in DIMS)
    synergy = head_bpr(reg.fusion, np.concatenate([codes[m] for m in DIMS], axis=1), fusion_mlp)
    assert reg.fusion.users.shape[-1] == FUSION_UNITS
    np.testing.assert_allclose(float(losses["unique"]), unique, rtol=1e-4)
    np.testing.assert_allclose(float(losses["synergy"]), synergy, rtol=1e-4)
    np.testing.assert_allclose(float(losses["total"]), 0.3 * unique + synergy, rtol=1e-4)


def test_a_decoder_reads_its_own_modality_only():
    reg = _make(alpha_kl=0.0, alpha_mi=0.0, alpha_unique=1.0)
    h = {m: tf.constant(x) for m, x in _representations().items()}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(list(h.values()))
        bottleneck = reg.encode(h, True, POS, NEG)
        image_only = tf.add_n([tf.reduce_sum(bottleneck.positives("image")), tf.reduce_sum(reg.decoders["image"](
            USERS, bottleneck.positives("image"), bottleneck.negatives("image"))[0])])
    assert tape.gradient(image_only, h["text"]) is None
    assert float(tf.reduce_max(tf.abs(tape.gradient(image_only, h["image"])))) > 0


def test_total_weighs_every_enabled_term():
    reg = _built(alpha_kl=0.1, alpha_mi=0.2, alpha_unique=0.3, fusion_head=True)
    losses = {k: float(v) for k, v in reg.auxiliary_losses(reg.encode(_representations(), True, POS, NEG),
                                                           USERS).items()}
    assert set(losses) == {"kl", "mi_estimate", "unique", "synergy", "total"}
    expected = 0.1 * losses["kl"] + 0.2 * losses["mi_estimate"] + 0.3 * losses["unique"] + losses["synergy"]
    np.testing.assert_allclose(losses["total"], expected, rtol=1e-5)


# ---- ablations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "disabled, key, path_part",
    [
        ({"alpha_kl": 0.0}, "kl", "/sigma/"),
        ({"alpha_mi": 0.0}, "mi_estimate", "critic_"),
        ({"alpha_unique": 0.0}, "unique", "decoder_"),
        ({"fusion_head": False}, "synergy", "fusion_head"),
    ],
)
def test_a_zero_alpha_removes_its_branch(disabled, key, path_part):
    everything = {"alpha_kl": 0.1, "alpha_mi": 0.1, "alpha_unique": 0.1, "fusion_head": True}
    for reg, present in ((_built(**everything), True), (_built(**{**everything, **disabled}), False)):
        losses = reg.auxiliary_losses(reg.encode(_representations(), True, POS, NEG), USERS)
        paths = [v.path for v in reg.weights]
        assert (key in losses) == present
        assert any(path_part in p for p in paths) == present, paths


def test_all_zero_alphas_leave_the_backbone_loss_unchanged():
    reg = _make(alpha_kl=0.0, alpha_mi=0.0, alpha_unique=0.0)
    h = _representations()
    bottleneck = reg.encode(h, True, POS, NEG)
    losses = reg.auxiliary_losses(bottleneck, USERS)
    assert list(losses) == ["total"]
    assert losses["total"].dtype == tf.float32 and float(losses["total"]) == 0.0
    for m in DIMS:  # deterministic, identity-initialised: the backbone sees exactly h_m
        np.testing.assert_array_equal(bottleneck.codes[m].numpy(), h[m])
    assert sorted("/".join(v.path.split("/")[-3:-1]) for v in reg.weights) == (
        ["bottleneck_image/mu"] * 2 + ["bottleneck_text/mu"] * 2)


# ---- the redundancy min-max ----------------------------------------------------------------------------


def _shared_signal_representations(n=64):
    """image and text share a latent factor, so the critic has mutual information to find."""
    rng = np.random.default_rng(5)
    latent = rng.normal(size=(n, 4))
    return {
        "image": np.concatenate([latent, rng.normal(size=(n, 2))], axis=1).astype(np.float32),
        "text": (latent + 0.3 * rng.normal(size=(n, 4))).astype(np.float32),
    }


def test_in_training_the_layer_trains_its_critic_up_the_estimate_and_the_loss_descends_it():
    reg = _make(alpha_kl=0.0, alpha_mi=0.5, alpha_unique=0.0)
    h = _shared_signal_representations()
    users, rows = np.zeros(32, np.int64), np.arange(64)
    arguments = dict(users=users, pos_rows=rows[:32], neg_rows=rows[32:])

    def estimate():
        return float(reg._mutual_information(reg.encode(h, True, rows[:32], rows[32:]), None))

    assert estimate() == 0.0  # an untrained critic scores every pair alike
    for _ in range(30):  # each training call takes one step of the critic's own optimizer
        reg(h, training=True, **arguments)
    assert estimate() > 0.1  # the critic found the shared factor
    assert int(reg.critic_optimizer.iterations) == 30
    assert not {v.path for v in reg.critic_variables} & {v.path for v in reg.trainable_variables}
    # the representations stand for the backbone's projections, where the model's descent reaches
    h = {m: tf.Variable(x) for m, x in h.items()}
    with tf.GradientTape() as tape:
        reg(h, training=True, **arguments)
        loss = reg.losses[0]
    gradients = tape.gradient(loss, list(h.values()))
    before = estimate()
    for v, g in zip(h.values(), gradients):
        v.assign_sub(2.0 * g)
    assert estimate() < before - 0.01  # the model's descent lowers it


def test_the_critic_scores_every_kth_positive_at_most_critic_rows_of_them():
    """b = 32 positives, critic_rows 8: rows 0, 4, ..., 28 of the positives, and no other row, feed the
    estimate (a sample spread over the batch)."""
    h = _shared_signal_representations()
    reg = _make(alpha_kl=0.0, alpha_mi=0.5, alpha_unique=0.0, critic_rows=8)
    rows = np.arange(64)
    bottleneck = reg.encode(h, True, rows[:32], rows[32:])
    for k, v in enumerate(reg.critic_variables):  # a critic off its zero start scores pairs differently
        v.assign(np.random.default_rng(k).normal(scale=0.3, size=v.shape).astype(np.float32))
    estimate = float(reg._mutual_information(bottleneck, rows[:32]))
    sample = np.arange(0, 32, 4)
    want = float(mutual_information(reg.critics[0], tf.gather(bottleneck.positives("image"), sample),
                                    tf.gather(bottleneck.positives("text"), sample), sample))
    assert estimate == pytest.approx(want, rel=1e-5) and estimate != 0.0
    assert tuple(reg._critic_sample(tf.range(5)).numpy()) == (0, 1, 2, 3, 4)  # fewer rows: all of them
    assert tuple(reg._critic_sample(tf.range(20)).numpy()) == (0, 2, 4, 6, 8, 10, 12, 14)


def test_the_critics_ascent_gradient_from_the_models_loss_is_their_own_objectives_gradient():
    """One backward pass of the model's loss gives the critics their step: its gradient in their variables
    over -alpha_mi is the gradient of `train_critics`' own objective (here with every term enabled)."""
    h = _shared_signal_representations()
    users, rows = np.arange(32, dtype=np.int64) % N_USERS, np.arange(64)
    arguments = dict(users=users, pos_rows=rows[:32], neg_rows=rows[32:], training=True)
    applied = {}
    for path in ("own objective", "model's loss"):
        reg = _make(alpha_kl=0.01, alpha_mi=0.3, alpha_unique=0.02)
        reg.critic_step_in_call = False
        reg.build({m: h[m].shape for m in DIMS})
        for k, v in enumerate(reg.critic_variables):  # off the zero start, so every variable has a gradient
            v.assign(np.random.default_rng(k).normal(scale=0.3, size=v.shape).astype(np.float32))
        reg.critic_optimizer.apply = lambda gradients, variables, path=path: applied.__setitem__(
            path, [np.asarray(g) for g in gradients])
        values = [v.value for v in reg.critic_variables]
        with tf.GradientTape() as tape:
            tape.watch(values)
            reg(h, **arguments)
            loss = reg.losses[0]
        if path == "own objective":
            reg.train_critics()
        else:
            reg.apply_critic_gradients(tape.gradient(loss, values))
    assert len(applied["own objective"]) == len(reg.critic_variables)
    for fused, own in zip(applied["model's loss"], applied["own objective"], strict=True):
        np.testing.assert_allclose(fused, own, rtol=1e-4, atol=1e-5)  # entries up to about 10
    assert max(np.abs(g).max() for g in applied["own objective"]) > 1e-3


# ---- a drop-in Keras layer ------------------------------------------------------------------------------


def test_a_training_call_adds_the_weighted_total_and_reports_each_term_as_a_metric():
    reg = _make(alpha_kl=0.1, alpha_mi=0.2, alpha_unique=0.3, fusion_head=True)
    codes = reg(_representations(), users=USERS, pos_rows=POS, neg_rows=NEG, training=True)
    assert {m: tuple(c.shape) for m, c in codes.items()} == {m: (N_ITEMS, d) for m, d in DIMS.items()}
    terms = {m.name: float(m.result()) for m in reg.metrics}
    assert set(terms) == {"kl", "mi_estimate", "unique", "synergy"}
    assert len(reg.losses) == 1
    want = 0.1 * terms["kl"] + 0.2 * terms["mi_estimate"] + 0.3 * terms["unique"] + terms["synergy"]
    np.testing.assert_allclose(float(reg.losses[0]), want, rtol=1e-5)
    reg(_representations())  # an inference call adds nothing
    assert reg.losses == []


def test_keras_serialization_round_trips_the_layer():
    reg = _make(alpha_mi=0.0, prior_scale="inputs", initial_sigma=0.3, critic_learning_rate=3e-3, encoder="dense",
                critic_rows=64)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(reg))
    assert isinstance(clone, MRdIBRegularizer) and clone.get_config() == reg.get_config()


def test_a_functional_model_holding_it_saves_as_keras_and_reloads_with_the_same_outputs(tmp_path, encoder):
    inputs = {m: keras.Input((d,), name=m) for m, d in DIMS.items()}
    codes = _make(fusion_head=True, encoder=encoder)(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate()([codes["image"], codes["text"]]))
    regularizer = next(layer for layer in model.layers if isinstance(layer, MRdIBRegularizer))
    _randomize_encoders(regularizer)
    h = _representations()
    want = model(h).numpy()
    mu = {m: _numpy_bottleneck(h[m], (w[0], w[1]), ROWS)[0] for m, w in _weights_of(regularizer).items()}
    np.testing.assert_allclose(want, np.concatenate([mu["image"], mu["text"]], axis=1), rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded(h).numpy(), want, rtol=1e-6)
    assert len(reloaded.weights) == len(model.weights)


def _weights_of(reg):
    return {m: ([v.numpy() for v in b.mu.weights], [v.numpy() for v in b.sigma.weights])
            for m, b in reg.bottlenecks.items()}


# ---- XLA ---------------------------------------------------------------------------------------------


def test_deterministic_losses_compile_under_xla_and_match_eager():
    reg = _built(alpha_kl=0.1, alpha_mi=0.2, alpha_unique=0.3, fusion_head=True)
    _randomize_encoders(reg)
    h = _representations()

    def deterministic_losses(h):
        return reg.auxiliary_losses(reg.encode(h, False, POS, NEG), USERS)

    eager = deterministic_losses(h)
    compiled = tf.function(deterministic_losses, jit_compile=True)(h)
    for key in ("kl", "unique", "synergy"):  # the critic's pairing shift differs between XLA and eager
        np.testing.assert_allclose(float(compiled[key]), float(eager[key]), rtol=1e-5)


def test_an_xla_training_step_matches_an_eager_step():
    # The noise is the same with and without XLA (SplitMix64), and with alpha_mi = 0 nothing else is
    # random, so SGD steps compiled by XLA must land where the same steps taken eagerly land.
    def make():
        return _make(alpha_kl=0.1, alpha_mi=0.0, alpha_unique=0.3, fusion_head=True)

    h = _representations()

    def train_step(reg, optimizer):
        with tf.GradientTape() as tape:
            bottleneck = reg.encode(h, True, POS, NEG)
            backbone_like = tf.reduce_mean(tf.gather(bottleneck.codes["image"], POS) ** 2)
            loss = backbone_like + reg.auxiliary_losses(bottleneck, USERS)["total"]
        grads = tape.gradient(loss, reg.trainable_variables)
        optimizer.apply_gradients(zip(grads, reg.trainable_variables))
        return loss

    eager_reg, eager_opt = make(), keras.optimizers.SGD(0.1)
    xla_reg, xla_opt = make(), keras.optimizers.SGD(0.1)
    for reg, opt in ((eager_reg, eager_opt), (xla_reg, xla_opt)):
        reg.build({m: x.shape for m, x in h.items()})
        opt.build(reg.trainable_variables)
    compiled = tf.function(lambda: train_step(xla_reg, xla_opt), jit_compile=True)
    for _ in range(2):
        np.testing.assert_allclose(float(compiled()), float(train_step(eager_reg, eager_opt)), rtol=1e-4)
    for a, b in zip(eager_reg.trainable_variables, xla_reg.trainable_variables):
        assert a.path.split("/", 1)[1] == b.path.split("/", 1)[1]
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_the_full_regularizer_trains_under_xla_from_its_first_call():
    reg = _make(fusion_head=True)
    h = _representations()

    @tf.function(jit_compile=True)
    def losses():
        return reg.auxiliary_losses(reg.encode(h, True, POS, NEG), USERS)

    first, second = losses(), losses()
    assert {"kl", "mi_estimate", "unique", "synergy", "total"} == set(first)
    # fresh noise on every compiled call: the sampled terms change, the KL (posteriors only) does not
    assert float(first["unique"]) != float(second["unique"])
    assert float(first["kl"]) == pytest.approx(float(second["kl"]), rel=1e-6)
