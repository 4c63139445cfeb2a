"""Claiming run folders: one training per folder, no two runs mixed, finished runs never reused."""

import json

import pytest

from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.run_folder import CONFIG_FILE, claim_run_folder


def _config(tmp_path, **changes) -> RunConfig:
    return RunConfig(data_dir=str(tmp_path / "data"), run_dir=str(tmp_path / "run"), **changes)


def test_a_folder_held_by_a_training_is_refused_until_released(tmp_path):
    first = claim_run_folder(_config(tmp_path))
    assert not first.resuming
    assert json.loads((first.path / CONFIG_FILE).read_text())["run_dir"] == str(tmp_path / "run")
    with pytest.raises(ValueError, match="another training"):
        claim_run_folder(_config(tmp_path))
    first.release()
    again = claim_run_folder(_config(tmp_path))
    assert again.resuming  # config.json and no metrics.json: an interrupted run of the same settings
    again.release()


def test_an_interrupted_run_of_other_settings_is_refused_naming_them(tmp_path):
    claim_run_folder(_config(tmp_path)).release()
    with pytest.raises(ValueError, match=r"`lr` 0.001 there, 0.01 now"):
        claim_run_folder(_config(tmp_path, lr=0.01))
    claim_run_folder(_config(tmp_path, eval_batch_users=17)).release()  # bookkeeping may change


def test_finished_and_foreign_folders_are_refused(tmp_path):
    claim_run_folder(_config(tmp_path)).release()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="holds a finished run"):
        claim_run_folder(_config(tmp_path))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"is not empty \(notes.txt\)"):
        claim_run_folder(_config(tmp_path).replace(run_dir=str(tmp_path / "other")))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda *_: "20261202-101010")  # one and the same second
    config = _config(tmp_path).replace(run_dir=None)
    folders = [claim_run_folder(config) for _ in range(3)]
    paths = {f.path for f in folders}
    assert len(paths) == 3 and all((p / CONFIG_FILE).is_file() for p in paths)
    for folder in folders:
        folder.release()


def test_a_search_trial_interrupted_after_an_epoch_resumes_through_train_or_reuse(
    tiny_folder, tmp_path, monkeypatch
):
    """The tuner and the ablation run every trial through `train_or_reuse`; an interrupted trial resumes."""
    from mrdib_tf.experiments import resume
    from mrdib_tf.experiments.results import train_or_reuse
    from mrdib_tf.experiments.training import train

    monkeypatch.setenv("MRDIB_CACHE_DIR", str(tmp_path / "cache"))
    config = RunConfig(data_dir=str(tiny_folder), epochs=4, patience=4, batch_size=128, seed=2)
    trained = lambda c: train(c, verbose=False)[0]  # noqa: E731
    whole, _ = train_or_reuse(config.replace(run_dir=str(tmp_path / "whole")), trained)

    save = resume.EpochBackup.on_epoch_end

    def killed_after_epoch_two(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume.EpochBackup, "on_epoch_end", killed_after_epoch_two)
    interrupted = config.replace(run_dir=str(tmp_path / "trial"))
    with pytest.raises(KeyboardInterrupt):
        train_or_reuse(interrupted, trained)
    monkeypatch.setattr(resume.EpochBackup, "on_epoch_end", save)
    resumed, reused = train_or_reuse(interrupted, trained)
    assert not reused
    assert resumed.best_epoch == whole.best_epoch and resumed.valid == whole.valid and resumed.test == whole.test
    history = json.loads((tmp_path / "trial" / "metrics.json").read_text())["history"]
    expected = json.loads((tmp_path / "whole" / "metrics.json").read_text())["history"]
    assert [row["loss"] for row in history] == [row["loss"] for row in expected]
