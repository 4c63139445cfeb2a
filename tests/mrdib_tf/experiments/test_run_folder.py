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
