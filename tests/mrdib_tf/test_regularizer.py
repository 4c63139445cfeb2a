"""MRdIBRegularizer: bottleneck, KL, unique and synergy heads, the MINE branch's gradient reversal, the
alpha-0 ablations and XLA compilation, each checked against numbers computed here in numpy."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from mrdib_tf.regularizer import SIGMA_FLOOR, SIGMA_OFFSET, MRdIBRegularizer

DIMS = {"image": 6, "text": 4}
N_ITEMS, N_USERS_DIM = 30, 5


def _softplus(x):
    return np.logaddexp(0.0, x)


def _bpr(pos, neg):
    return np.mean(-np.log(1.0 / (1.0 + np.exp(-(pos - neg)))))


def _representations(n=N_ITEMS, seed=0):
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in DIMS.items()}


def _batch(seed=1, size=8):
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(size, N_USERS_DIM)).astype(np.float32)
    pos = rng.integers(0, N_ITEMS, size=size)
    neg = rng.integers(0, N_ITEMS, size=size)
    return users, pos, neg


def _randomize_encoders(reg, seed=2):
    """Random mu and sigma weights (returned), so the checks do not lean on the identity/zero init."""
    rng = np.random.default_rng(seed)
    weights = {}
    for m, d in DIMS.items():
        mu = [rng.normal(size=(d, d)).astype(np.float32) * 0.5, rng.normal(size=d).astype(np.float32)]
        sigma = [rng.normal(size=(d, d)).astype(np.float32) * 0.5, rng.normal(size=d).astype(np.float32) + 4.0]
        reg.mu[m].set_weights(mu)
        if reg.stochastic:
            reg.sigma[m].set_weights(sigma)
        weights[m] = (mu, sigma)
    return weights


def _numpy_posterior(h, weights):
    (mu_w, mu_b), (sigma_w, sigma_b) = weights
    return h @ mu_w + mu_b, _softplus(h @ sigma_w + sigma_b - SIGMA_OFFSET) + SIGMA_FLOOR


def _built(**kwargs):
    reg = MRdIBRegularizer(list(DIMS), seed=0, **kwargs)
    reg.encode(_representations(), training=False)
    return reg


# ---- construction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("modalities", [["image"], []])
def test_fewer_than_two_modalities_is_a_value_error(modalities):
    with pytest.raises(ValueError, match=r"at least two modalities.*got %d" % len(modalities)):
        MRdIBRegularizer(modalities)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"modalities": "image"}, "sequence of names"),
        ({"modalities": ["image", "image"]}, "unique"),
        ({"modalities": ["image", "a/b"]}, "no '/'"),
        ({"modalities": ["image", "text"], "alpha_kl": -0.1}, "alpha_kl must be a finite number >= 0"),
        ({"modalities": ["image", "text"], "alpha_mi": float("nan")}, "alpha_mi"),
        ({"modalities": ["image", "text"], "critic_units": 0}, "critic_units"),
    ],
)
def test_invalid_arguments_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MRdIBRegularizer(**kwargs)


def test_representations_must_match_the_modalities():
    reg = MRdIBRegularizer(["image", "text"])
    with pytest.raises(ValueError, match=r"missing \['text'\], unexpected \['audio'\]"):
        reg.encode({"image": np.zeros((3, 2), np.float32), "audio": np.zeros((3, 2), np.float32)}, training=False)


def test_get_config_round_trips():
    reg = MRdIBRegularizer(["image", "text"], alpha_kl=0.01, alpha_mi=0.0, alpha_unique=0.02,
                           fusion_head=True, critic_units=16, seed=7, name="m")
    clone = MRdIBRegularizer.from_config(reg.get_config())
    assert clone.get_config() == reg.get_config()
    assert clone.modalities == ("image", "text") and clone.seed == 7 and clone.fusion_head


# ---- bottleneck --------------------------------------------------------------------------------------


def test_initial_codes_are_the_representations_and_scales_are_small():
    reg = MRdIBRegularizer(list(DIMS), seed=0)
    h = _representations()
    bottleneck = reg.encode(h, training=False)
    for m in DIMS:
        np.testing.assert_array_equal(bottleneck.codes[m].numpy(), h[m])
        np.testing.assert_allclose(bottleneck.posteriors[m].stddev().numpy(), _softplus(-5.0) + 1e-4, rtol=1e-5)


def test_inference_codes_are_the_posterior_means_deterministically():
    reg = _built()
    weights = _randomize_encoders(reg)
    h = _representations()
    first, second = reg(h, training=False), reg(h, training=False)
    for m in DIMS:
        mu, _ = _numpy_posterior(h[m], weights[m])
        np.testing.assert_allclose(first[m].numpy(), mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(first[m].numpy(), second[m].numpy())


def test_training_codes_are_fresh_reparameterized_samples():
    reg = _built()
    weights = _randomize_encoders(reg)
    h = _representations(n=2000)
    first, second = reg.encode(h, training=True), reg.encode(h, training=True)
    for m in DIMS:
        mu, sigma = _numpy_posterior(h[m], weights[m])
        eps_1 = (first.codes[m].numpy() - mu) / sigma
        eps_2 = (second.codes[m].numpy() - mu) / sigma
        # 2000 x d standard normals: mean within ~4 standard errors of 0, std within 3% of 1.
        tolerance = 4.0 / np.sqrt(eps_1.size)
        assert abs(eps_1.mean()) < tolerance and abs(eps_2.mean()) < tolerance
        assert abs(eps_1.std() - 1.0) < 0.03 and abs(eps_2.std() - 1.0) < 0.03
        assert abs(np.corrcoef(eps_1.ravel(), eps_2.ravel())[0, 1]) < tolerance


def test_training_codes_carry_gradients_to_mu_and_sigma():
    reg = _built()
    h = _representations()
    with tf.GradientTape() as tape:
        loss = tf.add_n([tf.reduce_sum(z**2) for z in reg.encode(h, training=True).codes.values()])
    grads = tape.gradient(loss, [reg.mu["image"].kernel, reg.sigma["image"].kernel])
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_seed_fixes_the_samples():
    h = _representations()
    codes = [MRdIBRegularizer(list(DIMS), seed=s)(h, training=True)["text"].numpy() for s in (3, 3, 4)]
    np.testing.assert_array_equal(codes[0], codes[1])
    assert not np.array_equal(codes[0], codes[2])


# ---- losses ------------------------------------------------------------------------------------------


def test_kl_is_the_closed_form_mean_over_items_summed_over_modalities():
    reg = _built(alpha_mi=0.0, alpha_unique=0.0)
    weights = _randomize_encoders(reg)
    h = _representations()
    losses = reg.auxiliary_losses(reg.encode(h, training=True), *_batch())
    expected = 0.0
    for m in DIMS:
        mu, sigma = _numpy_posterior(h[m].astype(np.float64), weights[m])
        expected += np.mean(0.5 * np.sum(mu**2 + sigma**2 - 1.0 - 2.0 * np.log(sigma), axis=1))
    np.testing.assert_allclose(float(losses["kl"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(losses["total"]), 0.005 * expected, rtol=1e-5)


def test_unique_and_synergy_are_bpr_of_the_heads_against_the_user():
    reg = _built(alpha_kl=0.0, alpha_mi=0.0, alpha_unique=0.3, fusion_head=True)
    weights = _randomize_encoders(reg)
    h = _representations()
    users, pos, neg = _batch()
    losses = reg.auxiliary_losses(reg.encode(h, training=True), users, pos, neg)
    codes = {m: _numpy_posterior(h[m], weights[m])[0] for m in DIMS}

    def head_bpr(head, z):
        kernel, bias = (v.numpy() for v in head.weights)
        score = lambda rows: np.sum(users * (z[rows] @ kernel + bias), axis=1)
        return _bpr(score(pos), score(neg))

    unique = sum(head_bpr(reg.decoders[m], codes[m]) for m in DIMS)
    synergy = head_bpr(reg.fusion, np.concatenate([codes[m] for m in DIMS], axis=1))
    np.testing.assert_allclose(float(losses["unique"]), unique, rtol=1e-5)
    np.testing.assert_allclose(float(losses["synergy"]), synergy, rtol=1e-5)
    np.testing.assert_allclose(float(losses["total"]), 0.3 * unique + synergy, rtol=1e-5)


def test_total_weighs_every_enabled_term_with_the_mi_sign_convention():
    reg = _built(alpha_kl=0.1, alpha_mi=0.2, alpha_unique=0.3, fusion_head=True)
    losses = {k: float(v) for k, v in reg.auxiliary_losses(reg.encode(_representations(), True), *_batch()).items()}
    assert set(losses) == {"kl", "mi_estimate", "unique", "synergy", "total"}
    expected = 0.1 * losses["kl"] - 0.2 * losses["mi_estimate"] + 0.3 * losses["unique"] + losses["synergy"]
    np.testing.assert_allclose(losses["total"], expected, rtol=1e-5)


# ---- ablations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "disabled, key, path_part",
    [
        ({"alpha_kl": 0.0}, "kl", "sigma_"),
        ({"alpha_mi": 0.0}, "mi_estimate", "critic_"),
        ({"alpha_unique": 0.0}, "unique", "decoder_"),
        ({"fusion_head": False}, "synergy", "fusion_head"),
    ],
)
def test_a_zero_alpha_removes_its_branch(disabled, key, path_part):
    everything = {"alpha_kl": 0.1, "alpha_mi": 0.1, "alpha_unique": 0.1, "fusion_head": True}
    full, ablated = _built(**everything), _built(**{**everything, **disabled})
    for reg in (full, ablated):
        losses = reg.auxiliary_losses(reg.encode(_representations(), True), *_batch())
        paths = [v.path for v in reg.trainable_variables]
        present = reg is full
        assert (key in losses) == present
        assert any(path_part in p for p in paths) == present, paths


def test_all_zero_alphas_leave_the_backbone_loss_unchanged():
    reg = MRdIBRegularizer(list(DIMS), alpha_kl=0.0, alpha_mi=0.0, alpha_unique=0.0, seed=0)
    h = _representations()
    bottleneck = reg.encode(h, training=True)
    losses = reg.auxiliary_losses(bottleneck, *_batch())
    assert list(losses) == ["total"]
    assert losses["total"].dtype == tf.float32 and float(losses["total"]) == 0.0
    for m in DIMS:  # deterministic, identity-initialised: the backbone sees exactly h_m
        np.testing.assert_array_equal(bottleneck.codes[m].numpy(), h[m])
    assert sorted(v.path.split("/")[-2] for v in reg.trainable_variables) == ["mu_image"] * 2 + ["mu_text"] * 2


# ---- gradient reversal -------------------------------------------------------------------------------


def _shared_signal_representations(n=64):
    """image and text share a latent factor, so the critic has mutual information to find."""
    rng = np.random.default_rng(5)
    latent = rng.normal(size=(n, 4))
    return {
        "image": np.concatenate([latent, rng.normal(size=(n, 2))], axis=1).astype(np.float32),
        "text": (latent + 0.3 * rng.normal(size=(n, 4))).astype(np.float32),
    }


def test_one_step_on_the_total_raises_the_estimate_for_the_critic_and_lowers_it_for_the_encoders():
    reg = MRdIBRegularizer(list(DIMS), alpha_kl=0.0, alpha_mi=0.5, alpha_unique=0.0, seed=0)
    h = _shared_signal_representations()
    users, pos, neg = np.zeros((64, 3), np.float32), np.arange(64), np.arange(64)
    state = reg.seed_generator.state.numpy()

    def losses():
        reg.seed_generator.state.assign(state)  # the same permutation every time
        return reg.auxiliary_losses(reg.encode(h, training=True), users, pos, neg)

    losses()  # builds the critic

    critic_vars = reg.critics[0].trainable_variables
    encoder_vars = [v for m in DIMS for v in reg.mu[m].trainable_variables]
    with tf.GradientTape() as tape:
        before = losses()
    grads = tape.gradient(before["total"], critic_vars + encoder_vars)
    np.testing.assert_allclose(float(before["total"]), -0.5 * float(before["mi_estimate"]), rtol=1e-6)

    def estimate_after_step(variables, gradients, lr=0.05):
        saved = [v.numpy() for v in variables]
        for v, g in zip(variables, gradients):
            v.assign_sub(lr * g)
        estimate = float(losses()["mi_estimate"])
        for v, value in zip(variables, saved):
            v.assign(value)
        return estimate

    i_hat = float(before["mi_estimate"])
    n_critic = len(critic_vars)
    assert estimate_after_step(critic_vars, grads[:n_critic]) > i_hat + 1e-4  # the critic ascends I_hat
    assert estimate_after_step(encoder_vars, grads[n_critic:]) < i_hat - 1e-4  # the encoders descend it


# ---- XLA ---------------------------------------------------------------------------------------------


def test_deterministic_losses_compile_under_xla_and_match_eager():
    reg = _built(alpha_kl=0.1, alpha_mi=0.2, alpha_unique=0.3, fusion_head=True)
    _randomize_encoders(reg)
    h, (users, pos, neg) = _representations(), _batch()

    def deterministic_losses(h, users, pos, neg):
        return reg.auxiliary_losses(reg.encode(h, training=False), users, pos, neg)

    eager = deterministic_losses(h, users, pos, neg)
    compiled = tf.function(deterministic_losses, jit_compile=True)(h, users, pos, neg)
    for key in ("kl", "unique", "synergy"):  # mi_estimate's shuffle draws differ between XLA and eager
        np.testing.assert_allclose(float(compiled[key]), float(eager[key]), rtol=1e-5)
    assert np.isfinite(float(compiled["mi_estimate"]))


def test_an_xla_training_step_matches_an_eager_step():
    # No randomness in this configuration (deterministic encoder, no MINE shuffle), so SGD steps compiled
    # by XLA must land where the same steps taken eagerly land. (SGD, not Adam: Adam's first steps
    # turn round-off-sized gradients into full-size updates.)
    def make():
        return MRdIBRegularizer(list(DIMS), alpha_kl=0.0, alpha_mi=0.0, alpha_unique=0.3,
                                fusion_head=True, seed=0)

    h, (users, pos, neg) = _representations(), _batch()

    def train_step(reg, optimizer):
        with tf.GradientTape() as tape:
            bottleneck = reg.encode(h, training=True)
            backbone_like = tf.reduce_mean(tf.gather(bottleneck.codes["image"], pos) ** 2)
            loss = backbone_like + reg.auxiliary_losses(bottleneck, users, pos, neg)["total"]
        grads = tape.gradient(loss, reg.trainable_variables)
        optimizer.apply_gradients(zip(grads, reg.trainable_variables))
        return loss

    eager_reg, eager_opt = make(), keras.optimizers.SGD(0.1)
    xla_reg, xla_opt = make(), keras.optimizers.SGD(0.1)
    for reg, opt in ((eager_reg, eager_opt), (xla_reg, xla_opt)):
        reg.encode(h, training=True)
        reg.auxiliary_losses(reg.encode(h, training=True), users, pos, neg)
        opt.build(reg.trainable_variables)
    compiled = tf.function(lambda: train_step(xla_reg, xla_opt), jit_compile=True)
    for _ in range(2):
        np.testing.assert_allclose(float(compiled()), float(train_step(eager_reg, eager_opt)), rtol=1e-5)
    for a, b in zip(eager_reg.trainable_variables, xla_reg.trainable_variables):
        assert a.path.split("/", 1)[1] == b.path.split("/", 1)[1]
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_the_full_regularizer_trains_under_xla_from_its_first_call():
    reg = MRdIBRegularizer(list(DIMS), fusion_head=True, seed=0)
    h, (users, pos, neg) = _representations(), _batch()

    @tf.function(jit_compile=True)
    def losses():
        return reg.auxiliary_losses(reg.encode(h, training=True), users, pos, neg)

    first, second = losses(), losses()
    assert {"kl", "mi_estimate", "unique", "synergy", "total"} == set(first)
    assert len(reg.critics[0].trainable_variables) == 6 and len(reg.decoders) == 2
    # fresh noise and a fresh shuffle on every compiled call: the sampled terms change, the KL
    # (a function of the posteriors only) does not
    assert float(first["unique"]) != float(second["unique"])
    assert float(first["kl"]) == pytest.approx(float(second["kl"]), rel=1e-6)
