"""Training on `Model.fit` with several steps per compiled call trains exactly what one step per call does."""

import numpy as np
import pytest

from data_pipeline import load_dataset
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.runs import load_trained_run
from mrdib_tf.experiments.training import train, whole_epoch_execution


@pytest.mark.parametrize("steps, limit, expected", [(30, 16, 15), (4, 10, 4), (7, 4, 1), (12, 5, 4), (1, 16, 1),
                                                    (64, 16, 16)])
def test_whole_epoch_execution_is_the_largest_divisor_within_the_limit(steps, limit, expected):
    assert whole_epoch_execution(steps, limit) == expected


def test_whole_epoch_execution_rejects_empty_epochs():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        whole_epoch_execution(0, 16)


def test_several_steps_per_call_give_the_one_step_runs_losses_and_weights(tiny_folder, tmp_path):
    dataset = load_dataset(data_dir=tiny_folder)
    base = RunConfig(data_dir=str(tiny_folder), backbone="vbpr", epochs=3, patience=3, batch_size=64, seed=11)
    steps = dataset.steps_per_epoch(base.batch_size)
    limit = 5
    assert steps % limit != 0 and whole_epoch_execution(steps, limit) > 1  # the case that needs the divisor

    runs = {}
    for per_call in (1, limit):
        config = base.replace(steps_per_execution=per_call, run_dir=str(tmp_path / f"run-{per_call}"))
        result, run_dir = train(config, verbose=False)
        runs[per_call] = (result, [w.numpy() for w in load_trained_run(run_dir).model.weights])

    (one, one_weights), (several, several_weights) = runs[1], runs[limit]
    for epoch_one, epoch_several in zip(one.history, several.history, strict=True):
        assert epoch_several.keys() == epoch_one.keys() and {"loss", "kl", "valid_recall@20"} <= epoch_one.keys()
        for name in epoch_one.keys() - {"valid_seconds"}:
            assert epoch_several[name] == pytest.approx(epoch_one[name], rel=1e-6), name
    assert several.test == pytest.approx(one.test, rel=1e-6)
    for a, b in zip(one_weights, several_weights, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_training_redraws_freedoms_graph_before_every_epoch_from_the_epoch_index(tiny_folder, tmp_path, monkeypatch):
    from mrdib_tf.backbones import FREEDOM

    drawn = []
    original = FREEDOM.begin_epoch
    monkeypatch.setattr(FREEDOM, "begin_epoch", lambda self, epoch: (drawn.append(epoch), original(self, epoch)))
    config = RunConfig(data_dir=str(tiny_folder), backbone="freedom", mrdib=False, epochs=3, patience=3,
                       batch_size=128, edge_dropout=0.5, run_dir=str(tmp_path / "run"))
    result, _ = train(config, verbose=False)
    assert drawn == [0, 1, 2] and len(result.history) == 3


def test_learning_rate_decays_per_epoch_as_mmrecs_scheduler(tiny_folder, tmp_path):
    config = RunConfig(data_dir=str(tiny_folder), backbone="vbpr", mrdib=False, epochs=3, patience=3,
                       batch_size=128, lr=0.01, lr_decay=0.25, lr_decay_epochs=2.0, run_dir=str(tmp_path / "run"))
    result, _ = train(config, verbose=False)
    # epoch e (from 0) trains at 0.01 x 0.25^(e / 2): 0.01, 0.005, 0.0025
    assert [row["learning_rate"] for row in result.history] == pytest.approx([0.01, 0.005, 0.0025], rel=1e-6)
