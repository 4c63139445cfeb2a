import dataclasses
import gc
import gzip
import hashlib
import json
import logging
import os

import numpy as np
import pytest

from data_pipeline import cache
from data_pipeline.dataset import PreparedDataset, load_dataset
from data_pipeline.errors import DataValidationError
from data_pipeline.interactions import UserItems
from data_pipeline.registry import DATA_DIR_ENV, PROJECT_ROOT, resolve_dataset


def pairs(user_items):
    """Sorted (user, item) tuples of a UserItems."""
    users, items = user_items.to_pairs()
    return sorted(zip(users.tolist(), items.tolist(), strict=True))


def batch_pairs(batches):
    """Sorted (user, pos_item) tuples of an epoch's batches."""
    users = np.concatenate([b["user"] for b in batches]).tolist()
    items = np.concatenate([b["pos_item"] for b in batches]).tolist()
    return sorted(zip(users, items, strict=True))


@pytest.fixture
def toy_data(make_folder, tmp_path):
    folder = make_folder()
    return folder, load_dataset(data_dir=folder, cache_root=tmp_path / "cache")


@pytest.fixture
def dense(make_folder, tmp_path):
    """60 users x 12 items; each user has 10 train items (most draws collide), 1 valid, 1 test."""
    rng = np.random.default_rng(7)
    rows = []
    for user in range(60):
        items = rng.permutation(12)
        rows += [(user, i, 0) for i in items[:10]] + [(user, items[10], 1), (user, items[11], 2)]
    folder = make_folder(name="dense", rows=rows, features={"image": np.zeros((12, 2))})
    return load_dataset(data_dir=folder, cache_root=tmp_path / "cache")


def epoch(data, batch_size, seed, epoch_index):
    return list(data.train_batches(batch_size, seed, epoch_index).as_numpy_iterator())


def test_toy_round_trip_through_the_cache(toy_data):
    folder, data = toy_data
    assert (data.name, data.n_users, data.n_items) == ("toy", 4, 5)
    assert pairs(data.train) == [(0, 0), (0, 1), (1, 1), (1, 4), (2, 2), (2, 3), (2, 4)]
    assert pairs(data.valid) == [(0, 2), (1, 0), (2, 0)]  # user 3's rows dropped (cold start)
    assert pairs(data.test) == [(0, 3), (1, 2), (2, 1)]
    assert list(data.features) == ["image", "text"]
    for modality in ("image", "text"):
        expected = np.load(folder / f"{modality}_feat.npy").astype(np.float32)
        np.testing.assert_array_equal(data.features[modality], expected)
    assert data.manifest == json.loads((data.cache_dir / cache.MANIFEST_NAME).read_text())
    users, items = data.train_pairs()
    assert users.dtype == items.dtype == np.int64


def test_five_column_file_loads_the_same_as_three_columns(make_folder, toy_data, toy_rows, tmp_path):
    _, three = toy_data
    text = "rating\titemID\ttimestamp\tx_label\tuserID\n" + "".join(
        f"5.0\t{i}\t{1_400_000_000 + n}\t{x}\t{u}\n" for n, (u, i, x) in enumerate(toy_rows)
    )
    folder = make_folder(name="five_col", text=text)
    five = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    for split in ("train", "valid", "test"):
        assert pairs(getattr(five, split)) == pairs(getattr(three, split))
    assert (five.n_users, five.n_items) == (three.n_users, three.n_items)


def test_cold_start_drop_is_logged_and_recorded(make_folder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="data_pipeline.dataset"):
        data = load_dataset(data_dir=make_folder(), cache_root=tmp_path / "cache")
    assert "dropped 1 cold-start users (no train row): 1 valid and 1 test rows" in caplog.text
    assert data.manifest["dropped_cold_start"] == {"users": 1, "valid_rows": 1, "test_rows": 1}


