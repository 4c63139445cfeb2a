"""examples/two_tower_mrdib.py: a user's own Keras model with MRdIB, trained by Model.fit, checked from outside."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from data_pipeline import load_dataset, write_synthetic_dataset
from mrdib_tf.metrics import evaluate_scores
from tests.export_helpers import PROJECT_ROOT, cache_env

EXAMPLE = PROJECT_ROOT / "examples" / "two_tower_mrdib.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("two_tower_mrdib", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("example")
    folder = base / "syn"
    write_synthetic_dataset(folder, n_users=200, n_items=120, interactions_per_user=10, signal_dims=16,
                            noise_dims=8, seed=4)
    with cache_env(base):
        dataset = load_dataset(data_dir=folder)
        model, test, history = _load_example().train(dataset, epochs=12, patience=12, seed=1, verbose=False)
    return dataset, model, test, history


def _per_user(user_items):
    return [user_items.items_of(u).tolist() for u in range(user_items.n_users)]


def test_the_reported_test_metrics_are_those_of_the_best_epochs_embeddings(trained):
    dataset, model, test, history = trained
    users, items = (t.numpy() for t in model())
    expected = evaluate_scores(users @ items.T, _per_user(dataset.train), _per_user(dataset.test))
    for name, value in expected.items():
        assert test[name] == pytest.approx(value, abs=1e-6), name
    best = int(np.argmax(history.history["val_recall@20"]))
    valid = evaluate_scores(users @ items.T, _per_user(dataset.train), _per_user(dataset.valid))
    assert valid["recall@20"] == pytest.approx(history.history["val_recall@20"][best], abs=1e-6)


def test_model_fit_trained_mrdibs_terms_and_the_model_learned(trained):
    dataset, model, test, history = trained
    logs = history.history
    assert {"kl", "mi_estimate", "unique"} <= set(logs)
    assert logs["kl"][-1] != pytest.approx(logs["kl"][0], rel=1e-3)   # the bottleneck trained
    assert logs["unique"][-1] < logs["unique"][0]                       # so did the unique heads
    chance = 20 / dataset.n_items                                       # recall@20 of a random ranking
    assert max(logs["val_recall@20"]) > 1.5 * chance
