"""The shipped Amazon datasets end to end through `python -m trainers.fit` (slow: minutes each).

Sports trains VBPR on random features of MMRec's real shapes (its feature files are not shipped), put
in a temporary $MRDIB_DATA_DIR/sports/ beside the shipped interactions; baby trains the ID-only LightGCN
with no features at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline.cache import CACHE_DIR_ENV
from data_pipeline.registry import DATA_DIR_ENV, PROJECT_ROOT

pytestmark = pytest.mark.slow

METRICS = [f"{family}@{k}" for family in ("recall", "ndcg", "precision", "map") for k in (5, 10, 20, 50)]


def _fit(tmp_path, data_dir, *flags: str) -> dict:
    """Runs the command in the project root; returns the run's metrics.json."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", CACHE_DIR_ENV: str(tmp_path / "cache")}
    env.pop(DATA_DIR_ENV, None)
    if data_dir is not None:
        env[DATA_DIR_ENV] = str(data_dir)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "trainers.fit", *flags, "--epochs", "1", "--run-dir", str(run_dir)]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best epoch 1" in result.stdout
    return json.loads((run_dir / "metrics.json").read_text())


def test_sports_trains_vbpr_for_an_epoch_on_random_features_of_the_real_shapes(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "sports").mkdir(parents=True)
    for modality, dim in (("image", 4096), ("text", 384)):
        features = rng.standard_normal((18357, dim), np.float32)
        np.save(tmp_path / "data" / "sports" / f"{modality}_feat.npy", features)
    metrics = _fit(tmp_path, tmp_path / "data", "--dataset", "sports", "--backbone", "vbpr", "--no-mrdib")
    assert metrics["best_epoch"] == 1 and len(metrics["history"]) == 1
    assert sorted(metrics["test"]) == sorted(METRICS)
    assert all(0.0 <= value <= 1.0 for value in metrics["test"].values())


def test_baby_trains_lightgcn_for_an_epoch_without_any_feature_file(tmp_path):
    metrics = _fit(tmp_path, None, "--dataset", "baby", "--backbone", "lightgcn", "--no-mrdib")
    assert metrics["best_epoch"] == 1 and sorted(metrics["test"]) == sorted(METRICS)
