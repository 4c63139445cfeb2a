"""mrdib-tf: MRdIB as a plug-and-play training regularizer for multimodal recommenders (Keras 3).

    from mrdib_tf import MRdIBRegularizer, Recommender, RunConfig, train
    result, run_dir = train(RunConfig(dataset="tiktok", backbone="vbpr"))

Names are imported on first use, so light modules (the config, the report) load without TensorFlow.
"""

import importlib

_EXPORTS = {
    "MRdIBRegularizer": "mrdib_tf.regularizer",
    "Recommender": "mrdib_tf.recommender",
    "build_recommender": "mrdib_tf.recommender",
    "RunConfig": "mrdib_tf.config",
    "Trainer": "mrdib_tf.training",
    "train": "mrdib_tf.training",
    "evaluate_scores": "mrdib_tf.metrics",
    "FullRankingEvaluator": "mrdib_tf.metrics",
    "load_trained_run": "mrdib_tf.runs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mrdib_tf' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
