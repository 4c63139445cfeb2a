"""The linear probe on frozen codes: it recovers what codes know of the users' items, and nothing from noise."""

import numpy as np
import pytest

from data_pipeline import load_dataset, write_synthetic_dataset
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.metrics import FullRankingEvaluator
from mrdib_tf.experiments.probes import probe_recall, standardized


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe") / "syn"
    truth = write_synthetic_dataset(folder, n_users=300, n_items=200, interactions_per_user=12, seed=4)
    return truth, load_dataset(data_dir=folder, cache_root=folder.parent / "cache")


def test_standardized_centres_and_scales_each_column():
    codes = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    got = standardized(codes)
    np.testing.assert_allclose(got.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(got.std(0), [1.0, 0.0, 1.0], atol=1e-6)


def test_a_probe_on_the_true_factors_nears_the_oracle_and_one_on_noise_does_not(synthetic):
    truth, dataset = synthetic
    factors = np.concatenate([truth.factors[name] for name in truth.predictive], axis=1)
    config = RunConfig(epochs=200, patience=10, batch_size=256, lr=1e-2, seed=1, jit_compile=False)
    oracle = FullRankingEvaluator(dataset.train, dataset.test).evaluate(truth.user_weights, factors)["recall@20"]
    on_factors = probe_recall(dataset, factors, config)["test"]["recall@20"]
    noise = np.random.default_rng(0).normal(size=factors.shape)
    on_noise = probe_recall(dataset, noise, config)["test"]["recall@20"]
    # users score items linearly in these factors, so a linear probe can represent the oracle exactly
    # (from about ten training items per user, so not all the way)
    assert on_factors >= 0.7 * oracle, (on_factors, oracle)
    assert on_noise < 0.5 * on_factors, (on_noise, on_factors)
