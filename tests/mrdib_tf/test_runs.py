"""`load_trained_run`: a finished run folder back to its best weights, or a clear error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mrdib_tf.runs import load_trained_run
from tests.export_helpers import cache_env, tiny_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    with cache_env(base):
        yield tiny_runs(base)


def test_every_trainable_variable_comes_back_from_the_checkpoint(runs, tmp_path_factory):
    with cache_env(tmp_path_factory.getbasetemp()):
        model, dataset, config, metrics = load_trained_run(runs["mrdib"])
    with np.load(runs["mrdib"] / "checkpoints" / "best.weights.npz") as archive:
        names = [str(n) for n in archive["names"]]
        saved = [archive[f"v{i}"] for i in range(len(names))]
    assert [v.path for v in model.trainable_variables] == names
    for variable, value in zip(model.trainable_variables, saved):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert any("sigma" in n for n in names) and any("critic" in n for n in names)  # MRdIB's own, restored too
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
    expected = r"best\.weights\.npz: Checkpoint holds \d+ variables"
    with cache_env(tmp_path_factory.getbasetemp()), pytest.raises(ValueError, match=expected):
        load_trained_run(run)
