"""MINE pieces: gradient reversal, the stable Donsker-Varadhan bound, the marginal shift, the critic, and
the estimate itself against the closed-form mutual information of correlated Gaussians."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from mrdib_tf.mine import Critic, donsker_varadhan, marginal_shift, mine_lower_bound, reverse_gradient


@pytest.mark.parametrize("jit", [False, True])
def test_reverse_gradient_is_identity_forward_and_negates_backward(jit):
    x = tf.constant([[1.0, -2.0], [3.0, 0.5]])
    w = tf.constant([[2.0, 3.0], [-1.0, 4.0]])

    def value_and_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = reverse_gradient(x)
            loss = tf.reduce_sum(w * y**2)
        return y, tape.gradient(loss, x)

    fn = tf.function(value_and_grad, jit_compile=True) if jit else value_and_grad
    y, grad = fn(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(grad.numpy(), -2.0 * w.numpy() * x.numpy())


def test_donsker_varadhan_matches_numpy():
    rng = np.random.default_rng(0)
    joint, marginal = rng.normal(size=7), rng.normal(size=11)
    expected = joint.mean() - np.log(np.mean(np.exp(marginal)))
    got = donsker_varadhan(tf.constant(joint, tf.float32), tf.constant(marginal, tf.float32))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_donsker_varadhan_is_stable_for_large_scores():
    # exp(1000) overflows float32 (and float64): log mean exp must be taken as logsumexp - log n.
    joint = tf.constant([1.0, 3.0])
    marginal = tf.constant([1000.0, 1000.0, 999.0])
    expected = 2.0 - (1000.0 + np.log((2.0 + np.exp(-1.0)) / 3.0))
    got = tf.function(donsker_varadhan, jit_compile=True)(joint, marginal)
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_marginal_shift_pairs_rows_by_a_reproducible_derangement_under_xla():
    n = 50
    shift = tf.function(marginal_shift, jit_compile=True)
    first = int(shift(n, tf.constant([1, 2])))
    pairing = tf.roll(tf.range(n), first, axis=0).numpy()  # row j is paired with row pairing[j]
    np.testing.assert_array_equal(np.sort(pairing), np.arange(n))  # a permutation
    assert not np.any(pairing == np.arange(n))  # with no fixed point: no row paired with itself
    assert int(shift(n, tf.constant([1, 2]))) == first
    assert len({int(shift(n, tf.constant([1, s]))) for s in range(20)}) > 10


def test_marginal_shift_is_uniform_over_the_derangements():
    n, draws = 7, 6000
    shifts = np.array([int(marginal_shift(n, tf.constant([s, 9]))) for s in range(draws)])
    assert shifts.min() >= 1 and shifts.max() <= n - 1
    counts = np.bincount(shifts, minlength=n)[1:]
    expected = draws / (n - 1)
    chi_square = np.sum((counts - expected) ** 2 / expected)
    assert chi_square < 20.5, counts  # 5 degrees of freedom: p ~ 0.001
    assert int(marginal_shift(1, tf.constant([1, 2]))) == 0  # one row: nothing else to pair with


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def test_critic_is_an_elu_mlp_on_the_concatenation():
    critic = Critic(units=5, seed=3)
    a = np.random.default_rng(1).normal(size=(4, 2)).astype(np.float32)
    b = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    got = critic(a, b).numpy()
    x = np.concatenate([a, b], axis=1)
    for layer in critic.hidden:
        kernel, bias = (v.numpy() for v in layer.weights)
        x = _elu(x @ kernel + bias)
    kernel, bias = (v.numpy() for v in critic.score.weights)
    np.testing.assert_allclose(got, (x @ kernel + bias)[:, 0], rtol=1e-5, atol=1e-6)
    assert got.shape == (4,)


def test_joint_and_marginal_scores_are_the_critic_on_the_pairs_and_on_the_shifted_pairs():
    critic = Critic(units=5, seed=3)
    a = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    b = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    joint, marginal = tf.function(critic.joint_and_marginal, jit_compile=True)(a, b, tf.constant(2))

    def mlp(a, b):
        x = np.concatenate([a, b], axis=1)
        for layer in critic.hidden:
            kernel, bias = (v.numpy() for v in layer.weights)
            x = _elu(x @ kernel + bias)
        kernel, bias = (v.numpy() for v in critic.score.weights)
        return (x @ kernel + bias)[:, 0]

    np.testing.assert_allclose(joint.numpy(), mlp(a, b), rtol=1e-5, atol=1e-6)
    # row j meets b[(j - 2) mod 6]
    np.testing.assert_allclose(marginal.numpy(), mlp(a, b[(np.arange(6) - 2) % 6]), rtol=1e-5, atol=1e-6)


def test_critic_seed_fixes_its_initial_weights():
    a, b = tf.ones([2, 2]), tf.ones([2, 2])
    first, second, other = Critic(8, seed=4), Critic(8, seed=4), Critic(8, seed=5)
    for critic in (first, second, other):
        critic(a, b)
    np.testing.assert_array_equal(first.hidden[0].kernel.numpy(), second.hidden[0].kernel.numpy())
    assert not np.array_equal(first.hidden[0].kernel.numpy(), other.hidden[0].kernel.numpy())
    assert not np.array_equal(first.hidden[0].kernel.numpy(), first.hidden[1].kernel.numpy()[:4])


def _correlated_gaussians(n: int, dims: int, rho: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """x ~ N(0, I); y = rho x + sqrt(1 - rho^2) e: per-dimension correlation rho, unit variances."""
    x = tf.random.stateless_normal([n, dims], seed=seed)
    noise = tf.random.stateless_normal([n, dims], seed=seed + 1000)
    return x, rho * x + tf.sqrt(1.0 - rho**2) * noise


def _train_critic_alone(rho: float, dims: int = 2, steps: int = 400, batch: int = 256) -> float:
    """Adam on the critic only (fresh samples each step), then the bound on 20,000 held-out pairs."""
    critic = Critic(units=64, seed=0)
    optimizer = keras.optimizers.Adam(3e-3)
    rho = tf.constant(rho)
    critic(*_correlated_gaussians(2, dims, rho, tf.constant([0, 0])))
    optimizer.build(critic.trainable_variables)

    @tf.function  # not jit_compile: XLA compilation would cost more than the steps (XLA is tested above)
    def step(i):
        x, y = _correlated_gaussians(batch, dims, rho, tf.stack([i, 1]))
        with tf.GradientTape() as tape:
            loss = -mine_lower_bound(critic, x, y, tf.stack([i, 2]))
        optimizer.apply_gradients(zip(tape.gradient(loss, critic.trainable_variables), critic.trainable_variables))

    for i in range(steps):
        step(tf.constant(i))
    x, y = _correlated_gaussians(20_000, dims, rho, tf.constant([12345, 7]))
    return float(mine_lower_bound(critic, x, y, tf.constant([3, 4])))


def test_mine_approaches_the_mutual_information_of_correlated_gaussians():
    dims, rho = 2, 0.8
    true_mi = -dims / 2 * np.log(1 - rho**2)  # 1.022 nats
    estimate = _train_critic_alone(rho, dims)
    # Donsker-Varadhan is a lower bound: a trained critic gets close from below; held-out data keeps the
    # estimate from overshooting beyond sampling noise.
    assert 0.75 * true_mi <= estimate <= true_mi + 0.05, (estimate, true_mi)


def test_mine_is_near_zero_on_independent_inputs():
    estimate = _train_critic_alone(0.0)
    assert abs(estimate) < 0.05, estimate