def test_interaction_only_folder(make_folder, tmp_path):
    folder = make_folder(features={})
    with pytest.raises(DataValidationError, match=r"'toy': no feature files.*image_feat\.npy.*text_feat\.npy"):
        load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    data = load_dataset(data_dir=folder, cache_root=tmp_path / "cache", require_features=False)
    assert data.features == {} and data.manifest["modalities"] == {}
    assert data.train.nnz == 7


def test_missing_inter_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match=r"empty\.inter: interaction file not found"):
        load_dataset(data_dir=tmp_path / "empty", cache_root=tmp_path / "cache")


def test_validation_errors_surface_through_load_dataset(make_folder, tmp_path):
    folder = make_folder(text="userID\titemID\tx_label\n0\t1\t0\n0\t2\t7\n")
    with pytest.raises(DataValidationError, match=r"line 3, column 'x_label'"):
        load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_second_load_reuses_the_cache_and_a_touch_does_not_rebuild(toy_data, tmp_path):
    folder, data = toy_data
    shard = data.cache_dir / cache.shard_names(data.manifest)[0]
    stamp = shard.stat().st_mtime_ns
    assert load_dataset(data_dir=folder, cache_root=tmp_path / "cache").cache_dir == data.cache_dir
    inter = folder / "toy.inter"
    os.utime(inter, ns=(0, inter.stat().st_mtime_ns + 5 * 10**9))
    again = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    assert again.cache_dir == data.cache_dir and shard.stat().st_mtime_ns == stamp
    assert again.manifest["sources"]["toy.inter"]["mtime_ns"] == inter.stat().st_mtime_ns


def test_changed_source_rebuilds(toy_data, tmp_path):
    folder, data = toy_data
    with (folder / "toy.inter").open("a") as stream:
        stream.write("3\t0\t0\n")  # user 3 now has a train row: no longer cold
    np.save(folder / "text_feat.npy", np.ones((5, 3)))
    rebuilt = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    assert rebuilt.cache_dir != data.cache_dir and rebuilt.cache_dir.parent == data.cache_dir.parent
    assert rebuilt.train.nnz == 8 and rebuilt.valid.nnz == 4
    assert rebuilt.manifest["dropped_cold_start"]["users"] == 0
    np.testing.assert_array_equal(rebuilt.features["text"], np.ones((5, 3), np.float32))


def test_a_leftover_temporary_build_is_never_used(make_folder, tmp_path):
    folder = make_folder()
    cache_dir = cache.cache_dir_for(resolve_dataset(data_dir=folder), tmp_path / "cache")
    leftover = cache_dir / cache.BUILDS_NAME / ".tmp-999999999-dead"  # no such pid
    leftover.mkdir(parents=True)
    (leftover / cache.MANIFEST_NAME).write_text('{"format_version": 1, "n_users": 99}')
    data = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    assert data.n_users == 4
    assert not leftover.exists()


def _truncate_train_shard(data):
    shard = data.cache_dir / data.manifest["splits"]["train"]["shards"][0]["name"]
    shard.write_bytes(shard.read_bytes()[:-40])
    return shard


def _flip_a_feature_byte(data):
    shard = data.cache_dir / data.manifest["feature_shards"][0]["name"]
    content = bytearray(shard.read_bytes())
    content[len(content) // 2] ^= 0x10
    shard.write_bytes(bytes(content))
    return shard


def _edit_manifest(data):
    manifest = data.cache_dir / cache.MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace('"n_users": 4', '"n_users": 5'))
    return manifest


def _break_manifest(data):
    manifest = data.cache_dir / cache.MANIFEST_NAME
    manifest.write_text(manifest.read_text()[:100])
    return manifest


