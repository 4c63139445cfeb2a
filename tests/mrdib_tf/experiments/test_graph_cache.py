"""k-NN item graphs are built once per feature table, read back identically, and rebuilt when the features change."""

import numpy as np
import pytest

from mrdib_tf.backbones import graph as graph_module
from mrdib_tf.backbones.graph import knn_item_graph
from mrdib_tf.experiments import graph_cache
from mrdib_tf.experiments.graph_cache import cached_knn_graph


def _features(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((40, 6)).astype(np.float32)


def _same(a, b) -> None:
    assert a.n_nodes == b.n_nodes
    for name in ("rows", "cols", "weights"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def _count_builds(monkeypatch) -> list:
    builds = []

    def counting(features, k, weighted=True):
        builds.append(k)
        return knn_item_graph(features, k, weighted)

    monkeypatch.setattr(graph_cache, "knn_item_graph", counting)
    return builds


def test_the_graph_is_built_once_and_read_back_as_built(tmp_path, monkeypatch):
    builds = _count_builds(monkeypatch)
    first = cached_knn_graph(_features(), 5, tmp_path, "image")
    second = cached_knn_graph(_features(), 5, tmp_path, "image")
    assert builds == [5]
    _same(first, knn_item_graph(_features(), 5))
    _same(second, first)
    assert len(list((tmp_path / "graphs").glob("image-k5-*.npz"))) == 1


def test_other_feature_values_or_another_k_get_a_graph_of_their_own(tmp_path, monkeypatch):
    builds = _count_builds(monkeypatch)
    cached_knn_graph(_features(0), 5, tmp_path, "image")
    changed = _features(0)
    changed[3, 2] += 1.0
    _same(cached_knn_graph(changed, 5, tmp_path, "image"), knn_item_graph(changed, 5))
    _same(cached_knn_graph(_features(0), 3, tmp_path, "image"), knn_item_graph(_features(0), 3))
    assert builds == [5, 5, 3]
    unweighted = cached_knn_graph(_features(0), 5, tmp_path, "image", weighted=False)  # FREEDOM's graph
    _same(unweighted, knn_item_graph(_features(0), 5, weighted=False))
    assert builds == [5, 5, 3, 5]
    _same(cached_knn_graph(_features(0), 5, tmp_path, "image", weighted=False), unweighted)
    assert builds == [5, 5, 3, 5] and len(list((tmp_path / "graphs").glob("image-k5-unweighted-*.npz"))) == 1


@pytest.mark.parametrize("damage", [b"", b"not an npz file"])
def test_a_damaged_file_is_rebuilt(tmp_path, monkeypatch, damage):
    cached_knn_graph(_features(), 5, tmp_path, "image")
    (stored,) = (tmp_path / "graphs").glob("*.npz")
    stored.write_bytes(damage)
    builds = _count_builds(monkeypatch)
    _same(cached_knn_graph(_features(), 5, tmp_path, "image"), knn_item_graph(_features(), 5))
    assert builds == [5]
    _same(cached_knn_graph(_features(), 5, tmp_path, "image"), knn_item_graph(_features(), 5))
    assert builds == [5]  # the rebuilt file is good again


def test_mgcn_from_the_tooling_uses_the_cached_graphs(tmp_path, monkeypatch):
    from data_pipeline import load_dataset, write_synthetic_dataset
    from mrdib_tf.experiments.config import RunConfig
    from mrdib_tf.experiments.models import build_backbone

    folder = tmp_path / "tiny"
    write_synthetic_dataset(folder, n_users=60, n_items=40, noise_dims=4, signal_dims=16,
                            interactions_per_user=6, seed=1)
    monkeypatch.setenv("MRDIB_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_dataset(data_dir=folder)
    config = RunConfig(data_dir=str(folder), backbone="mgcn")
    builds = _count_builds(monkeypatch)
    first = build_backbone(dataset, config)
    second = build_backbone(dataset, config)
    assert len(builds) == len(dataset.features)  # the second model read every graph back
    for m in dataset.features:
        expected = knn_item_graph(np.asarray(dataset.features[m], np.float32), 10)
        for table, reference in zip(second.item_graphs[m][:3], (expected.rows, expected.cols, expected.weights)):
            np.testing.assert_array_equal(table.numpy(), reference)
        np.testing.assert_array_equal(first.item_graphs[m][2].numpy(), second.item_graphs[m][2].numpy())
    assert graph_module.knn_item_graph is knn_item_graph  # the library's builder itself was not patched


def test_soils_graphs_are_built_once_and_rebuilt_when_the_training_pairs_change(tmp_path, monkeypatch):
    from mrdib_tf.backbones.soil import soil_graphs

    rng = np.random.default_rng(3)
    features = {"image": np.abs(_features(1)), "text": _features(2)}
    users, items = rng.integers(0, 30, 200), rng.integers(0, 40, 200)
    builds = []
    monkeypatch.setattr(graph_cache, "soil_graphs", lambda *args: builds.append(1) or soil_graphs(*args))
    first = graph_cache.cached_soil_graphs(features, users, items, 30, 40, 5, 3, 2, tmp_path)
    second = graph_cache.cached_soil_graphs(features, users, items, 30, 40, 5, 3, 2, tmp_path)
    assert builds == [1] and set(first) == {"item_image", "item_text", "user_item"}
    want = soil_graphs(features, users, items, 30, 40, 5, 3, 2)
    for name in want:
        _same(second[name], want[name])
        _same(first[name], want[name])
    items[0] = (items[0] + 1) % 40
    changed = graph_cache.cached_soil_graphs(features, users, items, 30, 40, 5, 3, 2, tmp_path)
    assert builds == [1, 1]
    _same(changed["user_item"], soil_graphs(features, users, items, 30, 40, 5, 3, 2)["user_item"])
