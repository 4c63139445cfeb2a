"""Reloading a finished training run (`trainers.fit`'s folder) as a model with its best weights.

A run folder holds `config.json` (the `RunConfig`), `checkpoints/best.weights.npz` (a `WeightSnapshot`
of every trainable variable at the best validation epoch) and `metrics.json` (the `FitResult`).
Export, evaluation and diagnosis commands all start from `load_trained_run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import keras

from mrdib_tf.config import RunConfig
from mrdib_tf.recommender import Recommender, build_recommender
from mrdib_tf.training import Trainer, WeightSnapshot

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = Path("checkpoints") / "best.weights.npz"
METRICS_FILE = "metrics.json"


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


def dataset_for(config: RunConfig):
    """The `PreparedDataset` a run with `config` trains on (features only if the backbone reads them)."""
    from data_pipeline import load_dataset
    from mrdib_tf.backbones import ID_ONLY_BACKBONES

    return load_dataset(
        name=None if config.data_dir else config.dataset,
        data_dir=config.data_dir,
        require_features=config.backbone not in ID_ONLY_BACKBONES,
    )


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
    """Rebuilds a run's model exactly as its Trainer did and restores the best checkpoint.

    The model is built through `Trainer.build` (one training-mode forward pass), because MRdIB creates
    its auxiliary variables (sigma heads, decoders, critics) on its first training call and the
    checkpoint holds every trainable variable in that creation order.

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
        raise ValueError(f"{metrics_path}: missing {missing}; expected the FitResult a Trainer writes.")

    dataset = dataset_for(config)
    keras.utils.set_random_seed(config.seed)
    model = build_recommender(dataset, config)
    Trainer(model, dataset, config, run_dir=None, verbose=False).build()
    snapshot = WeightSnapshot.load(checkpoint)
    try:
        snapshot.restore(model)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from error
    return TrainedRun(model, dataset, config, metrics)
