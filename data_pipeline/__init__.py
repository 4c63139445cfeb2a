"""MMRec-format data in, validated arrays and tf.data training input out.

    from data_pipeline import load_dataset
    data = load_dataset("tiktok")            # or load_dataset(data_dir="path/to/baby")
    for batch in data.train_batches(2048, seed=0, epoch=0): ...

Names are imported on first use, so light modules (the registry, the config) load without TensorFlow.
"""

import importlib

_EXPORTS = {
    "DEFAULT_DATASET": "data_pipeline.registry",
    "DataValidationError": "data_pipeline.errors",
    "PreparedDataset": "data_pipeline.dataset",
    "UserItems": "data_pipeline.interactions",
    "load_dataset": "data_pipeline.dataset",
    "write_synthetic_dataset": "data_pipeline.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'data_pipeline' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
