"""Run folders: reading, reuse instead of retraining, and the one aggregation over seeds (hand-computed)."""

import json
import math

import pytest

from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.results import (
    RunSummary, aggregate, experiment_settings, find_runs, markdown_table, mean_std_cell, read_run, train_or_reuse,
)
from tests.run_folders import write_run_folder

BASE = RunConfig(dataset="fake", seed=3, alpha_kl=0.01, alpha_mi=0.02, alpha_unique=0.03)


def test_aggregate_gives_mean_and_sample_std_per_group_in_first_seen_order():
    runs = [("a", {"r": 0.10, "n": 1.0}), ("b", {"r": 0.20, "n": 2.0}),
            ("a", {"r": 0.12, "n": 3.0}), ("a", {"r": 0.17, "n": 5.0})]
    a, b = aggregate(runs, ["r", "n"])
    assert (a.key, a.n, b.key, b.n) == ("a", 3, "b", 1)
    # r: mean 0.13, deviations -0.03, -0.01, 0.04 -> squares sum 0.0026 -> / (3 - 1) -> sqrt 0.0013
    assert a.mean["r"] == pytest.approx(0.13)
    assert a.std["r"] == pytest.approx(math.sqrt(0.0013))
    # n: mean 3, deviations -2, 0, 2 -> 8 / 2 = 4 -> 2
    assert (a.mean["n"], a.std["n"]) == (pytest.approx(3.0), pytest.approx(2.0))
    assert b.mean == {"r": 0.20, "n": 2.0} and b.std == {"r": None, "n": None}


def test_aggregate_names_the_group_missing_a_metric():
    with pytest.raises(ValueError, match=r"group 'x' has no \['ndcg@20'\]"):
        aggregate([("x", {"recall@20": 0.1})], ["recall@20", "ndcg@20"])


def test_cells_and_tables():
    assert mean_std_cell(0.13, math.sqrt(0.0013)) == "0.1300 ± 0.0361"
    assert mean_std_cell(0.2, None) == "0.2000"
    assert markdown_table(["a", "b"], [[1, "x|y"]]) == "| a | b |\n| --- | --- |\n| 1 | x\\|y |\n"


def test_read_run_summarises_metrics_json(tmp_path):
    folder = write_run_folder(tmp_path / "run", BASE, test={"recall@20": 0.3}, valid={"recall@20": 0.4}, epochs=4)
    record = read_run(folder)
    assert record.config == BASE.replace(run_dir=str(folder))
    assert record.summary == RunSummary(best_epoch=2, valid={"recall@20": 0.4}, test={"recall@20": 0.3},
                                        epochs=4, seconds=4 * 1.25)


def test_read_run_names_the_missing_or_broken_file(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(BASE.to_json())
    with pytest.raises(ValueError, match=r"run/metrics.json: missing"):
        read_run(tmp_path / "run")
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"valid": {}}))
    with pytest.raises(ValueError, match=r"metrics.json: missing \['best_epoch', 'test'"):
        read_run(tmp_path / "run")


def _fit_result(value):
    from mrdib_tf.experiments.training import FitResult

    return FitResult(best_epoch=1, valid={"recall@20": value}, test={"recall@20": value},
                     epoch_seconds=[1.0], eval_seconds=[0.5])


def test_train_or_reuse_reuses_a_finished_run_and_trains_an_unfinished_one(tmp_path):
    calls = []

    def train_fn(config):
        calls.append(config)
        return _fit_result(0.5)

    config = BASE.replace(run_dir=str(tmp_path / "done"))
    write_run_folder(tmp_path / "done", config, test={"recall@20": 0.25})
    summary, reused = train_or_reuse(config, train_fn)
    assert (summary.test, reused, calls) == ({"recall@20": 0.25}, True, [])

    interrupted = BASE.replace(run_dir=str(tmp_path / "interrupted"))
    (tmp_path / "interrupted").mkdir()
    (tmp_path / "interrupted" / "config.json").write_text(interrupted.to_json())  # no metrics.json
    summary, reused = train_or_reuse(interrupted, train_fn)
    assert (summary.test, summary.epochs, summary.seconds) == ({"recall@20": 0.5}, 1, 1.5)
    assert (reused, calls) == (False, [interrupted])


def test_train_or_reuse_refuses_a_folder_holding_another_run(tmp_path):
    write_run_folder(tmp_path / "done", BASE, test={"recall@20": 0.25})
    with pytest.raises(ValueError, match=r"alpha_kl: 0.01 there, 0.5 now"):
        train_or_reuse(BASE.replace(alpha_kl=0.5, run_dir=str(tmp_path / "done")), lambda c: None)


def test_find_runs_walks_folders_and_refuses_empty_ones(tmp_path):
    a = write_run_folder(tmp_path / "x" / "a" / "seed-1", BASE, test={"recall@20": 0.1})
    b = write_run_folder(tmp_path / "x" / "b", BASE, test={"recall@20": 0.1})
    (tmp_path / "x" / "unfinished").mkdir()
    (tmp_path / "x" / "unfinished" / "config.json").write_text(BASE.to_json())
    assert find_runs([tmp_path / "x", b]) == [a, b]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no finished run"):
        find_runs([tmp_path / "empty"])


def test_experiment_settings_leave_out_the_seed_and_a_bare_runs_mrdib_settings():
    full = experiment_settings(BASE)
    assert "seed" not in full and "run_dir" not in full and full["alpha_mi"] == 0.02 and full["encoder"]
    bare = experiment_settings(BASE.replace(mrdib=False, seed=9))
    assert "alpha_kl" not in bare and "fusion_head" not in bare and "encoder" not in bare
    assert bare == experiment_settings(BASE.replace(mrdib=False, alpha_kl=0.5, encoder="dense", critic_rows=64,
                                                    prior_scale="inputs", seed=10))
    assert bare != experiment_settings(BASE.replace(mrdib=False, reg_weight=0.5))
