"""TFRecord storage of a dataset: sharded GZIP files of `tf.train.Example`.

Interactions are stored in blocks: one Example holds up to `INTERACTIONS_PER_RECORD` pairs as two
equally long int64 lists, `user` and `item`. Measured on Amazon Sports (296k rows, 2 busy cores),
one Example per pair took about 2 s to serialise and write and 1.4 s to read back; blocks take 0.3 s
and 0.2 s, and the files are 4x smaller. Item features are a feature store with one Example per item:
`item_id` (int64) and `feat/<modality>` (float list) for every modality, in itemID order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

COMPRESSION = "GZIP"
#: zlib level 1: on float features it writes 12x faster than the default level for files 10% larger.
COMPRESSION_LEVEL = 1
INTERACTIONS_PER_RECORD = 1024
RECORDS_PER_SHARD = 256  # 262,144 interactions per shard
ITEMS_PER_SHARD = 4096
ITEM_ID_KEY = "item_id"
_READ_BATCH = 64  # records parsed per op when reading back


def feature_key(modality: str) -> str:
    """The Example key holding `modality`'s vector (prefixed so no modality name can clash)."""
    return f"feat/{modality}"


def write_interactions(folder: Path, split: str, users: np.ndarray, items: np.ndarray) -> list[str]:
    """Writes the (user, item) pairs of one split as shards in `folder`; returns the file names."""

    def examples() -> Iterator[bytes]:
        for start in range(0, users.size, INTERACTIONS_PER_RECORD):
            stop = start + INTERACTIONS_PER_RECORD
            yield _example(
                user=tf.train.Feature(int64_list=tf.train.Int64List(value=users[start:stop])),
                item=tf.train.Feature(int64_list=tf.train.Int64List(value=items[start:stop])),
            )

    n_records = -(-users.size // INTERACTIONS_PER_RECORD)
    return _write_shards(folder, split, examples(), n_records, RECORDS_PER_SHARD)


def write_features(folder: Path, features: Mapping[str, np.ndarray]) -> list[str]:
    """Writes the item feature store (one Example per item, all modalities) as shards in `folder`."""
    if not features:
        return []
    n_items = next(iter(features.values())).shape[0]

    def examples() -> Iterator[bytes]:
        for start in range(0, n_items, ITEMS_PER_SHARD):
            # Python lists convert to FloatList about 6x faster than numpy rows.
            rows = {m: f[start : start + ITEMS_PER_SHARD].tolist() for m, f in features.items()}
            for offset in range(min(ITEMS_PER_SHARD, n_items - start)):
                vectors = {
                    feature_key(m): tf.train.Feature(float_list=tf.train.FloatList(value=r[offset]))
                    for m, r in rows.items()
                }
                item_id = tf.train.Feature(int64_list=tf.train.Int64List(value=[start + offset]))
                yield _example(**{ITEM_ID_KEY: item_id}, **vectors)

    return _write_shards(folder, "features", examples(), n_items, ITEMS_PER_SHARD)


def interaction_blocks(paths: Sequence[Path]) -> tf.data.Dataset:
    """Streams stored pairs in file order as {"user": int64 [k], "item": int64 [k]} blocks."""
    spec = {"user": tf.io.RaggedFeature(tf.int64), "item": tf.io.RaggedFeature(tf.int64)}

    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return {key: value.flat_values for key, value in tf.io.parse_example(serialized, spec).items()}

    records = tf.data.TFRecordDataset([str(p) for p in paths], compression_type=COMPRESSION)
    return records.batch(_READ_BATCH).map(parse)


def read_interactions(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """All stored (users, items) of one split, as int64 numpy arrays in file order."""
    blocks = list(interaction_blocks(paths).as_numpy_iterator())
    if not blocks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (
        np.concatenate([block["user"] for block in blocks]),
        np.concatenate([block["item"] for block in blocks]),
    )


def read_features(paths: Sequence[Path], dims: Mapping[str, int]) -> dict[str, np.ndarray]:
    """The feature store as modality -> float32 [n_items, dim], checking rows are in itemID order."""
    if not dims:
        return {}
    spec = {feature_key(m): tf.io.FixedLenFeature([d], tf.float32) for m, d in dims.items()}
    spec[ITEM_ID_KEY] = tf.io.FixedLenFeature([], tf.int64)
    records = tf.data.TFRecordDataset([str(p) for p in paths], compression_type=COMPRESSION)
    batches = list(
        records.batch(ITEMS_PER_SHARD).map(lambda s: tf.io.parse_example(s, spec)).as_numpy_iterator()
    )
    item_ids = np.concatenate([b[ITEM_ID_KEY] for b in batches])
    if not np.array_equal(item_ids, np.arange(item_ids.size)):
        raise ValueError(f"Feature store {[str(p) for p in paths]} is not in itemID order; delete the cache.")
    return {m: np.concatenate([b[feature_key(m)] for b in batches]) for m in dims}


def _example(**features: tf.train.Feature) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _write_shards(
    folder: Path, prefix: str, examples: Iterator[bytes], n_examples: int, per_shard: int
) -> list[str]:
    """Writes `n_examples` serialized Examples into ceil(n / per_shard) GZIP shard files."""
    n_shards = -(-n_examples // per_shard)
    names = [f"{prefix}-{i:05d}-of-{n_shards:05d}.tfrecord.gz" for i in range(n_shards)]
    options = tf.io.TFRecordOptions(compression_type=COMPRESSION, compression_level=COMPRESSION_LEVEL)
    for shard, name in enumerate(names):
        with tf.io.TFRecordWriter(str(folder / name), options) as writer:
            for _ in range(min(per_shard, n_examples - shard * per_shard)):
                writer.write(next(examples))
    return names
