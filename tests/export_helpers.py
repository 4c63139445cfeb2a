"""Shared by the export, run-loading and CLI tests: subprocess runners and two tiny trained runs.

Exports need TF_USE_LEGACY_KERAS=1 before TensorFlow is imported, and the serving checks need a
process that imports nothing but TensorFlow, so both happen in subprocesses; the pytest process
itself stays on Keras 3 and never imports `trainers.export` or `mrdib_tf.export`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

from data_pipeline.cache import CACHE_DIR_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROBE = PROJECT_ROOT / "tests" / "mrdib_tf" / "serving_probe.py"
TINY_TOP_K = 10


def subprocess_env(base: Path, **extra: str) -> dict[str, str]:
    """The environment of a test subprocess: quiet TensorFlow, the session's dataset cache, no legacy Keras."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", CACHE_DIR_ENV: str(base / "mrdib_cache"), **extra}


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Starts `command` in the project root, capturing its output."""
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def start_python(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Starts `python args...` with this interpreter in the project root."""
    return start([sys.executable, *args], env)


def finish(process: subprocess.Popen) -> str:
    """Waits for `process`; returns its stdout, or fails the test with its stderr."""
    stdout, stderr = process.communicate()
    assert process.returncode == 0, f"{process.args} failed:\n{stderr[-3000:]}"
    return stdout


def start_probe(jobs: list[dict], tmp: Path) -> tuple[subprocess.Popen, Path]:
    """Starts serving_probe.py on `jobs` in a process that imports only TensorFlow."""
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    out = tmp / "probe.json"
    return start_python([str(PROBE), str(tmp / "jobs.json"), str(out)], subprocess_env(tmp)), out


def run_probe(jobs: list[dict], tmp: Path) -> dict:
    process, out = start_probe(jobs, tmp)
    finish(process)
    return json.loads(out.read_text())


def cache_env(base: Path):
    """A context in which this process's dataset cache is the session's (as in `subprocess_env`)."""
    return mock.patch.dict(os.environ, {CACHE_DIR_ENV: str(base / "mrdib_cache")})


def tiny_runs(base: Path) -> dict[str, Path]:
    """Two finished VBPR runs, with and without MRdIB, on a synthetic dataset (trained once per session).

    Returns {"mrdib": run folder, "bare": run folder}.
    """
    from data_pipeline import write_synthetic_dataset
    from mrdib_tf.experiments.config import RunConfig
    from mrdib_tf.experiments.training import train

    runs = {variant: base / "tiny_runs" / variant for variant in ("mrdib", "bare")}
    if all((run / "metrics.json").is_file() for run in runs.values()):
        return runs
    data_dir = base / "tiny_runs" / "syn"
    write_synthetic_dataset(data_dir, n_users=80, n_items=80, interactions_per_user=6, signal_dims=12,
                            noise_dims=4, seed=1)
    with cache_env(base):
        for variant, run in runs.items():
            config = RunConfig(data_dir=str(data_dir), backbone="vbpr", embedding_dim=8, epochs=2,
                               batch_size=1024, mrdib=variant == "mrdib", jit_compile=False, run_dir=str(run))
            train(config, verbose=False)
    return runs
