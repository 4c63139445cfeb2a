"""End-to-end `python -m trainers.ablate` on a tiny synthetic dataset: six real runs, a table from their files."""

import json

import pytest

from trainers import ablate


@pytest.mark.slow
def test_ablation_runs_every_variant_and_tabulates_their_test_metrics(tiny_folder, tmp_path, capsys):
    root = tmp_path / "ablation"
    argv = ["--data-dir", str(tiny_folder), "--seeds", "1", "--seed", "2", "--epochs", "1", "--batch-size", "256",
            "--embedding-dim", "8", "--alpha-kl", "0.01", "--alpha-mi", "0.02", "--alpha-unique", "0.03",
            "--no-jit-compile", "--run-dir", str(root)]
    assert ablate.main(argv) == 0
    printed = capsys.readouterr().out

    expected = {"full": (True, 0.01, 0.02, 0.03), "alpha_kl-0": (True, 0.0, 0.02, 0.03),
                "alpha_mi-0": (True, 0.01, 0.0, 0.03), "alpha_unique-0": (True, 0.01, 0.02, 0.0),
                "alpha_mi-alpha_unique-0": (True, 0.01, 0.0, 0.0), "bare": (False, 0.01, 0.02, 0.03)}
    table = json.loads((root / "ablation.json").read_text())
    assert [v["name"] for v in table["variants"]] == list(expected)
    for variant in table["variants"]:
        run = root / variant["name"] / "seed-2"
        config = json.loads((run / "config.json").read_text())
        assert (config["mrdib"], config["alpha_kl"], config["alpha_mi"], config["alpha_unique"]) == expected[variant["name"]]
        test = json.loads((run / "metrics.json").read_text())["test"]
        assert variant["test_mean"]["ndcg@20"] == test["ndcg@20"] and variant["test_std"]["ndcg@20"] is None
        assert f"{test['recall@10']:.4f} | {test['recall@20']:.4f} | {test['ndcg@10']:.4f}" in printed
    assert "6 of 6 runs finished" in printed
