"""A `trainers.fit` process killed with SIGKILL mid-run resumes on the same command and ends as an
uninterrupted run of the same seed does, bit for bit; finished and foreign run folders are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from data_pipeline.cache import CACHE_DIR_ENV
from data_pipeline.registry import PROJECT_ROOT
from trainers import fit


def _command(data_dir, run_dir, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trainers.fit", "--data-dir", str(data_dir), "--backbone", "vbpr",
            "--epochs", "8", "--patience", "8", "--batch-size", "64", "--seed", "5",
            "--run-dir", str(run_dir), *extra]


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", CACHE_DIR_ENV: str(tmp_path / "cache")}


def _without_timings(metrics: dict) -> dict:
    history = [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in metrics["history"]]
    return {"best_epoch": metrics["best_epoch"], "valid": metrics["valid"], "test": metrics["test"],
            "history": history, "stopped_early": metrics["stopped_early"]}


def test_a_killed_run_resumes_and_ends_as_the_uninterrupted_run(tiny_folder, tmp_path):
    env = _env(tmp_path)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_command(tiny_folder, whole), cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)

    process = subprocess.Popen(_command(tiny_folder, killed), cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "resume" / "state.json"
    deadline = time.monotonic() + 300
    while not (state.exists() and json.loads(state.read_text())["epochs_done"] >= 2):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists()
    done_before_kill = json.loads(state.read_text())["epochs_done"]
    assert done_before_kill < 8

    resumed = subprocess.run(_command(tiny_folder, killed), cwd=PROJECT_ROOT, env=env, check=True,
                             capture_output=True, text=True)
    assert "resuming the interrupted run" in resumed.stdout
    expected = json.loads((whole / "metrics.json").read_text())
    actual = json.loads((killed / "metrics.json").read_text())
    assert len(actual["history"]) == len(expected["history"]) > done_before_kill
    assert _without_timings(actual) == _without_timings(expected)
    assert not (killed / "resume").exists() and not (whole / "resume").exists()  # finished: state discarded


def test_a_finished_run_folder_is_refused_and_left_as_it_was(tiny_folder, tmp_path, capsys):
    run = tmp_path / "run"
    argv = _command(tiny_folder, run, "--epochs", "1")[3:]
    assert fit.main(argv) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts}
    capsys.readouterr()
    assert fit.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {run}: holds a finished run")
    assert {p: p.read_bytes() for p in before} == before
