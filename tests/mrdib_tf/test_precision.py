"""Mixed precision: the dense layers compute in float16 and hand on float32; everything else stays float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import load_dataset
from mrdib_tf.backbones import MGCN, VBPR
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.training import train
from mrdib_tf.precision import MIXED_POLICY, Dense
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer


@pytest.fixture
def mixed_policy():
    keras.mixed_precision.set_global_policy(MIXED_POLICY)
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_dense_computes_in_float16_and_returns_float32(mixed_policy):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(64, 300)).astype(np.float32)
    layer = Dense(16, kernel_initializer=keras.initializers.RandomNormal(seed=1), bias_initializer="ones")
    outputs = layer(inputs)
    kernel = layer.kernel.numpy()
    half = np.float16(inputs).astype(np.float32) @ np.float16(kernel).astype(np.float32) + 1.0
    full = inputs @ kernel + 1.0
    assert outputs.dtype == tf.float32 and layer.kernel.dtype == "float32"
    np.testing.assert_allclose(outputs.numpy(), half, rtol=2e-3, atol=2e-2)  # float16 operands and result
    assert np.abs(outputs.numpy() - full).max() > 1e-3  # so not a float32 matmul


def test_outside_the_policy_dense_is_keras_dense():
    inputs = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    # Seeded: a random kernel can put an output near 0, where an rtol-only comparison fails on rounding.
    layer = Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=2))
    np.testing.assert_allclose(layer(inputs).numpy(), inputs @ layer.kernel.numpy() + layer.bias.numpy(), rtol=1e-6)


def test_under_the_policy_only_dense_layers_compute_in_float16(mixed_policy):
    features = {m: np.random.default_rng(k).normal(size=(8, 6)).astype(np.float32) for k, m in enumerate("ab")}
    model = Recommender(VBPR(5, 8, features, embedding_dim=3),
                        MRdIBRegularizer(["a", "b"], n_users=5, seed=0))
    users, items = model.final_embeddings()
    assert users.dtype == items.dtype == tf.float32
    layers = list(model._flatten_layers())
    half = {layer.name for layer in layers if layer.compute_dtype == "float16"}
    assert half == {layer.name for layer in layers if isinstance(layer, Dense)} and half  # projections, mu, sigma
    assert all(v.dtype == "float32" for v in model.variables if v.dtype.startswith("float"))


@pytest.mark.parametrize("backbone", ["vbpr", "mgcn"])
def test_a_mixed_precision_run_trains_as_the_float32_run_does(tiny_folder, tmp_path, backbone):
    config = RunConfig(data_dir=str(tiny_folder), backbone=backbone, epochs=3, patience=3, batch_size=64, seed=2)
    runs = {}
    try:
        for mixed in (False, True):
            result, _ = train(config.replace(mixed_precision=mixed, run_dir=str(tmp_path / str(mixed))), verbose=False)
            runs[mixed] = result
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for full, mixed in zip(runs[False].history, runs[True].history, strict=True):
        for name in ("loss", "ranking", "kl"):
            assert mixed[name] == pytest.approx(full[name], rel=1e-2), name
        assert mixed["valid_recall@20"] == pytest.approx(full["valid_recall@20"], abs=0.03)
    assert runs[True].history[0]["kl"] != runs[False].history[0]["kl"]  # the bottleneck's matmuls were float16
