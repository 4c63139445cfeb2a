"""trainers.corrupt: each transform's statistics against its definition, the recipe record, determinism, and
bad requests refused in one line before anything is written."""

import hashlib
import json

import numpy as np
import pytest

from data_pipeline import load_dataset
from data_pipeline.corruption import RECIPE_FILE, CorruptionRecipe, corrupt_dataset
from trainers import corrupt

N_USERS, N_ITEMS = 120, 2000
SCALES = np.linspace(0.2, 5.0, 12)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An MMRec folder: 120 users with 50-99 rows each (one valid and one test row each), 2,000 items."""
    folder = tmp_path_factory.mktemp("src") / "toy"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = ["userID\titemID\tx_label"]
    for user in range(N_USERS):
        items = rng.choice(N_ITEMS - 1, size=50 + user % 50, replace=False)
        items[0] = N_ITEMS - 1 if user == 0 else items[0]  # the last item has a row: n_items is N_ITEMS
        labels = np.zeros(items.size, int)
        labels[-2], labels[-1] = 1, 2
        lines += [f"{user}\t{i}\t{x}" for i, x in zip(items, labels)]
    (folder / "toy.inter").write_text("\n".join(lines) + "\n")
    np.save(folder / "image_feat.npy", (1.5 + rng.normal(size=(N_ITEMS, 12)) * SCALES).astype(np.float32))
    np.save(folder / "audio_feat.npy", rng.normal(size=(N_ITEMS, 6)).astype(np.float32))
    return folder


def _corrupt(source, tmp_path, **recipe):
    out = tmp_path / "out"
    record = corrupt_dataset(source, out, CorruptionRecipe(**recipe))
    return out, record


def _features(folder, modality):
    return np.load(folder / f"{modality}_feat.npy")


def _inter(folder):
    table = np.loadtxt(next(folder.glob("*.inter")), skiprows=1, dtype=np.int64, delimiter="\t")
    return table[:, 0], table[:, 1], table[:, 2]


def test_nuisance_columns_are_appended_at_the_mean_column_spread_and_the_rest_is_unchanged(source, tmp_path):
    out, record = _corrupt(source, tmp_path, nuisance_dims={"image": 40})
    before, after = _features(source, "image"), _features(out, "image")
    assert after.shape == (N_ITEMS, 52)
    np.testing.assert_array_equal(after[:, :12], before)
    np.testing.assert_array_equal(_features(out, "audio"), _features(source, "audio"))
    appended = after[:, 12:]
    np.testing.assert_allclose(appended.std(axis=0).mean(), before.std(axis=0).mean(), rtol=0.02)
    np.testing.assert_allclose(appended.mean(), before.mean(axis=0).mean(), atol=0.05)
    correlation = np.corrcoef(np.c_[before, appended].T)[:12, 12:]
    assert np.abs(correlation).max() < 0.1  # 2,000 rows: |r| of independent columns ~ 0.02
    assert record["measured"]["image"]["nuisance_columns"] == [12, 52]


@pytest.mark.parametrize("snr", [4.0, 1.0, 0.25])
def test_added_noise_has_the_requested_signal_to_noise_ratio_in_every_column(source, tmp_path, snr):
    out, record = _corrupt(source, tmp_path, snr={"image": snr, "audio": snr})
    for modality in ("image", "audio"):
        before, after = _features(source, modality).astype(np.float64), _features(out, modality)
        measured = before.var(axis=0) / (after - before).var(axis=0)
        np.testing.assert_allclose(measured.mean(), snr, rtol=0.05)
        np.testing.assert_allclose(np.median(measured), snr, rtol=0.05)
        np.testing.assert_allclose(record["measured"][modality]["snr_mean_over_columns"], measured.mean(), rtol=1e-3)


def test_an_infinite_snr_adds_nothing(source, tmp_path):
    out, _ = _corrupt(source, tmp_path, snr={"image": float("inf")})
    np.testing.assert_array_equal(_features(out, "image"), _features(source, "image"))


def test_shuffled_rows_come_from_other_chosen_items_and_none_keeps_its_own(source, tmp_path):
    out, record = _corrupt(source, tmp_path, shuffle_rows={"audio": 0.3})
    before, after = _features(source, "audio"), _features(out, "audio")
    moved = np.flatnonzero((after != before).any(axis=1))
    assert moved.size == round(0.3 * N_ITEMS) == record["measured"]["audio"]["rows_moved"]
    # the moved rows are a permutation of the chosen items' own rows
    np.testing.assert_array_equal(np.sort(after[moved], axis=0), np.sort(before[moved], axis=0))
    np.testing.assert_array_equal(after[np.setdiff1d(np.arange(N_ITEMS), moved)],
                                  before[np.setdiff1d(np.arange(N_ITEMS), moved)])


def test_missing_rows_are_set_to_the_column_means(source, tmp_path):
    out, record = _corrupt(source, tmp_path, missing_rows={"image": 0.1})
    before, after = _features(source, "image"), _features(out, "image")
    blanked = np.flatnonzero((after != before).any(axis=1))
    assert blanked.size == 200 == record["measured"]["image"]["rows_blanked"]
    np.testing.assert_allclose(after[blanked], np.broadcast_to(before.mean(axis=0, dtype=np.float64), (200, 12)), rtol=1e-6)


@pytest.mark.parametrize("keep", [0.2, 0.5])
def test_each_user_keeps_its_share_of_training_rows_and_every_valid_and_test_row(source, tmp_path, keep):
    out, record = _corrupt(source, tmp_path, keep_train=keep)
    users, items, labels = _inter(source)
    kept_users, kept_items, kept_labels = _inter(out)
    for label in (1, 2):
        assert sorted(zip(kept_users[kept_labels == label], kept_items[kept_labels == label])) == sorted(
            zip(users[labels == label], items[labels == label]))
    original = set(zip(users[labels == 0], items[labels == 0]))
    assert set(zip(kept_users[kept_labels == 0], kept_items[kept_labels == 0])) <= original
    for user in range(N_USERS):
        n = int(((users == user) & (labels == 0)).sum())
        extra = (0, 1) if user == 0 else (0,)  # user 0 alone has the highest item, which keeps its row
        assert int(((kept_users == user) & (kept_labels == 0)).sum()) - max(1, round(keep * n)) in extra
    assert kept_items.max() == N_ITEMS - 1  # the highest item keeps a row, so the catalogue keeps its size
    assert record["measured"]["train_rows"]["after"] == int((kept_labels == 0).sum())


def test_the_recipe_records_the_sources_checksums_and_a_seed_fixes_every_draw(source, tmp_path):
    recipe = dict(snr={"image": 1.0}, shuffle_rows={"audio": 0.5}, keep_train=0.5, seed=7)
    out, record = _corrupt(source, tmp_path, **recipe)
    again = corrupt_dataset(source, tmp_path / "again", CorruptionRecipe(**recipe))
    other = corrupt_dataset(source, tmp_path / "other", CorruptionRecipe(**{**recipe, "seed": 8}))
    for name in ("toy.inter", "image_feat.npy", "audio_feat.npy"):
        assert record["source_sha256"][name] == hashlib.sha256((source / name).read_bytes()).hexdigest()
    assert json.loads((out / RECIPE_FILE).read_text())["recipe"]["seed"] == 7
    np.testing.assert_array_equal(_features(out, "image"), _features(tmp_path / "again", "image"))
    assert (out / "out.inter").read_text().splitlines()[1:] != []
    assert not np.array_equal(_features(out, "image"), _features(tmp_path / "other", "image"))
    assert again["measured"] == record["measured"] and other["measured"] != record["measured"]


def test_the_command_writes_a_dataset_the_pipeline_reads(source, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MRDIB_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "toy-noisy"
    assert corrupt.main(["--data-dir", str(source), "--out", str(out), "--nuisance-dims", "image=4",
                         "--snr", "audio=2", "--keep-train", "0.5"]) == 0
    dataset = load_dataset(data_dir=str(out))
    assert dataset.features["image"].shape == (N_ITEMS, 16) and dataset.features["audio"].shape == (N_ITEMS, 6)
    assert "written to" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--snr", "video=1"], "--snr video=1.0: the dataset has no modality 'video'; it has ['audio', 'image']"),
    (["--snr", "image=0"], "expected a signal-to-noise ratio > 0"),
    (["--nuisance-dims", "image=0"], "--nuisance-dims image=0: expected an integer number of columns >= 1"),
    (["--nuisance-dims", "image=2.5"], "expected MODALITY=INT"),
    (["--shuffle-rows", "image=1.5"], "expected a fraction of rows in [0, 1]"),
    (["--missing-rows", "image"], "expected MODALITY=FLOAT"),
    (["--snr", "image=1", "--snr", "image=2"], "modality 'image' given twice"),
    (["--keep-train", "0"], "--keep-train 0.0: expected a fraction of training rows in (0, 1]"),
    (["--seed", "-1"], "--seed: expected an integer >= 0"),
])
def test_bad_requests_are_one_line_errors_and_nothing_is_written(source, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert corrupt.main(["--data-dir", str(source), "--out", str(out), *flags]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_existing_destination_or_one_inside_the_source_is_refused(source, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert corrupt.main(["--data-dir", str(source), "--out", str(tmp_path / "taken"), "--snr", "image=1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert corrupt.main(["--data-dir", str(source), "--out", str(source / "inner"), "--snr", "image=1"]) == 2
    assert "must lie outside the source folder" in capsys.readouterr().err
    assert not (source / "inner").exists()