@pytest.mark.parametrize("damage", [_truncate_train_shard, _flip_a_feature_byte, _edit_manifest, _break_manifest])
def test_a_damaged_cache_is_rebuilt_and_the_file_named(toy_data, tmp_path, caplog, damage):
    folder, data = toy_data
    damaged = damage(data)
    with caplog.at_level(logging.WARNING, logger="data_pipeline.dataset"):
        again = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    assert f"toy: the dataset cache is damaged, rebuilding it: {damaged}" in caplog.text
    assert again.cache_dir != data.cache_dir
    assert (again.n_users, pairs(again.train), pairs(again.test)) == (4, pairs(data.train), pairs(data.test))
    for modality, values in data.features.items():
        np.testing.assert_array_equal(again.features[modality], values)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="data_pipeline.dataset"):
        assert load_dataset(data_dir=folder, cache_root=tmp_path / "cache").cache_dir == again.cache_dir
    assert "damaged" not in caplog.text


def test_a_cache_that_does_not_read_back_even_when_rebuilt_is_an_error(make_folder, tmp_path, monkeypatch):
    from data_pipeline import tfrecords

    write = tfrecords.write_interactions

    def lossy_write(folder, split, users, items):  # a disk that loses the end of what it is given
        shards = write(folder, split, users, items)
        for shard in shards:
            (folder / shard.name).write_bytes((folder / shard.name).read_bytes()[:-40])
        return shards

    monkeypatch.setattr(tfrecords, "write_interactions", lossy_write)
    with pytest.raises(DataValidationError) as error:
        load_dataset(data_dir=make_folder(), cache_root=tmp_path / "cache")
    message = str(error.value)
    assert message.startswith(str(tmp_path / "cache")) and "-00000-of-00001.tfrecord.gz: unreadable (" in message
    assert "the cache was just rebuilt from" in message


