"""Reloading a finished training run (`trainers.fit`'s folder) as a model with its best weights.

A run folder holds `config.json` (the `RunConfig`), `checkpoints/best.weights.h5` (the model's Keras
weights at the best validation epoch) and `metrics.json` (the `FitResult`).
Export, evaluation and diagnosis commands all start from `load_trained_run`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import keras

from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.models import build_recommender, dataset_for
from mrdib_tf.experiments.run_folder import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE
from mrdib_tf.recommender import Recommender

#: Checkpoint groups that hold optimizer state rather than the model's weights.
_OPTIMIZER_GROUP = "optimizer"


class TrainedRun(NamedTuple):
    """A run restored to its best epoch; unpacks as `(model, dataset, config, metrics)`.

    Attributes:
        model: the `Recommender` with the best epoch's weights.
        dataset: the `PreparedDataset` the run was trained on.
        config: the run's `RunConfig`.
        metrics: the parsed `metrics.json` (`best_epoch`, `valid`, `test`, timings, history).
    """

    model: Recommender
    dataset: Any
    config: RunConfig
    metrics: dict[str, Any]


def _required(run_dir: Path, relative: Path | str) -> Path:
    path = run_dir / relative
    if not path.is_file():
        raise ValueError(
            f"{path}: missing. A finished run folder (written by `python -m trainers.fit`) holds "
            f"{CONFIG_FILE}, {CHECKPOINT_FILE.as_posix()} and {METRICS_FILE}; a run that is still "
            "training or was interrupted has no metrics.json yet."
        )
    return path


def load_trained_run(run_dir: str | Path) -> TrainedRun:
    """Rebuilds a run's model from its config and loads the best checkpoint into it.

    Raises:
        ValueError: a file of the run is missing or malformed, or the checkpoint does not match the
            model the config describes (other backbone, sizes or MRdIB setting).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a folder; expected a run folder written by `python -m trainers.fit`.")
    config = RunConfig.from_json_file(_required(run_dir, CONFIG_FILE))
    checkpoint = _required(run_dir, CHECKPOINT_FILE)
    metrics_path = _required(run_dir, METRICS_FILE)
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{metrics_path}: not valid JSON ({error}).") from error
    missing = [key for key in ("valid", "test", "best_epoch") if key not in metrics]
    if missing:
        raise ValueError(f"{metrics_path}: missing {missing}; expected the FitResult a training run writes.")

    dataset = dataset_for(config)
    keras.utils.set_random_seed(config.seed)
    model = build_recommender(dataset, config)
    model.build()
    try:
        _check_layout(checkpoint, model)
        model.load_weights(checkpoint)
    except (ValueError, OSError) as error:
        raise ValueError(f"{checkpoint}: does not fit the model {CONFIG_FILE} describes ({error}).") from error
    return TrainedRun(model, dataset, config, metrics)


def _weight_layout(path: Path) -> dict[str, tuple[int, ...]]:
    """Every array of a Keras `.weights.h5` file outside the training optimizer's group: path -> shape."""
    layout: dict[str, tuple[int, ...]] = {}
    with h5py.File(path, "r") as file:
        def visit(name: str, node) -> None:
            if isinstance(node, h5py.Dataset) and name.split("/")[0] != _OPTIMIZER_GROUP:
                layout[name] = node.shape
        file.visititems(visit)
    return layout


def _check_layout(checkpoint: Path, model: Recommender) -> None:
    """Raises a ValueError unless `checkpoint` holds exactly the weights `model` has, path for path.

    Keras' `load_weights` loads what matches and ignores the rest, so a checkpoint of another setting
    (MRdIB on or off, other sizes) would otherwise load silently into the wrong model.
    """
    with tempfile.TemporaryDirectory() as scratch:
        reference = Path(scratch) / "model.weights.h5"
        model.save_weights(reference)
        expected = _weight_layout(reference)
    stored = _weight_layout(checkpoint)
    if stored != expected:
        extra = sorted(set(stored) - set(expected))[:3]
        missing = sorted(set(expected) - set(stored))[:3]
        other = sorted(k for k in set(stored) & set(expected) if stored[k] != expected[k])[:3]
        raise ValueError(
            f"it holds {len(stored)} weight arrays where the model has {len(expected)}; "
            f"not in the model: {extra}, missing: {missing}, other shapes: {other}"
        )
