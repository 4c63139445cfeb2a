"""FREEDOM against a dense numpy transcription of its equations (the unweighted k-NN graph, the mixed
item-item graph, LightGCN over the full or denoised user-item graph, its two BPR terms), its
degree-sensitive edge pruning against the exact sampling law, under XLA, and wrapped by MRdIB."""

import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.backbones import FREEDOM
from mrdib_tf.backbones.freedom import mmrec_graph_weights
from mrdib_tf.backbones.graph import NormalizedGraph, degree_sensitive_pruning, knn_item_graph
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer

USERS = np.array([0, 0, 1, 2, 2, 3, 4, 4, 4])
ITEMS = np.array([0, 1, 1, 2, 5, 3, 0, 4, 5])
N_USERS, N_ITEMS = 5, 6
K = 3


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((N_ITEMS, 7)), "text": rng.standard_normal((N_ITEMS, 4))}


def _model(**kwargs):
    settings = dict(embedding_dim=3, knn_k=K, edge_dropout=0.0, name="freedom")
    return FREEDOM(N_USERS, N_ITEMS, USERS, ITEMS, _features(), **{**settings, **kwargs})


def _dense(graph: NormalizedGraph, n: int) -> np.ndarray:
    matrix = np.zeros((n, n))
    np.add.at(matrix, (graph.rows, graph.cols), graph.weights)
    return matrix


def _unweighted_knn_reference(features, k):
    """FREEDOM's item-item graph by brute force: the full similarity matrix, 1 per kept link, D^-1/2 A D^-1/2."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    adjacency = np.zeros_like(similarity)
    for i, row in enumerate(similarity):
        adjacency[i, np.argsort(-row)[:k]] = 1.0
    degree = adjacency.sum(axis=1)  # FREEDOM normalizes both sides with the row sums
    return adjacency / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]


def _bipartite_reference(users=USERS, items=ITEMS):
    n = N_USERS + N_ITEMS
    adjacency = np.zeros((n, n))
    adjacency[users, N_USERS + items] = 1.0
    adjacency[N_USERS + items, users] = 1.0
    degree = adjacency.sum(axis=1) + 1e-7
    return adjacency / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]


def _freedom_reference(model: FREEDOM, adjacency: np.ndarray):
    """Final (users, items): LightGCN's layer mean over `adjacency`, items plus S @ item ids (S mixed 0.1/0.9)."""
    features = _features()
    item_item = 0.1 * _unweighted_knn_reference(features["image"], K) + 0.9 * _unweighted_knn_reference(
        features["text"], K)
    ids = np.concatenate([model.user_embedding.numpy(), model.item_embedding.numpy()])
    layers = [ids]
    for _ in range(model.n_ui_layers):
        layers.append(adjacency @ layers[-1])
    mean = np.mean(layers, axis=0)
    return mean[:N_USERS], mean[N_USERS:] + item_item @ model.item_embedding.numpy()


def _bpr(u, p, n):
    return np.mean(np.log1p(np.exp(-((u * p).sum(1) - (u * n).sum(1)))))


def test_unweighted_knn_graph_matches_brute_force_with_chunks_of_unequal_size():
    features = _features(3)["image"]
    got = _dense(knn_item_graph(features, K, weighted=False, chunk_rows=4), N_ITEMS)
    np.testing.assert_allclose(got, _unweighted_knn_reference(features, K), rtol=1e-5, atol=1e-7)


def test_mmrec_graph_weights():
    assert mmrec_graph_weights(("image", "text")) == {"image": 0.1, "text": 0.9}
    assert mmrec_graph_weights(("audio", "image")) == {"audio": 0.9, "image": 0.1}
    assert mmrec_graph_weights(("audio", "image", "text")) == pytest.approx({"audio": 0.45, "image": 0.1, "text": 0.45})
    assert mmrec_graph_weights(("audio", "text")) == {"audio": 0.5, "text": 0.5}
    assert mmrec_graph_weights(("image",)) == {"image": 1.0}


