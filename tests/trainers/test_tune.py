"""End-to-end `python -m trainers.tune` on a tiny synthetic dataset: real trials, real retrain, then a re-run."""

import csv
import json

import pytest

from trainers import tune


@pytest.mark.slow
def test_search_trains_trials_retrains_the_best_on_its_seed_and_resumes_without_training(
        tiny_folder, tmp_path, capsys):
    search = tmp_path / "search"
    argv = ["--data-dir", str(tiny_folder), "--max-trials", "2", "--tuner", "random", "--epochs", "2",
            "--patience", "2", "--batch-size", "256", "--embedding-dim", "8", "--seed", "4",
            "--no-jit-compile", "--no-show-epochs", "--run-dir", str(search)]
    assert tune.main(argv) == 0
    printed = capsys.readouterr().out

    with open(search / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    for row in rows:  # the table holds what each trial's own run folder says
        trial_metrics = json.loads((search / "trials" / f"trial_{row['id']}" / "metrics.json").read_text())
        trial_config = json.loads((search / "trials" / f"trial_{row['id']}" / "config.json").read_text())
        assert float(row["objective"]) == trial_metrics["valid"]["recall@20"]
        assert int(row["epochs"]) == len(trial_metrics["epoch_seconds"]) <= 2
        assert float(row["alpha_mi"]) == trial_config["alpha_mi"] and trial_config["seed"] == 4
    best_row = max(rows, key=lambda r: float(r["objective"]))
    best = json.loads((search / "best.json").read_text())
    assert best["trial"] == int(best_row["trial"])
    retrained_config = json.loads((search / "best" / "config.json").read_text())
    assert [retrained_config[a] for a in ("alpha_kl", "alpha_mi", "alpha_unique")] == [
        float(best_row[a]) for a in ("alpha_kl", "alpha_mi", "alpha_unique")]
    # Same configuration, same seed: the retrain reproduces the trial's validation result.
    assert best["retrained_valid"]["recall@20"] == pytest.approx(float(best_row["objective"]), abs=1e-6)
    retrained_metrics = json.loads((search / "best" / "metrics.json").read_text())
    assert f"{retrained_metrics['test']['recall@20']:9.4f}" in printed.split("test metrics of the retrained run")[1]
    assert (search / "objective.png").read_bytes()[:4] == b"\x89PNG"

    # The same command again: the search is complete and every run is reused, nothing is trained.
    stamps = {p: p.stat().st_mtime_ns for p in search.rglob("metrics.json")}
    assert tune.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in search.rglob("metrics.json")} == stamps
    assert "best configuration (trial " + best_row["trial"] in capsys.readouterr().out
