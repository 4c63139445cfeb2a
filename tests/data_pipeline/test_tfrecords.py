import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import tfrecords


@pytest.fixture
def small_blocks(monkeypatch):
    """3 pairs per record, 2 records per shard, 2 items per feature shard: exercises the seams."""
    monkeypatch.setattr(tfrecords, "INTERACTIONS_PER_RECORD", 3)
    monkeypatch.setattr(tfrecords, "RECORDS_PER_SHARD", 2)
    monkeypatch.setattr(tfrecords, "ITEMS_PER_SHARD", 2)


def raw_examples(path, compression="GZIP"):
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path), compression)]


def test_interactions_are_sharded_in_blocks_of_user_item_lists(tmp_path, small_blocks):
    users = np.arange(10, dtype=np.int64)
    items = users * 7 % 11
    shards = tfrecords.write_interactions(tmp_path, "train", users, items)
    assert shards == [("train-00000-of-00002.tfrecord.gz", 6), ("train-00001-of-00002.tfrecord.gz", 4)]
    names = [shard.name for shard in shards]
    first = raw_examples(tmp_path / names[0])
    assert [list(e.features.feature["user"].int64_list.value) for e in first] == [[0, 1, 2], [3, 4, 5]]
    last = raw_examples(tmp_path / names[1])
    assert [list(e.features.feature["item"].int64_list.value) for e in last] == [
        [9, 5, 1],
        [8],
    ]  # users 6..9: 7u mod 11
    read_users, read_items = tfrecords.read_interactions([tmp_path / n for n in names])
    np.testing.assert_array_equal(read_users, users)
    np.testing.assert_array_equal(read_items, items)


def test_empty_split_has_no_shards_and_reads_back_empty(tmp_path):
    empty = np.zeros(0, np.int64)
    assert tfrecords.write_interactions(tmp_path, "valid", empty, empty) == []
    users, items = tfrecords.read_interactions([])
    assert users.size == items.size == 0


def test_feature_store_round_trip_one_example_per_item(tmp_path, small_blocks):
    rng = np.random.default_rng(1)
    features = {
        "image": rng.standard_normal((5, 4)).astype(np.float32),
        "item_id": rng.random((5, 2)).astype(np.float32),
    }
    shards = tfrecords.write_features(tmp_path, features)
    assert [shard.count for shard in shards] == [2, 2, 1]
    names = [shard.name for shard in shards]
    assert names[0] == "features-00000-of-00003.tfrecord"  # uncompressed
    example = raw_examples(tmp_path / names[1], compression="")[0]  # item 2
    assert example.features.feature["item_id"].int64_list.value == [2]
    np.testing.assert_array_equal(
        example.features.feature["feat/image"].float_list.value, features["image"][2]
    )
    item_ids, back = tfrecords.read_features([tmp_path / n for n in names], {"image": 4, "item_id": 2})
    np.testing.assert_array_equal(item_ids, np.arange(5))
    for modality, values in features.items():
        np.testing.assert_array_equal(back[modality], values)
    item_ids, back = tfrecords.read_features([tmp_path / names[2], tmp_path / names[0]], {"image": 4})
    np.testing.assert_array_equal(item_ids, [4, 0, 1])  # in file order: checking it is the cache's job
    np.testing.assert_array_equal(back["image"], features["image"][[4, 0, 1]])


def test_serialized_examples_equal_the_protobuf_built_ones():
    columns = {
        "ids": np.array([[4, 5, 6], [7, 8, 9]]),
        "x": np.array([[0.5, -1.0, 2.0], [3.0, 4.0, 5.0]], np.float32),
    }
    records = tfrecords.serialize_examples(columns, lengths=np.array([3, 1]))
    expected = tf.train.Example(
        features=tf.train.Features(
            feature={
                "ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[3.0])),
            }
        )
    )
    assert tf.train.Example.FromString(records[1]) == expected
    first = tf.train.Example.FromString(records[0]).features.feature
    assert list(first["ids"].int64_list.value) == [4, 5, 6]
    assert list(first["x"].float_list.value) == [0.5, -1.0, 2.0]
