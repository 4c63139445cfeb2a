"""examples/two_tower_mrdib.py: a user's own Keras model with MRdIB, run through its `main`, checked from outside."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from data_pipeline import write_synthetic_dataset
from tests.export_helpers import PROJECT_ROOT, cache_env

EXAMPLE = PROJECT_ROOT / "examples" / "two_tower_mrdib.py"
K = 20


def _load_example():
    spec = importlib.util.spec_from_file_location("two_tower_mrdib", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`main` on a small synthetic dataset; what its `train` saw and returned is recorded on the side."""
    base = tmp_path_factory.mktemp("example")
    folder = base / "syn"
    write_synthetic_dataset(folder, n_users=600, n_items=300, interactions_per_user=15, signal_dims=16,
                            noise_dims=16, seed=3)
    example = _load_example()
    recorded = {}
    real_train = example.train

    def recording_train(dataset, *args, **kwargs):
        recorded["dataset"] = dataset
        recorded["model"], recorded["test"], recorded["history"] = real_train(dataset, *args, **kwargs)
        return recorded["model"], recorded["test"], recorded["history"]

    example.train = recording_train  # main looks `train` up in the module when it runs
    with cache_env(base):
        returned = example.main(["--data-dir", str(folder), "--epochs", "40", "--patience", "3", "--seed", "1"])
    return returned, recorded


def _recall_at_k(users: np.ndarray, items: np.ndarray, train, truth, k: int = K) -> tuple[float, int]:
    """Mean Recall@k over users with truth items, training items masked; plain numpy, float64."""
    scores = users.astype(np.float64) @ items.astype(np.float64).T
    recalls = []
    for u in range(truth.n_users):
        wanted = truth.items_of(u)
        if wanted.size == 0:
            continue
        row = scores[u].copy()
        row[train.items_of(u)] = -np.inf
        top = np.argsort(-row, kind="stable")[:k]
        recalls.append(np.isin(wanted, top).sum() / wanted.size)
    return float(np.mean(recalls)), len(recalls)


def _chance_recall(train, truth, k: int = K) -> float:
    """Expected Recall@k of a uniformly random ranking of each user's unmasked items."""
    n_items = train.n_items
    rates = [min(k, n_items - train.items_of(u).size) / (n_items - train.items_of(u).size)
             for u in range(truth.n_users) if truth.items_of(u).size]
    return float(np.mean(rates))


def test_main_returns_the_test_metrics_of_the_best_epochs_embeddings(run):
    returned, recorded = run
    dataset, model, history = recorded["dataset"], recorded["model"], recorded["history"]
    assert returned == recorded["test"]
    users, items = (t.numpy() for t in model())
    assert users.shape == (dataset.n_users, 64) and items.shape == (dataset.n_items, 64)

    test_recall, n_test = _recall_at_k(users, items, dataset.train, dataset.test)
    # One rank flip at a float32 near-tie is allowed (it moves the mean by at most 1 / users).
    assert returned["recall@20"] == pytest.approx(test_recall, abs=1.0 / n_test + 1e-9)

    # The weights at the end are the best validation epoch's (EarlyStopping restored them).
    valid = history.history["val_recall@20"]
    assert int(np.argmax(valid)) < len(valid) - 1, "the run should stop after its best epoch, so restoring is tested"
    valid_recall, n_valid = _recall_at_k(users, items, dataset.train, dataset.valid)
    assert valid_recall == pytest.approx(max(valid), abs=1.0 / n_valid + 1e-9)


def test_mrdibs_terms_were_trained_and_the_model_beats_chance(run):
    returned, recorded = run
    dataset, logs = recorded["dataset"], recorded["history"].history
    terms = ("loss", "bpr", "kl", "mi_estimate", "unique")
    assert set(terms) <= set(logs)
    assert all(np.isfinite(logs[name]).all() for name in terms)
    # The optimised loss is BPR plus MRdIB's weighted terms: what add_loss put in model.losses was trained.
    # (Keras averages "loss" weighted by batch size, the other terms per step, so a partial last batch
    # makes the two sides differ by a little under 1%.)
    mrdib = recorded["model"].mrdib
    added = (mrdib.alpha_kl * np.array(logs["kl"]) + mrdib.alpha_mi * np.array(logs["mi_estimate"])
             + mrdib.alpha_unique * np.array(logs["unique"]))
    np.testing.assert_allclose(np.array(logs["loss"]) - np.array(logs["bpr"]), added, rtol=0.02)
    assert added.min() > 0.01 * np.array(logs["loss"]).max()
    assert logs["kl"][-1] != pytest.approx(logs["kl"][0], rel=1e-3)  # the bottleneck's sigma trained
    assert logs["unique"][-1] < logs["unique"][0]                      # so did MRdIB's unique heads
    assert logs["loss"][-1] < logs["loss"][0]
    chance = _chance_recall(dataset.train, dataset.test)
    assert returned["recall@20"] > 2.5 * chance, (returned["recall@20"], chance)
