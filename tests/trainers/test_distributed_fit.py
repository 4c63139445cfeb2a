"""`python -m trainers.fit --strategy mirrored|multi-worker` trains the model one device trains.

Each run is its own process: logical CPU devices and a worker's collective server exist only if they are
set up before TensorFlow starts. Compared: every epoch's loss terms and validation metrics, and the test
metrics, against a single-device run of the same seed. The configurations are those whose every term is
a mean over the batch's rows or a catalogue-wide term (see `distribution`), so replicas and one device
compute the same thing; what remains is summation order, which Adam's first steps amplify where a
gradient is near zero (weights then differ by ~1e-4 after one step), hence the tolerances.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from data_pipeline.cache import CACHE_DIR_ENV
from data_pipeline.registry import PROJECT_ROOT

#: Every loss and rate within this relative distance; ranking metrics (steps of 1/240 here) within this.
LOSS_RTOL, METRIC_ATOL = 5e-3, 1e-2
#: Bare VBPR with BPR alone; MGCN + MRdIB with a deterministic bottleneck, the unique decoders and MGCN's
#: regularizer (divided by the configured global batch size, the case a replica must rescale).
ADDITIVE_RUNS = {
    "vbpr": ["--backbone", "vbpr", "--no-mrdib", "--reg-weight", "0"],
    "mgcn": ["--backbone", "mgcn", "--cl-weight", "0", "--alpha-mi", "0", "--alpha-kl", "0", "--reg-weight", "0.1"],
}


def _fit(data_dir, run_dir, cache, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "trainers.fit", "--data-dir", str(data_dir), "--epochs", "3",
               "--patience", "3", "--batch-size", "256", "--seed", "5", "--run-dir", str(run_dir), *extra]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", CACHE_DIR_ENV: str(cache), **(env or {})}
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def _metrics(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _assert_same_training(distributed: dict, single: dict) -> None:
    assert len(distributed["history"]) == len(single["history"])
    for ours, theirs in zip(distributed["history"], single["history"]):
        for name, value in theirs.items():
            if name.endswith("seconds") or name == "epoch":
                continue
            tolerance = METRIC_ATOL if name.startswith("valid_") else LOSS_RTOL * abs(value) + 1e-7
            assert ours[name] == pytest.approx(value, abs=tolerance), (ours["epoch"], name)
    for name, value in single["test"].items():
        assert distributed["test"][name] == pytest.approx(value, abs=METRIC_ATOL), name


@pytest.fixture(scope="module")
def single_device_runs(tiny_folder, tmp_path_factory):
    """backbone -> metrics.json of its single-device run."""
    root = tmp_path_factory.mktemp("single")
    processes = {name: _fit(tiny_folder, root / name, root / "cache", *flags) for name, flags in ADDITIVE_RUNS.items()}
    for process in processes.values():
        _finish(process)
    return {name: _metrics(root / name) for name in ADDITIVE_RUNS}


@pytest.mark.parametrize("backbone", sorted(ADDITIVE_RUNS))
def test_mirrored_over_two_cpu_devices_trains_as_one_device(tiny_folder, tmp_path, single_device_runs, backbone):
    process = _fit(tiny_folder, tmp_path / "run", tmp_path / "cache", *ADDITIVE_RUNS[backbone],
                   "--strategy", "mirrored", "--cpu-devices", "2")
    _finish(process)
    distributed = _metrics(tmp_path / "run")
    _assert_same_training(distributed, single_device_runs[backbone])
    assert distributed["history"][0]["loss"] > 0.5  # BPR near log 2 at the start, not halved or doubled


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _two_workers(data_dir, run_dir, cache, *flags: str) -> list[subprocess.Popen]:
    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    return [
        _fit(data_dir, run_dir, cache, *flags, "--strategy", "multi-worker",
             env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)
    ]


def test_two_workers_on_localhost_train_one_model_as_one_device(tiny_folder, tmp_path, single_device_runs):
    run_dir = tmp_path / "run"
    for worker in _two_workers(tiny_folder, run_dir, tmp_path / "cache", *ADDITIVE_RUNS["vbpr"]):
        _finish(worker)
    chief, other = _metrics(run_dir), _metrics(tmp_path / "run.worker-1")
    _assert_same_training(chief, single_device_runs["vbpr"])
    assert other["test"] == chief["test"]  # one model: both workers hold the same weights
    assert json.loads((run_dir / "config.json").read_text())["strategy"] == "multi-worker"


def _without_timings(metrics: dict) -> dict:
    history = [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in metrics["history"]]
    return {**{k: metrics[k] for k in ("best_epoch", "valid", "test", "stopped_early")}, "history": history}


def test_two_workers_killed_mid_run_resume_from_the_chiefs_epoch_and_end_as_uninterrupted(tiny_folder, tmp_path):
    """SIGKILL to both workers once the chief has saved two epochs (the other worker may have saved
    another number); the same commands again resume both from the chief's state, and the run ends bit
    for bit as an uninterrupted two-worker run (30 epochs drift from one device's summation order)."""
    flags = [*ADDITIVE_RUNS["vbpr"], "--epochs", "30", "--patience", "30"]
    for worker in _two_workers(tiny_folder, tmp_path / "whole", tmp_path / "cache", *flags):
        _finish(worker)
    run_dir = tmp_path / "run"
    workers = _two_workers(tiny_folder, run_dir, tmp_path / "cache", *flags)
    state = run_dir / "resume" / "state.json"
    deadline = time.monotonic() + 300
    while not (state.exists() and json.loads(state.read_text())["epochs_done"] >= 2):
        assert all(worker.poll() is None for worker in workers), "a worker ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    done_before_kill = json.loads(state.read_text())["epochs_done"]
    assert done_before_kill < 30 and not (run_dir / "metrics.json").exists()

    for worker in _two_workers(tiny_folder, run_dir, tmp_path / "cache", *flags):
        _finish(worker)
    resumed = _metrics(run_dir)
    assert len(resumed["history"]) == 30
    assert _without_timings(resumed) == _without_timings(_metrics(tmp_path / "whole"))
    assert _metrics(tmp_path / "run.worker-1")["test"] == resumed["test"]


def test_mirrored_mrdib_trains_its_critic_after_the_models_step(tiny_folder, tmp_path):
    """With the mutual-information term on, the critics' deferred step runs on every replica: the
    estimate, 0 at the critics' initialisation, climbs epoch after epoch."""
    process = _fit(tiny_folder, tmp_path / "run", tmp_path / "cache", "--backbone", "vbpr",
                   "--strategy", "mirrored", "--cpu-devices", "2")
    _finish(process)
    estimates = [row["mi_estimate"] for row in _metrics(tmp_path / "run")["history"]]
    assert 0.1 < estimates[0] < estimates[1] < estimates[2]


@pytest.mark.slow  # two trainings, one on two logical devices: about 2.5 minutes on 2 cores
def test_mirrored_rate_targeted_weights_take_one_step_on_every_replica(tiny_folder, tmp_path):
    """Each replica's copy of the KL weights follows the replicas' mean rate, so they move as one device's:
    the per-epoch weight and rate match a single-device run (up to the replicas' own batch moments)."""
    flags = ["--backbone", "vbpr", "--bottleneck", "paper", "--target-rate", "0.5", "--rate-step", "0.05",
             "--alpha-mi", "0"]
    runs = {name: _fit(tiny_folder, tmp_path / name, tmp_path / "cache", *flags, *extra)
            for name, extra in (("one", []), ("two", ["--strategy", "mirrored", "--cpu-devices", "2"]))}
    for process in runs.values():
        _finish(process)
    one, two = (_metrics(tmp_path / name)["history"] for name in ("one", "two"))
    assert [row["kl_weight"] for row in two] == pytest.approx([row["kl_weight"] for row in one], rel=0.05)
    assert two[-1]["kl_weight"] != pytest.approx(two[0]["kl_weight"], rel=1e-3)  # it moved
