"""`python -m trainers.report`: one table from run folders, written where asked; clear errors."""

import json

from mrdib_tf.experiments.config import RunConfig
from tests.run_folders import write_run_folder
from trainers import report

FULL = RunConfig(dataset="fake", backbone="vbpr", alpha_kl=0.005, alpha_mi=0.05, alpha_unique=0.005)


def test_report_pools_seeds_from_nested_folders(tmp_path, capsys):
    for seed, recall in ((1, 0.10), (2, 0.12), (3, 0.17)):
        write_run_folder(tmp_path / "runs" / "ablate" / "full" / f"seed-{seed}", FULL.replace(seed=seed),
                         test={"recall@10": recall / 2, "recall@20": recall, "ndcg@10": 0.1, "ndcg@20": 0.2})
    write_run_folder(tmp_path / "other" / "bare", FULL.replace(mrdib=False, seed=1),
                     test={"recall@10": 0.04, "recall@20": 0.08, "ndcg@10": 0.1, "ndcg@20": 0.2})

    code = report.main([str(tmp_path / "runs"), str(tmp_path / "other" / "bare"),
                        "--output", str(tmp_path / "table.md"), "--json", str(tmp_path / "table.json")])

    assert code == 0
    printed = capsys.readouterr().out
    # recall@10: 0.05, 0.06, 0.085 -> mean 0.065, sample std sqrt((.015^2 + .005^2 + .02^2) / 2) = 0.0180
    assert "| fake | vbpr | on | 0.005 | 0.05 | 0.005 | 3 | 1, 2, 3 | 0.0650 ± 0.0180 | 0.1300 ± 0.0361 |" in printed
    assert "| fake | vbpr | off | - | - | - | 1 | 1 | 0.0400 | 0.0800 |" in printed
    assert (tmp_path / "table.md").read_text() == printed.rstrip("\n") + "\n"
    groups = json.loads((tmp_path / "table.json").read_text())["groups"]
    assert [g["n"] for g in groups] == [1, 3]


def test_report_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "no finished run below it" in capsys.readouterr().err


def test_report_paired_table(tmp_path, capsys):
    for seed, recall in ((1, 0.10), (2, 0.12)):
        write_run_folder(tmp_path / f"full-{seed}", FULL.replace(seed=seed), test={"recall@20": recall})
        write_run_folder(tmp_path / f"bare-{seed}", FULL.replace(mrdib=False, seed=seed), test={"recall@20": recall - 0.01 * seed})

    assert report.main([str(tmp_path), "--paired", "--metrics", "recall@20"]) == 0
    printed = capsys.readouterr().out
    # differences .01 and .02: mean .015, std .0071; means .11 against .095
    assert "| fake | vbpr | 0.005 | 0.05 | 0.005 | 2 | 1, 2 | +15.8% (+0.0150 ± 0.0071, 2/2 up, p 0.5) |" in printed
