"""The redundancy term's estimator: InfoNCE with a separable critic on standardised codes.

The bound and the critic are checked against numpy; the estimate, trained as training trains it (its
own Adam, one fresh batch per training step), against the closed-form mutual information of correlated
Gaussians at MGCN's code scale, where an untrained or unstandardised critic measures nothing.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf import mine
from mrdib_tf.mine import (
    CRITIC_LEARNING_RATE,
    Critic,
    info_nce,
    mutual_information,
    standardize,
)
from mrdib_tf.regularizer import CRITIC_ROWS
from mrdib_tf.sampling import standard_normal


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _numpy_embed(x, tower, epsilon):
    x = (x - x.mean(0)) / np.sqrt(x.var(0) + epsilon)
    hidden = x
    for kernel, bias in tower.layers[:-1]:
        hidden = _elu(hidden @ kernel.numpy() + bias.numpy())
    kernel, bias = tower.layers[-1]
    return hidden @ kernel.numpy() + (0 if bias is None else bias.numpy()) + x @ tower.skip.numpy()


def _randomize(critic):
    """Random values for every variable (the zero-initialised ones too), so that every term is checked."""
    rng = np.random.default_rng(9)
    for variable in critic.weights:
        variable.assign(rng.normal(scale=0.3, size=variable.shape).astype(np.float32))


def test_info_nce_matches_numpy():
    scores = np.random.default_rng(0).normal(size=(3, 4, 4))
    expected = np.log(4) + np.mean(
        [scores[k, i, i] - np.log(np.sum(np.exp(scores[k, i]))) for k in range(3) for i in range(4)]
    )
    np.testing.assert_allclose(float(info_nce(tf.constant(scores, tf.float32))), expected, rtol=1e-5)


def test_standardize_gives_zero_mean_unit_variance_columns_and_an_affine_invariant_gradient():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(50, 3)) * [0.003, 1.0, 40.0] + [0.02, -1.0, 3.0], tf.float32)
    weights = tf.constant(rng.normal(size=(50, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = standardize(x, 1e-12)
        loss = tf.reduce_sum(weights * tf.tanh(y))
    np.testing.assert_allclose(y.numpy().mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.numpy().std(0), 1.0, rtol=1e-4)
    gradient = tape.gradient(loss, x).numpy().astype(np.float64)
    centred = x.numpy() - x.numpy().mean(0)
    # d/dt loss(x + t 1 c) = 0 and d/dt loss(x + t (x - mean) diag(c)) = 0 for every column: the gradient
    # has no component along a shift or a rescaling of any column (it would with stopped statistics)
    scale = np.abs(gradient).sum(0)
    np.testing.assert_allclose(gradient.sum(0) / scale, 0.0, atol=1e-4)
    np.testing.assert_allclose((gradient * centred).sum(0) / (np.abs(gradient * centred).sum(0)), 0.0, atol=1e-4)


def test_critic_scores_are_dot_products_of_the_towers_within_blocks():
    critic = Critic(units=5, embedding_dim=4, block_size=3, seed=3)
    a = np.random.default_rng(1).normal(size=(7, 2)).astype(np.float32)
    b = np.random.default_rng(2).normal(size=(7, 3)).astype(np.float32)
    critic(a, b)
    _randomize(critic)
    scores = critic(a, b).numpy()
    # 7 rows, blocks of at most 3: ceil(7 / 3) = 3 blocks of 7 // 3 = 2 rows; row 6 is left out
    fa = _numpy_embed(a, critic.tower_a, critic.epsilon)[:6].reshape(3, 2, 4)
    gb = _numpy_embed(b, critic.tower_b, critic.epsilon)[:6].reshape(3, 2, 4)
    np.testing.assert_allclose(scores, fa @ gb.transpose(0, 2, 1), rtol=1e-4, atol=1e-5)


def test_untrained_critic_scores_zero():
    critic = Critic(seed=0)
    a, b = tf.random.normal([64, 5]), tf.random.normal([64, 6])
    np.testing.assert_array_equal(critic(a, b).numpy(), 0.0)
    assert float(mutual_information(critic, a, b)) == pytest.approx(0.0, abs=1e-6)


def test_every_variable_is_created_in_build():
    critic = Critic(units=8, embedding_dim=6, seed=0)
    assert critic.weights == []
    critic.build((None, 5), (None, 7))
    shapes = {v.path.split("/")[-1]: tuple(v.shape) for v in critic.weights}
    assert shapes == {
        "a_kernel_0": (5, 8), "a_bias_0": (8,), "a_kernel_1": (8, 8), "a_bias_1": (8,),
        "a_kernel_2": (8, 6), "a_bias_2": (6,), "a_skip": (5, 6),
        "b_kernel_0": (7, 8), "b_bias_0": (8,), "b_kernel_1": (8, 8), "b_bias_1": (8,),
        "b_kernel_2": (8, 6), "b_skip": (7, 6),
    }
    tf.function(lambda a, b: mutual_information(critic, a, b), jit_compile=True)(tf.ones([4, 5]), tf.ones([4, 7]))
    assert len(critic.weights) == 13


def test_critic_seed_fixes_its_initial_weights():
    first, second, other = Critic(8, seed=4), Critic(8, seed=4), Critic(8, seed=5)
    for critic in (first, second, other):
        critic.build((None, 3), (None, 3))
    np.testing.assert_array_equal(first.tower_b.skip.numpy(), second.tower_b.skip.numpy())
    assert not np.array_equal(first.tower_b.skip.numpy(), other.tower_b.skip.numpy())


@pytest.mark.parametrize("kwargs", [{"units": 0}, {"embedding_dim": -1}, {"block_size": 1.5}, {"epsilon": 0.0}])
def test_critic_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Critic(**kwargs)


def _value_and_gradients(critic, a, b):
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        value = mutual_information(critic, a, b)
    return value, tape.gradient(value, [a, b, *critic.trainable_variables])


def test_xla_and_eager_agree_on_the_estimate_and_its_gradients():
    critic = Critic(units=16, embedding_dim=8, block_size=32, seed=1)
    a = tf.random.stateless_normal([96, 8], seed=[1, 2]) * 0.003
    b = a + tf.random.stateless_normal([96, 8], seed=[1, 3]) * 0.003
    critic(a, b)
    _randomize(critic)
    eager = _value_and_gradients(critic, a, b)
    compiled = tf.function(lambda a, b: _value_and_gradients(critic, a, b), jit_compile=True)(a, b)
    np.testing.assert_allclose(float(compiled[0]), float(eager[0]), rtol=1e-4)
    assert len(eager[1]) == 2 + 13
    for got, expected in zip(compiled[1], eager[1]):
        assert np.all(np.isfinite(expected.numpy())) and np.any(expected.numpy() != 0)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=2e-3, atol=1e-4 * np.abs(expected).max())


def test_the_estimate_is_invariant_to_per_dimension_affine_maps():
    critic = Critic(units=16, embedding_dim=8, seed=2)
    a = tf.random.stateless_normal([512, 8], seed=[2, 1])
    b = 0.7 * a + tf.random.stateless_normal([512, 8], seed=[2, 2])
    critic(a, b)
    _randomize(critic)
    scales = tf.constant([0.0025, 0.01, 1.0, 30.0, 0.0025, 2.0, 0.5, 0.003])
    value, (grad_a, grad_b, *_) = _value_and_gradients(critic, a, b)
    mapped, (mapped_grad_a, *_) = _value_and_gradients(critic, a * scales + 0.02, b * scales[::-1] - 3.0)
    np.testing.assert_allclose(float(mapped), float(value), rtol=1e-3)
    # chain rule: the gradient w.r.t. a column scaled by s is the original gradient divided by s
    np.testing.assert_allclose((mapped_grad_a * scales).numpy(), grad_a.numpy(), rtol=1e-2,
                               atol=1e-3 * np.abs(grad_a.numpy()).max())


DIMS, BATCH = 8, 512


def _pair(seed, rho, scale=0.0025, offset=0.01, rows=BATCH):
    """rows of 8-d Gaussians with per-dimension correlation rho, scaled (MGCN's code scale) and offset."""
    x = standard_normal([rows, DIMS], seed)
    y = rho * x + math.sqrt(1 - rho**2) * standard_normal([rows, DIMS], seed + tf.constant([0, 1]))
    return scale * x + offset, scale * y - offset


def _train_as_training_does(critic, rho, steps):
    """The critic's own Adam at CRITIC_LEARNING_RATE, one update per fresh batch of the rows MRdIB's critics
    score in a training step (`CRITIC_ROWS`)."""
    optimizer = keras.optimizers.Adam(CRITIC_LEARNING_RATE)

    @tf.function(jit_compile=True)
    def training_step(step):
        a, b = _pair(tf.stack([step, 0]), rho, rows=CRITIC_ROWS)
        with tf.GradientTape() as tape:
            loss = -mutual_information(critic, a, b)
        gradients = tape.gradient(loss, critic.trainable_variables)
        optimizer.apply_gradients(zip(gradients, critic.trainable_variables))

    for step in range(steps):
        training_step(tf.constant(step))


def _held_out_estimate(critic, rho):
    return float(mutual_information(critic, *_pair(tf.constant([-1, 0]), rho, rows=16 * BATCH)))


TRUE_MI = 1.0
RHO = math.sqrt(1 - math.exp(-2 * TRUE_MI / DIMS))  # -DIMS/2 log(1 - rho^2) = TRUE_MI


def _critic():
    # twice the codes' width: room for the MLP's part of the scores beside the skip's bilinear form
    return Critic(embedding_dim=2 * DIMS, seed=0)


def test_the_estimate_trained_as_training_trains_it_reaches_the_mutual_information_at_a_small_scale():
    critic = _critic()
    critic.build((None, DIMS), (None, DIMS))
    untrained = _held_out_estimate(critic, RHO)
    _train_as_training_does(critic, RHO, steps=TRAINING_STEPS)
    trained = _held_out_estimate(critic, RHO)
    assert abs(untrained - TRUE_MI) > 0.5 * TRUE_MI, untrained
    assert abs(trained - TRUE_MI) < 0.1 * TRUE_MI, trained


def test_without_standardising_the_same_training_measures_almost_nothing_at_that_scale(monkeypatch):
    monkeypatch.setattr(mine, "standardize", lambda x, epsilon: x)
    critic = _critic()
    critic.build((None, DIMS), (None, DIMS))
    _train_as_training_does(critic, RHO, steps=TRAINING_STEPS)
    assert _held_out_estimate(critic, RHO) < 0.5 * TRUE_MI


def test_the_estimate_is_near_zero_on_independent_inputs():
    critic = _critic()
    critic.build((None, DIMS), (None, DIMS))
    _train_as_training_does(critic, 0.0, steps=TRAINING_STEPS)
    assert abs(_held_out_estimate(critic, 0.0)) < 0.03


TRAINING_STEPS = 300


def test_a_model_holding_the_critic_round_trips_through_keras_saving(tmp_path):
    critic = Critic(units=8, embedding_dim=4, block_size=5, epsilon=1e-9, seed=7, name="critic")
    config = critic.get_config()
    assert Critic.from_config(config).get_config() == config
    a_in, b_in = keras.Input((3,)), keras.Input((2,))
    model = keras.Model([a_in, b_in], critic(a_in, b_in))
    _randomize(critic)
    a = np.random.default_rng(3).normal(size=(10, 3)).astype(np.float32)
    b = np.random.default_rng(4).normal(size=(10, 2)).astype(np.float32)
    expected = model([a, b]).numpy()
    assert expected.shape == (2, 5, 5)
    model.save(tmp_path / "critic.keras")
    reloaded = keras.saving.load_model(tmp_path / "critic.keras")
    layer = reloaded.get_layer("critic")
    assert isinstance(layer, Critic) and layer.get_config() == config
    np.testing.assert_allclose(reloaded([a, b]).numpy(), expected, rtol=1e-6)


def test_rows_of_a_repeated_item_are_not_each_others_negatives():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(1, 4, 4))
    items = np.array([7, 2, 7, 5])
    same = items[:, None] == items[None, :]
    got = float(info_nce(tf.constant(scores), tf.constant(same[None])))
    want = []
    for i in range(4):
        candidates = [j for j in range(4) if j == i or items[j] != items[i]]
        want.append(scores[0, i, i] - np.log(np.exp(scores[0, i, candidates]).sum()) + np.log(len(candidates)))
    np.testing.assert_allclose(got, np.mean(want), rtol=1e-6)
    critic = Critic(units=4, embedding_dim=3, block_size=2, seed=0)
    a, b = tf.constant(rng.normal(size=(4, 3)), tf.float32), tf.constant(rng.normal(size=(4, 3)), tf.float32)
    critic(a, b)
    for variable in critic.trainable_variables:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    blocked = critic(a, b).numpy()  # blocks [0, 1] and [2, 3]: items 7, 2 and 7, 5 have no repeat within a block
    np.testing.assert_allclose(float(mutual_information(critic, a, b, tf.constant(items))),
                               float(info_nce(tf.constant(blocked))), rtol=1e-6)
    critic.block_size = 4  # one block: item 7's two rows are masked from each other
    np.testing.assert_allclose(float(mutual_information(critic, a, b, tf.constant(items))),
                               float(info_nce(critic(a, b), tf.constant(same[None]))), rtol=1e-6)
