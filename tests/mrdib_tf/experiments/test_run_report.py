"""The comparison table over run folders: grouping, hand-computed seed statistics, repeated seeds."""

import math

import pytest

from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.results import read_run
from mrdib_tf.experiments.run_report import group_runs, report_json, report_markdown
from tests.run_folders import write_run_folder

FULL = RunConfig(dataset="fake", backbone="vbpr", alpha_kl=0.005, alpha_mi=0.05, alpha_unique=0.005)
METRICS = ["recall@20", "ndcg@20"]


def _records(tmp_path):
    runs = [
        ("full-1", FULL.replace(seed=1), 0.10, 0.05),
        ("full-2", FULL.replace(seed=2), 0.12, 0.06),
        ("full-3", FULL.replace(seed=3), 0.17, 0.07),
        ("bare-1", FULL.replace(mrdib=False, seed=1), 0.08, 0.04),
        ("bare-2", FULL.replace(mrdib=False, seed=2, alpha_kl=0.3), 0.09, 0.05),  # alphas mean nothing when bare
        ("slow-lr", FULL.replace(seed=1, lr=5e-4), 0.20, 0.10),
        ("lightgcn", FULL.replace(backbone="lightgcn", mrdib=False, seed=1), 0.11, 0.06),
    ]
    return [read_run(write_run_folder(tmp_path / name, config, test={"recall@20": r, "ndcg@20": n},
                                      valid={"recall@20": 1 - r, "ndcg@20": 1 - n}))
            for name, config, r, n in runs]


def test_groups_pool_seeds_of_identical_settings_only(tmp_path):
    groups = group_runs(_records(tmp_path), "test", METRICS)
    names = [sorted(r.run_dir.name for r in runs) for _, runs in groups]
    assert names == [["lightgcn"], ["bare-1", "bare-2"], ["slow-lr"], ["full-1", "full-2", "full-3"]]
    full, _ = groups[3]
    assert full.n == 3
    assert full.mean["recall@20"] == pytest.approx(0.13)
    assert full.std["recall@20"] == pytest.approx(math.sqrt(0.0013))   # deviations -.03, -.01, .04
    assert full.mean["ndcg@20"] == pytest.approx(0.06) and full.std["ndcg@20"] == pytest.approx(0.01)
    bare, _ = groups[1]
    assert (bare.mean["recall@20"], bare.std["recall@20"]) == (pytest.approx(0.085), pytest.approx(math.sqrt(0.00005)))


def test_markdown_table_shows_settings_that_vary_and_the_seeds(tmp_path):
    table = report_markdown(_records(tmp_path), "test", METRICS)
    assert "| dataset | backbone | MRdIB | alpha_kl | alpha_mi | alpha_unique | other settings | n | seeds | test recall@20 | test ndcg@20 |" in table
    assert "| fake | vbpr | on | 0.005 | 0.05 | 0.005 | lr=0.001 | 3 | 1, 2, 3 | 0.1300 ± 0.0361 | 0.0600 ± 0.0100 |" in table
    assert "| fake | vbpr | off | - | - | - | lr=0.001 | 2 | 1, 2 | 0.0850 ± 0.0071 | 0.0450 ± 0.0071 |" in table
    assert "fusion_head=False" in table.split("Shared settings: ")[1]
    assert "| fake | vbpr | on | 0.005 | 0.05 | 0.005 | lr=0.0005 | 1 | 1 | 0.2000 | 0.1000 |" in table
    assert "7 finished runs in 4 groups" in table and "Shared settings: " in table and "epochs=1000" in table
    assert "Warning" not in table


def test_validation_split_and_repeated_seeds(tmp_path):
    records = _records(tmp_path)
    copy = read_run(write_run_folder(tmp_path / "copy", FULL.replace(seed=1), test={"recall@20": 0.1, "ndcg@20": 0.05}))
    table = report_markdown([*records, copy], "valid", ["recall@20"])
    assert "| 4 | 1, 1, 2, 3 |" in table and "Warning: groups with a repeated seed" in table
    data = report_json(records, "valid", ["recall@20"])
    full = next(g for g in data["groups"] if g["n"] == 3)
    assert full["mean"]["recall@20"] == pytest.approx(1 - 0.13)
    assert full["settings"]["alpha_mi"] == 0.05 and "seed" not in full["settings"]
    with pytest.raises(ValueError, match="split must be"):
        report_markdown(records, "train", METRICS)
