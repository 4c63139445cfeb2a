"""`load_trained_run`: a finished run folder back to its best weights, or a clear error."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from mrdib_tf.experiments.models import build_recommender
from mrdib_tf.experiments.runs import load_trained_run
from tests.export_helpers import cache_env, tiny_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    with cache_env(base):
        yield tiny_runs(base)


def _stored_arrays(path) -> list[np.ndarray]:
    """Every model array in a Keras `.weights.h5` file, read with h5py: all but the training optimizer's
    slots (the critics' own optimizer is part of the regularizer's state, so it stays)."""
    arrays = []

    def visit(name, node):
        if isinstance(node, h5py.Dataset) and not name.startswith("optimizer/"):
            arrays.append(node[()])

    with h5py.File(path, "r") as file:
        file.visititems(visit)
    return arrays


def test_every_weight_comes_back_from_the_checkpoint(runs, tmp_path_factory):
    with cache_env(tmp_path_factory.getbasetemp()):
        model, dataset, config, metrics = load_trained_run(runs["mrdib"])
        fresh = build_recommender(dataset, config)
    fresh.build()
    stored = _stored_arrays(runs["mrdib"] / "checkpoints" / "best.weights.h5")
    critic_slots = len(model.regularizer.critic_optimizer.variables)
    assert len(stored) == len(model.weights) + critic_slots
    for variable in model.weights:
        assert any(a.shape == tuple(variable.shape) and np.array_equal(a, variable.numpy()) for a in stored), variable.path
    trained = [v.path for v, f in zip(model.weights, fresh.weights) if not np.array_equal(v.numpy(), f.numpy())]
    assert any("sigma" in p for p in trained) and any("critic" in p for p in trained)  # MRdIB's own, restored too
    assert config.mrdib and metrics == json.loads((runs["mrdib"] / "metrics.json").read_text())
    assert dataset.n_users == model.backbone.n_users


def test_a_run_without_metrics_json_is_unfinished(runs, tmp_path):
    run = shutil.copytree(runs["bare"], tmp_path / "run")
    (run / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"metrics\.json: missing.*still\s+training or was interrupted"):
        load_trained_run(run)


def test_a_checkpoint_of_another_setting_is_rejected(runs, tmp_path, tmp_path_factory):
    run = shutil.copytree(runs["mrdib"], tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "mrdib": False}))
    expected = r"best\.weights\.h5: does not fit the model config\.json describes"
    with cache_env(tmp_path_factory.getbasetemp()), pytest.raises(ValueError, match=expected):
        load_trained_run(run)