@pytest.mark.parametrize("jit", [False, True])
def test_scores_use_the_full_graph_and_the_item_item_graph(jit):
    model = _model(edge_dropout=0.5)  # training prunes; scoring must not
    users, items = tf.function(lambda: model(), jit_compile=jit)()
    want_users, want_items = _freedom_reference(model, _bipartite_reference())
    np.testing.assert_allclose(users.numpy(), want_users, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), want_items, rtol=1e-4, atol=1e-6)


def test_training_losses_are_bpr_over_the_denoised_graph_and_reg_weight_times_each_modalitys_bpr():
    model = _model(edge_dropout=0.5, reg_weight=3.0, seed=4)
    model.begin_epoch(2)
    kept = model.pruned[0].numpy() < N_USERS  # the user -> item half of the drawn graph
    kept_users, kept_items = model.pruned[0].numpy()[kept], model.pruned[1].numpy()[kept] - N_USERS
    assert len(kept_users) == int(len(USERS) * 0.5)
    users_table, items_table = _freedom_reference(model, _bipartite_reference(kept_users, kept_items))
    users, pos, neg = np.array([0, 2, 4]), np.array([1, 5, 0]), np.array([3, 3, 2])
    terms = model.training_losses({"user": tf.constant(users), "pos_item": tf.constant(pos),
                                   "neg_item": tf.constant(neg)})
    u = users_table[users]
    np.testing.assert_allclose(float(terms["ranking"]), _bpr(u, items_table[pos], items_table[neg]), rtol=1e-4)
    modality = 0.0
    for m, f in _features().items():
        projected = f @ model.projections[m].kernel.numpy() + model.projections[m].bias.numpy()
        modality += _bpr(u, projected[pos], projected[neg])
    np.testing.assert_allclose(float(terms["modality_ranking"]), 3.0 * modality, rtol=1e-4)


def test_what_encode_returns_is_what_the_modality_terms_score():
    model = _model(reg_weight=2.0)
    batch = {"user": tf.constant([0, 3]), "pos_item": tf.constant([1, 3]), "neg_item": tf.constant([2, 0])}
    seen = {}

    def encode(representations, pos_rows, neg_rows):
        seen.update(pos=pos_rows.numpy(), neg=neg_rows.numpy())
        return {m: tf.zeros_like(h) for m, h in representations.items()}

    terms = model.training_losses(batch, encode)
    np.testing.assert_array_equal(seen["pos"], [0, 1])
    np.testing.assert_array_equal(seen["neg"], [2, 3])
    np.testing.assert_allclose(float(terms["modality_ranking"]), 2.0 * 2 * np.log(2.0), rtol=1e-6)  # 2 modalities


def test_pruning_keeps_the_requested_pairs_renormalized_with_their_own_degrees():
    graph = degree_sensitive_pruning(USERS, ITEMS, N_USERS, N_ITEMS, keep=4, rng=np.random.default_rng(0))
    to_items = graph.rows < N_USERS
    kept_users, kept_items = graph.rows[to_items], graph.cols[to_items] - N_USERS
    assert len(kept_users) == 4 and len(graph.rows) == 8
    assert set(zip(kept_users, kept_items)) <= set(zip(USERS, ITEMS))
    np.testing.assert_allclose(_dense(graph, N_USERS + N_ITEMS), _bipartite_reference(kept_users, kept_items),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="keep must be in"):
        degree_sensitive_pruning(USERS, ITEMS, N_USERS, N_ITEMS, keep=len(USERS) + 1, rng=np.random.default_rng(0))