def test_an_unwritable_cache_root_is_an_error_naming_it(make_folder, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(DataValidationError, match=rf"^{blocker}/toy-[0-9a-f]{{12}}: cannot read or write"):
        load_dataset(data_dir=make_folder(), cache_root=blocker)


def test_a_rebuild_leaves_the_shards_a_running_training_streams(make_folder, tmp_path):
    folder = make_folder()
    running = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    before = batch_pairs(epoch(running, 4, seed=0, epoch_index=0))
    with (folder / "toy.inter").open("a") as stream:
        stream.write("3\t0\t0\n")  # another process's run sees a changed source and rebuilds
    rebuilt = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    assert rebuilt.train.nnz == 8 and rebuilt.cache_dir != running.cache_dir
    assert batch_pairs(epoch(running, 4, seed=0, epoch_index=1)) == before
    del running
    gc.collect()  # the first dataset's lease is released: the next rebuild may delete its build
    (folder / "toy.inter").write_text((folder / "toy.inter").read_text() + "3\t1\t0\n")
    newest = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    assert sorted(p.name for p in newest.cache_dir.parent.iterdir()) == sorted(
        [rebuilt.cache_dir.name, newest.cache_dir.name]
    )


def test_real_tiktok_counts(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    data = load_dataset("tiktok")
    assert (data.n_users, data.n_items) == (9308, 6710)
    splits = data.manifest["splits"]
    assert {s: splits[s]["source_rows"] for s in splits} == {"train": 59541, "valid": 6130, "test": 3051}
    # 10 users have no train row; MMRec drops their 5 valid and 5 test rows.
    assert data.manifest["dropped_cold_start"] == {"users": 10, "valid_rows": 5, "test_rows": 5}
    assert (data.train.nnz, data.valid.nnz, data.test.nnz) == (59541, 6125, 3046)
    assert data.train.users_with_items().size == 9298
    assert {m: f.shape for m, f in data.features.items()} == {"audio": (6710, 128), "image": (6710, 128)}
    image = np.load(PROJECT_ROOT / "data" / "tiktok" / "image_feat.npy")
    np.testing.assert_array_equal(data.features["image"], image.astype(np.float32))


# Published statistics of MMRec's Amazon datasets: users, items, and train / valid / test rows.
AMAZON = {
    "baby": (19445, 7050, (118551, 20559, 21682)),
    "sports": (35598, 18357, (218409, 37899, 40029)),
    "clothing": (39387, 23033, (197338, 40150, 41189)),
}


@pytest.mark.parametrize("name", sorted(AMAZON))
def test_shipped_amazon_datasets_load_by_name_without_features(monkeypatch, tmp_path, name):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    data = load_dataset(name, cache_root=tmp_path / "cache", require_features=False)
    n_users, n_items, rows = AMAZON[name]
    assert (data.n_users, data.n_items, data.features) == (n_users, n_items, {})
    splits = data.manifest["splits"]
    assert tuple(splits[s]["source_rows"] for s in ("train", "valid", "test")) == rows
    assert data.manifest["dropped_cold_start"]["users"] == 0  # 5-core: every user has train rows
    assert (data.train.nnz, data.valid.nnz, data.test.nnz) == rows
    assert data.manifest["sources"].keys() == {f"{name}.inter.gz"}


def test_an_amazon_dataset_without_features_says_which_files_and_where(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataValidationError) as error:
        load_dataset("clothing", cache_root=tmp_path / "cache")
    message = str(error.value)
    for expected in (
        "image_feat.npy (float32 [23033, 4096]",
        "text_feat.npy (float32 [23033, 384]",
        "drive.google.com/drive/folders/13cBy1EA_saTUuXxVllKgtfci2A09jyaG",
        f"Put the files in {PROJECT_ROOT / 'data' / 'clothing'}/ or $MRDIB_DATA_DIR/clothing/.",
    ):
        assert expected in message


def test_features_from_the_data_dir_variable_join_the_shipped_interactions(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    features = {"image": rng.standard_normal((7050, 3)), "text": rng.standard_normal((7050, 2))}
    (tmp_path / "baby").mkdir()
    for modality, values in features.items():
        np.save(tmp_path / "baby" / f"{modality}_feat.npy", values.astype(np.float32))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    data = load_dataset("baby", cache_root=tmp_path / "cache")
    assert data.n_items == 7050 and data.train.nnz == 118551
    for modality, values in features.items():
        np.testing.assert_array_equal(data.features[modality], values.astype(np.float32))
    assert data.manifest["feature_dir"] == str((tmp_path / "baby").resolve())
    assert data.manifest["source_dir"] == str((PROJECT_ROOT / "data" / "baby").resolve())


def test_a_gzipped_interaction_file_keys_the_cache_by_its_own_checksum(make_folder, tmp_path):
    folder = make_folder()
    packed = folder / "toy.inter.gz"
    packed.write_bytes(gzip.compress((folder / "toy.inter").read_bytes(), mtime=0))
    (folder / "toy.inter").unlink()
    data = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    recorded = data.manifest["sources"]["toy.inter.gz"]
    assert recorded["sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert data.train.nnz == 7
    os.utime(packed, ns=(0, packed.stat().st_mtime_ns + 5 * 10**9))  # touched, same bytes: kept
    assert load_dataset(data_dir=folder, cache_root=tmp_path / "cache").manifest["sources"]["toy.inter.gz"][
        "mtime_ns"
    ] == packed.stat().st_mtime_ns
    text = gzip.decompress(packed.read_bytes()) + b"3\t0\t0\n"  # user 3 gets a train row
    packed.write_bytes(gzip.compress(text, mtime=0))
    rebuilt = load_dataset(data_dir=folder, cache_root=tmp_path / "cache")
    assert rebuilt.train.nnz == 8 and rebuilt.manifest["dropped_cold_start"]["users"] == 0


def test_every_train_pair_once_per_epoch_in_full_batches_but_the_last(dense):
    batches = epoch(dense, 128, seed=3, epoch_index=0)
    assert len(batches) == dense.steps_per_epoch(128) == 5  # 600 pairs
    assert [len(b["user"]) for b in batches] == [128, 128, 128, 128, 88]
    assert batch_pairs(batches) == pairs(dense.train)
    assert all(b[k].dtype == np.int64 for b in batches for k in ("user", "pos_item", "neg_item"))


def test_negatives_are_never_train_positives(dense):
    positives = set(pairs(dense.train))
    for index in range(3):
        for batch in epoch(dense, 100, seed=index, epoch_index=index):
            drawn = zip(batch["user"].tolist(), batch["neg_item"].tolist(), strict=True)
            assert not positives.intersection(drawn)


def test_negatives_cover_the_allowed_items_evenly_over_epochs(dense):
    # Each dense user has exactly 2 allowed items; over 16 epochs x 10 draws, each should get ~half.
    counts = np.zeros((dense.n_users, dense.n_items))
    for index in range(16):
        for batch in epoch(dense, 600, seed=0, epoch_index=index):
            np.add.at(counts, (batch["user"], batch["neg_item"]), 1)
    allowed = np.ones_like(counts, dtype=bool)
    allowed[dense.train_pairs()] = False
    assert counts[~allowed].sum() == 0
    share = counts[allowed].reshape(dense.n_users, 2)[:, 0] / 160  # sd 0.04 per user, 0.005 overall
    assert abs(share.mean() - 0.5) < 0.02 and share.min() > 0.3 and share.max() < 0.7


def test_deterministic_per_seed_and_epoch_and_reshuffled_across_epochs(dense):
    first = epoch(dense, 64, seed=1, epoch_index=2)
    again = epoch(dense, 64, seed=1, epoch_index=2)
    for a, b in zip(first, again, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for other in (epoch(dense, 64, seed=1, epoch_index=3), epoch(dense, 64, seed=2, epoch_index=2)):
        assert not np.array_equal(first[0]["user"], other[0]["user"])


def test_in_memory_dataset_batches_the_same_pairs_as_the_cached_one(dense):
    in_memory = PreparedDataset(
        dense.name, dense.n_users, dense.n_items, {}, dense.train, dense.valid, dense.test, dense.cache_dir
    )
    assert batch_pairs(epoch(in_memory, 256, seed=0, epoch_index=0)) == pairs(dense.train)


def test_a_copy_with_another_train_set_batches_that_train_set(dense):
    users, items = dense.train_pairs()
    subset = UserItems.from_pairs(users[::3], items[::3], dense.n_users, dense.n_items)
    copy = dataclasses.replace(dense, train=subset)
    batches = epoch(copy, 64, seed=0, epoch_index=0)
    assert batch_pairs(batches) == pairs(subset)
    drawn = {(u, i) for b in batches for u, i in zip(b["user"].tolist(), b["neg_item"].tolist(), strict=True)}
    assert not drawn & set(pairs(subset))


def test_train_batches_rejects_impossible_requests(dense):
    full = dataclasses.replace(dense, train=UserItems.from_pairs([0] * 12, range(12), 60, 12))
    with pytest.raises(ValueError, match="User 0 has all 12 items of the 'all' negative pool in train"):
        full.train_batches(8, 0, 0)
    with pytest.raises(ValueError, match="negative_pool must be one of"):
        dense.train_batches(8, 0, 0, negative_pool="popular")
    with pytest.raises(ValueError, match="batch_size"):
        dense.train_batches(0, 0, 0)
    empty = dataclasses.replace(dense, train=UserItems.from_pairs([], [], 60, 12))
    with pytest.raises(ValueError, match="no train pairs"):
        empty.train_batches(8, 0, 0)


def test_train_pool_negatives_are_items_seen_in_training(dense):
    # Items 10 and 11 occur only in validation/test: the 'train' pool never offers them as negatives.
    users = np.repeat(np.arange(60), 3)
    items = np.array([i for u in range(60) for i in ((u % 10), (u + 3) % 10, (u + 6) % 10)])
    train = UserItems.from_pairs(users, items, 60, 12)
    copy = dataclasses.replace(dense, train=train)
    drawn = [b["neg_item"] for b in copy.train_batches(64, 0, 0, negative_pool="train").as_numpy_iterator()]
    assert set(np.concatenate(drawn).tolist()) <= set(range(10))
    everything = [b["neg_item"] for b in copy.train_batches(64, 0, 0).as_numpy_iterator()]
    assert {10, 11} & set(np.concatenate(everything).tolist())
