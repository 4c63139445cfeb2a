"""End-to-end `python -m trainers.fit` on a tiny synthetic dataset, checked against independent recomputation."""

import gzip
import re
import json

import numpy as np
import pytest

from data_pipeline import load_dataset, write_synthetic_dataset
from data_pipeline.registry import DATA_DIR_ENV
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.metrics import evaluate_scores
from mrdib_tf.experiments.runs import load_trained_run
from trainers import fit


def _per_user(user_items):
    return [user_items.items_of(u).tolist() for u in range(user_items.n_users)]


@pytest.mark.parametrize("backbone, mrdib", [("vbpr", False), ("vbpr", True), ("mgcn", True), ("freedom", True), ("mmgcn", True),
                                            ("soil", True)])
def test_fit_writes_a_run_whose_test_metrics_match_the_best_checkpoint(tiny_folder, tmp_path, backbone, mrdib):
    run_dir = tmp_path / "run"
    argv = ["--data-dir", str(tiny_folder), "--backbone", backbone, "--epochs", "4", "--patience", "2",
            "--batch-size", "256", "--run-dir", str(run_dir), "--seed", "5"] + ([] if mrdib else ["--no-mrdib"])
    assert fit.main(argv) == 0

    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = RunConfig.from_json_file(run_dir / "config.json")
    assert config.backbone == backbone and config.mrdib is mrdib and config.epochs == 4
    history = [row["valid_recall@20"] for row in metrics["history"]]
    assert metrics["best_epoch"] == int(np.argmax(history)) + 1  # first maximum wins
    assert metrics["valid"]["recall@20"] == max(history)
    assert len(metrics["epoch_seconds"]) == len(history) <= 4
    for k in (5, 10, 20, 50):
        for family in ("recall", "ndcg", "precision", "map"):
            assert 0.0 <= metrics["test"][f"{family}@{k}"] <= 1.0

    # Rebuild the model from the run folder alone and score with plain numpy.
    dataset = load_dataset(data_dir=tiny_folder)
    users, items = (t.numpy() for t in load_trained_run(run_dir).model.final_embeddings())
    expected = evaluate_scores(users @ items.T, _per_user(dataset.train), _per_user(dataset.test))
    for name, value in expected.items():
        assert metrics["test"][name] == pytest.approx(value, abs=1e-6), name


def test_early_stopping_stops_after_patience_epochs_without_improvement(tiny_folder, tmp_path):
    config = RunConfig(data_dir=str(tiny_folder), mrdib=False, epochs=60, patience=1, batch_size=256,
                       lr=0.05, run_dir=str(tmp_path / "run"))
    from mrdib_tf.experiments.training import train

    result, _ = train(config, verbose=False)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 1


def test_id_only_backbone_with_mrdib_fails_with_a_clear_message(tiny_folder, tmp_path, capsys):
    code = fit.main(["--data-dir", str(tiny_folder), "--backbone", "lightgcn", "--run-dir", str(tmp_path)])
    assert code == 2
    assert "--no-mrdib" in capsys.readouterr().err


def test_missing_feature_files_fail_with_a_clear_message(tmp_path, capsys):
    folder = tmp_path / "baby"
    folder.mkdir()
    (folder / "baby.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n0\t2\t2\n")
    assert fit.main(["--data-dir", str(folder), "--run-dir", str(tmp_path / "run")]) == 2
    message = capsys.readouterr().err
    assert "image_feat.npy" in message and "text_feat.npy" in message


def test_id_only_backbone_trains_on_a_gzipped_dataset_without_features(tiny_folder, tmp_path, monkeypatch):
    (tmp_path / "ids").mkdir()
    (tmp_path / "ids" / "ids.inter.gz").write_bytes(gzip.compress((tiny_folder / "tiny.inter").read_bytes()))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    run_dir = tmp_path / "run"
    argv = ["--dataset", "ids", "--backbone", "lightgcn", "--no-mrdib", "--epochs", "1",
            "--batch-size", "256", "--run-dir", str(run_dir)]
    assert fit.main(argv) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and 0.0 <= metrics["test"]["recall@20"] <= 1.0


def test_a_catalogue_smaller_than_the_largest_cutoff_trains_and_reports_every_cutoff(tmp_path):
    folder = tmp_path / "small"
    write_synthetic_dataset(folder, n_users=60, n_items=30, noise_dims=4, signal_dims=16,
                            interactions_per_user=6, seed=1)
    run_dir = tmp_path / "run"
    argv = ["--data-dir", str(folder), "--no-mrdib", "--epochs", "2", "--batch-size", "64",
            "--run-dir", str(run_dir)]
    assert fit.main(argv) == 0
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    dataset = load_dataset(data_dir=folder)
    assert dataset.n_items < 50
    assert test["recall@50"] == 1.0  # the whole catalogue is ranked, so every test item is found
    sizes = np.diff(dataset.test.indptr)
    assert test["precision@50"] == pytest.approx(np.mean(sizes[sizes > 0]) / 50)  # all of them, over 50


def test_a_diverging_loss_stops_with_the_epoch_step_and_terms_and_no_metrics(tiny_folder, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["--data-dir", str(tiny_folder), "--no-mrdib", "--lr", "1e30", "--epochs", "3", "--batch-size", "256",
            "--run-dir", str(run_dir)]
    assert fit.main(argv) == 2
    message = capsys.readouterr().err
    assert re.search(r"error: Epoch 1, step \d+: the training loss is (nan|inf)", message), message
    assert "ranking=" in message and "--lr" in message
    assert not (run_dir / "metrics.json").exists()  # nothing reports the diverged run as finished