def test_pruning_draws_pairs_with_probability_proportional_to_inverse_sqrt_degrees():
    # One pair kept: it is pair e with probability w_e / sum(w), w_e = 1/sqrt(d_u d_i) (the first draw of
    # MMRec's multinomial). Two kept: the law of two successive draws without replacement.
    user_degree, item_degree = np.bincount(USERS), np.bincount(ITEMS)
    weights = 1.0 / np.sqrt(user_degree[USERS] * item_degree[ITEMS])
    first = weights / weights.sum()
    pairs = {(u, i): e for e, (u, i) in enumerate(zip(USERS, ITEMS))}
    rng = np.random.default_rng(11)
    draws = 8000
    once, twice = np.zeros(len(USERS)), np.zeros(len(USERS))
    for _ in range(draws):
        for keep, counts in ((1, once), (2, twice)):
            graph = degree_sensitive_pruning(USERS, ITEMS, N_USERS, N_ITEMS, keep, rng)
            for u, i in zip(graph.rows[: keep], graph.cols[: keep] - N_USERS):
                counts[pairs[(u, i)]] += 1
    np.testing.assert_allclose(once / draws, first, atol=0.015)
    # P(e among two) = p_e + sum_{f != e} p_f p_e / (1 - p_f)
    second = np.array([first[e] + sum(first[f] * first[e] / (1 - first[f]) for f in range(len(first)) if f != e)
                       for e in range(len(first))])
    np.testing.assert_allclose(twice / draws, second, atol=0.02)
    assert second[ITEMS == 3].item() > second[(USERS == 4) & (ITEMS == 0)].item()  # low-degree pairs favoured


def test_each_epochs_graph_depends_only_on_the_seed_and_the_epoch():
    def drawn(model, epoch):
        model.begin_epoch(epoch)
        return tuple(t.numpy().copy() for t in model.pruned[:3])

    a, b, other_seed = _model(edge_dropout=0.5, seed=1), _model(edge_dropout=0.5, seed=1), _model(edge_dropout=0.5, seed=2)
    drawn(a, 0), drawn(a, 1)
    for x, y in zip(drawn(a, 3), drawn(b, 3)):  # a drew epochs 0-2 first, b did not
        np.testing.assert_array_equal(x, y)
    draws = {tuple(map(tuple, drawn(a, e)[:2])) for e in range(6)}
    assert len(draws) > 1
    assert any(not np.array_equal(x, y) for x, y in zip(drawn(a, 4), drawn(other_seed, 4)))


@pytest.mark.parametrize("trainable, jit", [(True, True), (False, False)])
def test_mrdib_wraps_freedom_and_a_training_step_fine_tunes_the_features_only_when_asked(trainable, jit):
    model = Recommender(_model(edge_dropout=0.5, trainable_features=trainable),
                        MRdIBRegularizer(["image", "text"], n_users=N_USERS, seed=0))
    model.build()
    model.compile(optimizer="adam", jit_compile=jit)
    before = {m: model.backbone.features[m].numpy().copy() for m in ("image", "text")}
    batch = {k: tf.constant(v) for k, v in
             {"user": [0, 2, 4, 1], "pos_item": [1, 5, 0, 1], "neg_item": [3, 3, 2, 4]}.items()}
    logs = model.train_on_batch(batch, return_dict=True)
    assert {"ranking", "modality_ranking", "kl", "unique"} <= set(logs)
    assert np.isfinite(logs["loss"])
    for m in ("image", "text"):
        changed = bool(np.abs(model.backbone.features[m].numpy() - before[m]).max() > 0)
        assert changed is trainable
    names = {v.path for v in model.trainable_variables}
    assert any("image_features" in n for n in names) is trainable


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="edge_dropout must be in"):
        _model(edge_dropout=1.0)
    with pytest.raises(ValueError, match="graph_weights must give each modality"):
        _model(graph_weights={"image": 1.0})
    with pytest.raises(ValueError, match="Features of modality 'text'"):
        FREEDOM(N_USERS, N_ITEMS, USERS, ITEMS, {"image": np.ones((N_ITEMS, 2)), "text": np.ones((N_ITEMS - 1, 2))})
