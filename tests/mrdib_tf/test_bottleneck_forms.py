"""The bottleneck forms and controls: each KL against its closed form in numpy, each control's noise against
its definition, and the rate-targeted weight holding its target on a small known case."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.bottleneck_forms import (
    DVIB_PRIOR_SCALE,
    FORMS,
    DVIBBottleneck,
    FeatureDropout,
    FixedNoise,
    PaperBottleneck,
)
from mrdib_tf.regularizer import MRdIBRegularizer
from mrdib_tf.sampling import standard_normal

ROWS = np.array([3, 0, 7, 7, 12, 5, 9, 1, 14, 2])
SEED = tf.constant([11, 4], tf.int32)


def _h(n=16, d=5, seed=0, loc=0.7, scale=2.0):
    return (loc + scale * np.random.default_rng(seed).normal(size=(n, d))).astype(np.float32)


def _moments(x):
    return x.mean(axis=0), np.sqrt(x.var(axis=0) + 1e-12)


def _randomized(layer, h, seed=1):
    layer.encode(tf.constant(h), None, None)  # builds
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(0.3 * rng.normal(size=weight.shape).astype(np.float32))
    return layer


def test_the_paper_forms_kl_is_the_closed_form_against_n01_on_the_standardised_input():
    h = _h()
    layer = _randomized(PaperBottleneck(0.2), h)
    kernel, bias = layer.mu.kernel.numpy(), layer.mu.bias.numpy()
    s_kernel, s_bias = layer.log_sigma.kernel.numpy(), layer.log_sigma.bias.numpy()
    center, spread = _moments(h[ROWS])
    means = ((h @ kernel + bias)[ROWS] - center) / spread
    sigma = np.exp((((h - center) / spread) @ s_kernel + s_bias)[ROWS]) + 1e-4
    want = np.mean(np.sum((sigma**2 + means**2 - 1) / 2 - np.log(sigma), axis=1))
    encoding = layer.encode(tf.constant(h), tf.constant(ROWS), SEED)
    np.testing.assert_allclose(float(encoding.kl()), want, rtol=1e-5)
    eps = standard_normal(tf.shape(h), SEED).numpy()
    codes = h @ kernel + bias + spread * (np.exp(((h - center) / spread) @ s_kernel + s_bias) + 1e-4) * eps
    np.testing.assert_allclose(encoding.codes.numpy(), codes, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer(tf.constant(h)).numpy(), h @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_shrinking_the_means_lowers_the_paper_forms_kl():
    h = _h()
    layer = PaperBottleneck(0.5)
    full = float(layer.encode(tf.constant(h), None, None).kl())
    layer.mu.kernel.assign(0.5 * np.eye(5, dtype=np.float32))
    layer.mu.bias.assign(0.5 * h.mean(axis=0))  # means halfway to the centre: m = u / 2
    shrunk = float(layer.encode(tf.constant(h), None, None).kl())
    np.testing.assert_allclose(full - shrunk, 5 * (1 - 0.25) / 2, rtol=1e-4)  # sum_d (1 - 1/4) E[u^2] / 2


def test_the_dvib_kl_is_the_closed_form_averaged_over_items_and_dimensions():
    h = _h(scale=0.5)
    layer = _randomized(DVIBBottleneck(), h)
    x = h
    for dense in layer.noise_network:
        x = x @ dense.kernel.numpy() + dense.bias.numpy()
        x = np.maximum(x, 0) if dense is not layer.noise_network[-1] else 1 / (1 + np.exp(-x))
    sigma = np.maximum(x, 1e-6)  # [n, 1]: one scale per item
    prior = DVIB_PRIOR_SCALE
    per_dim = np.log(prior / sigma) + (sigma**2 + h**2) / (2 * prior**2) - 0.5
    encoding = layer.encode(tf.constant(h), tf.constant(ROWS), SEED)
    np.testing.assert_allclose(float(encoding.kl()), per_dim[ROWS].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(encoding.rate()), per_dim[ROWS].mean(), rtol=1e-5)
    eps = standard_normal(tf.shape(h), SEED).numpy()
    np.testing.assert_allclose(encoding.codes.numpy(), h + sigma * eps, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer(tf.constant(h)).numpy(), h)


def test_the_noise_control_adds_fixed_noise_at_its_scale_of_the_batch_spread_and_has_no_kl():
    h = _h()
    encoding = FixedNoise(0.3).encode(tf.constant(h), tf.constant(ROWS), SEED)
    _, spread = _moments(h[ROWS])
    eps = standard_normal(tf.shape(h), SEED).numpy()
    np.testing.assert_allclose(encoding.codes.numpy(), h + 0.3 * spread * eps, rtol=1e-5, atol=1e-6)
    assert not encoding.has_kl
    np.testing.assert_array_equal(FixedNoise(0.3).encode(tf.constant(h), None, None).codes.numpy(), h)


def test_the_dropout_control_zeroes_entries_at_its_rate_and_rescales_the_rest():
    h = _h(n=4000, d=25, loc=3.0, scale=0.1)
    codes = FeatureDropout(0.2).encode(tf.constant(h), None, SEED).codes.numpy()
    dropped = codes == 0
    assert abs(dropped.mean() - 0.2) < 0.005  # 100,000 entries: the binomial sd is 0.0013
    np.testing.assert_allclose(codes[~dropped], h[~dropped] / 0.8, rtol=1e-6)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_trains_noisy_codes_inside_the_regularizer_and_serves_its_mean_map(form):
    h = {"image": _h(n=30, d=6), "text": _h(n=30, d=4, seed=3)}
    reg = MRdIBRegularizer(["image", "text"], n_users=5, bottleneck=form, seed=0)
    users, pos, neg = (tf.constant(x) for x in ([0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7]))
    codes = reg(h, users=users, pos_rows=pos, neg_rows=neg, training=True)
    assert ("kl" in {m.name for m in reg.metrics}) == (form in ("matched", "paper", "dvib"))
    mu = reg.bottlenecks["image"].mu.weights if form in ("matched", "paper") else []
    rng = np.random.default_rng(4)
    for weight in mu:  # a map other than the identity it starts as
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))
    kernel, bias = (w.numpy() for w in mu) if mu else (None, None)
    want = h["image"] if not mu else (h["image"] * kernel if kernel.ndim == 1 else h["image"] @ kernel) + bias
    np.testing.assert_allclose(reg(h)["image"].numpy(), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(codes["image"].numpy(), h["image"])  # training codes carry the form's noise
    config = reg.get_config()
    assert MRdIBRegularizer.from_config(config).get_config() == config


def test_target_rate_is_refused_on_a_control_and_must_be_positive():
    with pytest.raises(ValueError, match="target_rate needs a form with a KL"):
        MRdIBRegularizer(["a", "b"], n_users=2, bottleneck="noise", target_rate=0.5)
    with pytest.raises(ValueError, match="target_rate must be"):
        MRdIBRegularizer(["a", "b"], n_users=2, target_rate=-1.0)
    with pytest.raises(ValueError, match="bottleneck must be one of"):
        MRdIBRegularizer(["a", "b"], n_users=2, bottleneck="gaussian")


# Reachable targets: under the matched prior the rate is -log sigma + sigma^2 / 2 >= 1/2 (sigma < 1); DVIB's
# means are h itself, so its rate here is at least E[h^2] / (2 x 0.25) + ... = 1.48 nats.
@pytest.mark.parametrize("form, target", [("matched", 1.0), ("paper", 0.3), ("dvib", 2.5)])
def test_the_rate_targeted_weight_holds_its_target_against_a_loss_that_wants_no_noise(form, target):
    """A distortion loss alone drives sigma to its floor (a rate of several nats per dimension); the dual
    ascent must raise the KL's weight until the bottleneck holds `target` nats per dimension."""
    keras.utils.set_random_seed(0)  # DVIB's noise network starts from Keras' unseeded initializers
    h = {"image": tf.constant(_h(n=256, d=4, scale=0.5)), "text": tf.constant(_h(n=256, d=4, seed=5, scale=0.5))}
    reg = MRdIBRegularizer(["image", "text"], n_users=4, alpha_kl=1e-4, alpha_mi=0.0, alpha_unique=0.0,
                           bottleneck=form, target_rate=target, rate_step=0.05, seed=0)
    users, pos, neg = tf.zeros([128], tf.int32), tf.range(128), tf.range(128, 256)  # the KL sees every row
    optimizer = keras.optimizers.Adam(0.02)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            codes = reg(h, users=users, pos_rows=pos, neg_rows=neg, training=True)
            distortion = tf.add_n([tf.reduce_mean(tf.square(codes[m] - h[m])) for m in h]) * 10.0
            loss = distortion + tf.add_n(reg.losses)
        variables = reg.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)
        return tf.stack([reg.bottlenecks[m].encode(h[m], None, None).rate() for m in ("image", "text")])

    rates = np.array([step().numpy() for _ in range(1500)])
    held = rates[-200:].mean(axis=0)
    np.testing.assert_allclose(held, target, rtol=0.1)
    assert float(tf.reduce_min(reg.kl_weights)) > 1e-4  # it had to raise the weight from its start
