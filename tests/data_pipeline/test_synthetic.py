import json
import time

import numpy as np
import pytest

from data_pipeline.dataset import load_dataset
from data_pipeline.synthetic import STRUCTURE_FILE, write_synthetic_dataset


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic") / "syn"
    truth = write_synthetic_dataset(folder, n_users=800, n_items=1000, noise_dims=24, seed=3)
    return folder, truth, load_dataset(data_dir=folder, cache_root=folder.parent / "cache")


def held_out_r2(inputs: np.ndarray, targets: np.ndarray) -> float:
    """R^2 of a least-squares fit (with intercept) on the first half of rows, scored on the second."""
    x = np.column_stack([inputs, np.ones(len(inputs))])
    half = len(x) // 2
    coef, *_ = np.linalg.lstsq(x[:half], targets[:half], rcond=None)
    residual = targets[half:] - x[half:] @ coef
    return float(1 - residual.var(axis=0).sum() / targets[half:].var(axis=0).sum())


def test_loads_through_load_dataset_with_the_declared_shapes(synthetic):
    folder, truth, data = synthetic
    n_items = truth.description["n_items"]
    assert (data.name, data.n_users, data.n_items) == ("syn", 800, n_items)
    assert 950 < n_items <= 1000  # only items nobody picked are dropped
    assert {m: f.shape for m, f in data.features.items()} == {"image": (n_items, 56), "text": (n_items, 56)}
    assert json.loads((folder / STRUCTURE_FILE).read_text()) == truth.description
    for columns in truth.feature_columns.values():
        assert sorted(columns["signal"] + columns["noise"]) == list(range(56))
        assert len(columns["noise"]) == 24


def test_every_user_has_train_valid_and_test_rows_split_about_8_1_1(synthetic):
    _, _, data = synthetic
    for split in (data.train, data.valid, data.test):
        assert split.users_with_items().size == data.n_users
    total = data.train.nnz + data.valid.nnz + data.test.nnz
    assert abs(data.train.nnz / total - 0.8) < 0.03
    assert abs(data.valid.nnz / total - 0.1) < 0.02 and data.valid.nnz == data.test.nnz
    assert data.manifest["dropped_cold_start"]["users"] == 0


def test_unique_redundant_and_synergistic_factors_are_where_declared(synthetic):
    _, truth, data = synthetic
    image, text = data.features["image"], data.features["text"]
    factors = truth.factors
    assert held_out_r2(image, factors["redundant"]) > 0.99
    assert held_out_r2(text, factors["redundant"]) > 0.99
    assert held_out_r2(image, factors["unique_image"]) > 0.99
    assert held_out_r2(text, factors["unique_image"]) < 0.1
    assert held_out_r2(text, factors["unique_text"]) > 0.99
    assert held_out_r2(image, factors["unique_text"]) < 0.1
    # The synergistic factor is invisible to each modality alone and to both linearly...
    for inputs in (image, text, np.hstack([image, text])):
        assert held_out_r2(inputs, factors["synergistic"]) < 0.1
    # ...but is the product of what each modality sees.
    product = factors["synergy_image"] * factors["synergy_text"]
    np.testing.assert_allclose(factors["synergistic"], product)
    assert held_out_r2(image, factors["synergy_image"]) > 0.99


def test_noise_columns_are_unrelated_to_preferences_and_signal_columns_are_not(synthetic):
    _, truth, data = synthetic
    scores = truth.scores()
    scores = (scores - scores.mean(1, keepdims=True)) / scores.std(1, keepdims=True)
    for modality, columns in truth.feature_columns.items():
        x = data.features[modality].astype(np.float64)
        x = (x - x.mean(0)) / x.std(0)
        squared_corr = (scores @ x / data.n_items) ** 2  # [users, columns]
        chance = 1 / data.n_items
        assert squared_corr[:, columns["noise"]].mean() < 1.5 * chance
        assert squared_corr[:, columns["signal"]].mean() > 10 * chance


def test_users_interact_with_the_items_they_score_highest(synthetic):
    _, truth, data = synthetic
    scores = truth.scores()
    users, items = data.train_pairs()
    chosen = scores[users, items].mean()
    assert chosen > scores.mean() + 1.5 * scores.std()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    write_synthetic_dataset(tmp_path / "a" / "syn", 50, 60, interactions_per_user=5, seed=1)
    write_synthetic_dataset(tmp_path / "b" / "syn", 50, 60, interactions_per_user=5, seed=1)
    write_synthetic_dataset(tmp_path / "c" / "syn", 50, 60, interactions_per_user=5, seed=2)
    same = [(tmp_path / d / "syn" / "syn.inter").read_bytes() for d in "abc"]
    assert same[0] == same[1] != same[2]
    np.testing.assert_array_equal(
        np.load(tmp_path / "a/syn/image_feat.npy"), np.load(tmp_path / "b/syn/image_feat.npy")
    )


def test_a_few_thousand_users_and_items_generate_quickly(tmp_path):
    start = time.perf_counter()
    write_synthetic_dataset(tmp_path / "big", n_users=3000, n_items=2000, noise_dims=64)
    assert time.perf_counter() - start < 5.0  # about 0.6 s unloaded; generous for 2 busy cores


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"signal_dims": 5}, "signal_dims"),
        ({"modalities": ("image", "image")}, "distinct"),
        ({"n_items": 10}, "n_items >= 2 \\* interactions_per_user"),
    ],
)
def test_impossible_settings_are_rejected(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_synthetic_dataset(tmp_path / "bad", **{"n_users": 20, "n_items": 100, **kwargs})
