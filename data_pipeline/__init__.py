"""MMRec-format data in, validated arrays and tf.data training input out.

Example:
    >>> from data_pipeline import load_dataset
    >>> data = load_dataset("tiktok")  # or load_dataset(data_dir="path/to/baby")
    >>> batch = next(iter(data.train_batches(2048, seed=0, epoch=0)))
    >>> sorted(batch)
    ['neg_item', 'pos_item', 'user']
"""

from data_pipeline.dataset import PreparedDataset, load_dataset
from data_pipeline.errors import DataValidationError
from data_pipeline.interactions import UserItems
from data_pipeline.registry import DEFAULT_DATASET
from data_pipeline.synthetic import write_synthetic_dataset

__all__ = [
    "DEFAULT_DATASET",
    "DataValidationError",
    "PreparedDataset",
    "UserItems",
    "load_dataset",
    "write_synthetic_dataset",
]
