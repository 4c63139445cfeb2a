"""The strategy settings, the chief and its workers' folders, and the critics' step moved after the model's.

The distributed runs themselves are in tests/trainers/test_distributed_fit.py (each needs its own process).
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import load_dataset
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.distribution import compile_limits, is_chief, make_strategy, worker_run_dir
from mrdib_tf.experiments.models import build_recommender
from mrdib_tf.experiments.training import compile_for_training


def test_an_unknown_strategy_is_refused_when_the_config_is_made():
    with pytest.raises(ValueError, match="`strategy` must be one of default, mirrored, multi-worker"):
        RunConfig(strategy="parameter-server")


def test_multi_worker_without_tf_config_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multi-worker")


def test_one_device_keeps_xla_and_several_steps_per_call():
    assert compile_limits(tf.distribute.get_strategy(), True, 16) == (True, 16)


def _tf_config(monkeypatch, cluster: dict, task_type: str, index: int) -> None:
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))


@pytest.mark.parametrize("cluster, task_type, index, chief", [
    ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
    ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
])
def test_the_chief_is_the_chief_task_else_worker_zero(monkeypatch, cluster, task_type, index, chief):
    _tf_config(monkeypatch, cluster, task_type, index)
    assert is_chief() is chief


def test_outside_a_cluster_the_process_is_the_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief()


def test_a_workers_state_sits_beside_the_run_folder(monkeypatch, tmp_path):
    _tf_config(monkeypatch, {"worker": ["a:1", "b:1", "c:1"]}, "worker", 2)
    assert worker_run_dir(tmp_path / "runs" / "sports") == tmp_path / "runs" / "sports.worker-2"


def test_the_critics_step_from_the_models_gradient_equals_their_own_step(tiny_folder, monkeypatch):
    """`Recommender` takes MRdIB's critic step from the gradient of its own loss; the layer's step inside
    `call` (before the model's update), and `train_critics` after it, are the same step: the critics
    train on codes without gradient, and the model's update leaves them alone."""
    dataset = load_dataset(data_dir=tiny_folder)
    config = RunConfig(data_dir=str(tiny_folder), backbone="vbpr", batch_size=64, seed=4, jit_compile=False)
    batches = dataset.train_epochs(config.batch_size, config.seed)
    steps = dataset.steps_per_epoch(config.batch_size)
    weights = {}
    for mode in ("in call", "after the model's", "from the model's gradient"):
        keras.utils.set_random_seed(config.seed)
        model = build_recommender(dataset, config)
        model.regularizer.critic_step_in_call = mode == "in call"
        fused = mode == "from the model's gradient"
        monkeypatch.setattr(model, "_critic_step_from_model_gradient", lambda fused=fused: fused)
        monkeypatch.setattr(model.regularizer, "train_critics", _counted(model.regularizer.train_critics))
        monkeypatch.setattr(model.regularizer, "apply_critic_gradients",
                            _counted(model.regularizer.apply_critic_gradients))
        compile_for_training(model, config, steps)
        model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        assert model.regularizer.train_critics.calls == (1 if mode == "after the model's" else 0)
        assert model.regularizer.apply_critic_gradients.calls == (1 if fused else 0)  # traced once
        weights[mode] = [v.numpy() for v in model.regularizer.critic_variables + model.trainable_variables]
    # Equal up to float32 rounding (the fused gradient is multiplied by alpha_mi, then divided by it), which
    # Adam's first steps magnify where a gradient is near its epsilon; the critics moved by about 1e-2.
    for mode, tolerance in (("after the model's", 1e-6), ("from the model's gradient", 3e-5)):
        moved = [np.abs(a - b).max() for a, b in zip(weights["in call"], weights[mode], strict=True)]
        assert max(moved) < tolerance, mode
    keras.utils.set_random_seed(config.seed)
    untrained = build_recommender(dataset, config)
    untrained.build()
    critic_change = np.abs(weights["from the model's gradient"][0] - untrained.regularizer.critic_variables[0].numpy())
    assert critic_change.max() > 5e-3  # the critics did train


def _counted(function):
    """`function`, counting its calls (Python calls: under tf.function, the traces)."""
    def counted(*args, **kwargs):
        counted.calls += 1
        return function(*args, **kwargs)
    counted.calls = 0
    return counted
