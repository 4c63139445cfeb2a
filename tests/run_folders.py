"""Made-up finished run folders (config.json + metrics.json, as a Trainer writes them) for report tests."""

from __future__ import annotations

import json
from pathlib import Path

from mrdib_tf.experiments.config import RunConfig


def write_run_folder(folder: Path, config: RunConfig, test: dict[str, float], valid: dict[str, float] | None = None,
                     epochs: int = 3, best_epoch: int = 2) -> Path:
    """Writes `folder/config.json` (with `run_dir` = folder) and a FitResult-shaped `folder/metrics.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = config.replace(run_dir=str(folder))
    (folder / "config.json").write_text(config.to_json(), encoding="utf-8")
    metrics = {
        "best_epoch": best_epoch, "valid": valid if valid is not None else dict(test), "test": test,
        "epoch_seconds": [1.0] * epochs, "eval_seconds": [0.25] * epochs, "history": [], "stopped_early": False,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return folder
