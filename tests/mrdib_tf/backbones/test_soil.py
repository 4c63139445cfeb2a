"""SOIL against a dense numpy transcription of its authors' graph construction (per-user loops over full
similarity matrices, as their `models/soil.py` runs it) and of its forward pass and loss."""

import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.backbones import SOIL
from mrdib_tf.backbones.graph import NormalizedGraph
from mrdib_tf.backbones.interest_graphs import WEIGHT_FLOOR, interest_item_graphs, second_order_graphs
from mrdib_tf.backbones.soil import soil_graphs
from tests.mrdib_tf.backbones.test_mgcn import (
    _dense, _info_nce, _knn_reference, _mgcn_reference, _wrapped_step,
)

USERS = np.array([0, 0, 1, 2, 2, 3, 4, 4, 4, 4, 1])  # the last pair repeats one: it counts once
ITEMS = np.array([0, 1, 1, 2, 5, 3, 0, 4, 5, 6, 1])
N_USERS, N_ITEMS = 5, 8


def _features(seed=0, signed_text=True):
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((N_ITEMS, 4))
    return {"image": np.abs(rng.standard_normal((N_ITEMS, 7))), "text": text if signed_text else np.abs(text)}


def _similarities(features):
    out = {}
    for m, f in features.items():
        unit = f / np.linalg.norm(f, axis=1, keepdims=True)
        out[m] = unit @ unit.T
    return out


def _histories():
    return {u: np.unique(ITEMS[USERS == u]) for u in range(N_USERS)}


def _normalize(matrix):
    """The authors' get_sparse_laplacian on the non-zero entries of a dense matrix."""
    degree = matrix.sum(axis=1)
    inv = np.where(degree > 0, degree, np.inf) ** -0.5
    out = inv[:, None] * matrix * inv[None, :]
    return np.where(matrix != 0, np.maximum(out, WEIGHT_FLOOR), 0.0)


def _interest_reference(features, interest_k):
    sims = _similarities(features)
    interest = {m: np.zeros((N_ITEMS, N_ITEMS)) for m in sims}
    for own in _histories().values():
        cols = np.unique(np.concatenate([np.argsort(-s[own].sum(axis=0))[:interest_k] for s in sims.values()]))
        for m, s in sims.items():
            interest[m][np.ix_(own, cols)] += s[np.ix_(own, cols)]
    return {m: _normalize(np.maximum(i, 0.0)) for m, i in interest.items()}  # negatives dropped (documented)


def _second_order_reference(features, extra_k):
    product = np.prod(list(_similarities(features).values()), axis=0)
    links = np.zeros((N_USERS, N_ITEMS))
    for u, own in _histories().items():
        keep = extra_k + len(own)
        rows = product[own]
        per_row = np.argsort(-rows, axis=1)[:, :keep]  # torch.topk per row, then over the flattened rows
        values = np.take_along_axis(rows, per_row, axis=1).ravel()
        best = np.argsort(-values)[:keep]
        np.add.at(links[u], per_row.ravel()[best], values[best])
    square = np.zeros((N_USERS + N_ITEMS,) * 2)
    square[:N_USERS, N_USERS:] = links
    square[N_USERS:, :N_USERS] = links.T
    return _normalize(square)


def test_interest_graphs_match_the_authors_per_user_construction():
    features = _features()
    for k in (2, 3, 5):  # k = 1 meets exact ties (a two-item user scores s_ii + s_ij = s_ij + s_jj), broken arbitrarily
        got = interest_item_graphs(features, USERS, ITEMS, N_USERS, N_ITEMS, k, chunk_users=2, chunk_pairs=5)
        want = _interest_reference(features, k)
        for m in features:
            np.testing.assert_allclose(_dense(got[m], N_ITEMS, N_ITEMS), want[m], rtol=1e-5, atol=1e-8)
            assert (got[m].weights > 0).all()


def test_second_order_graph_matches_the_authors_per_user_construction():
    features = _features()
    for extra in (0, 1, 3):
        bipartite = second_order_graphs(features, USERS, ITEMS, N_USERS, N_ITEMS, extra, chunk_rows=3)
        want = _second_order_reference(features, extra)
        np.testing.assert_allclose(_dense(bipartite, N_USERS + N_ITEMS, N_USERS + N_ITEMS), want, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(_dense(bipartite.users_from_items(N_USERS), N_USERS, N_ITEMS), want[:N_USERS, N_USERS:],
                                   rtol=1e-5, atol=1e-8)


def test_second_order_links_each_user_to_its_own_items_and_extra_k_more():
    features = _features()
    bipartite = second_order_graphs(features, USERS, ITEMS, N_USERS, N_ITEMS, 2)
    linked = _dense(bipartite, N_USERS + N_ITEMS, N_USERS + N_ITEMS)[:N_USERS, N_USERS:] > 0
    for u, own in _histories().items():
        assert linked[u, own].all()  # p(i, i) = 1 is the largest product
        assert len(own) <= linked[u].sum() <= len(own) + 2


def test_adding_graphs_merges_their_shared_edges_and_sums_the_matrices():
    bipartite = second_order_graphs(_features(), USERS, ITEMS, N_USERS, N_ITEMS, 1)
    first = NormalizedGraph.from_interactions(USERS, ITEMS, N_USERS, N_ITEMS)
    for a, b, shape in ((first, bipartite, (N_USERS + N_ITEMS,) * 2),
                        (first.users_from_items(N_USERS), bipartite.users_from_items(N_USERS), (N_USERS, N_ITEMS))):
        total = a.plus(b, 0.5)
        np.testing.assert_allclose(_dense(total, *shape), _dense(a, *shape) + 0.5 * _dense(b, *shape), rtol=1e-6)
        pairs = np.stack([total.rows, total.cols], axis=1)
        assert len(np.unique(pairs, axis=0)) == len(pairs) < len(a.rows) + len(b.rows)


def test_graph_settings_are_checked():
    features = _features()
    with pytest.raises(ValueError, match="interest_k"):
        interest_item_graphs(features, USERS, ITEMS, N_USERS, N_ITEMS, 0)
    with pytest.raises(ValueError, match="longest history"):
        second_order_graphs(features, USERS, ITEMS, N_USERS, N_ITEMS, N_ITEMS)


def _model(**kwargs):
    return SOIL(N_USERS, N_ITEMS, USERS, ITEMS, _features(signed_text=False), embedding_dim=4, knn_k=3,
                interest_k=2, second_order_k=1, **kwargs)


def _soil_reference(model):
    features = _features(signed_text=False)
    first = _bipartite_reference_with(N_USERS, N_ITEMS)
    second = _second_order_reference(features, 1)
    adjacency = first + second / 2
    users_from_items = first[:N_USERS, N_USERS:] + second[:N_USERS, N_USERS:] / 2
    interest = _interest_reference(features, 2)
    item_graphs = {m: interest[m] + _knn_reference(features[m], 3) for m in features}
    return _mgcn_reference(model, adjacency, users_from_items, item_graphs)


def _bipartite_reference_with(n_users, n_items):
    """The normalized interaction graph (LightGCN's, degrees + 1e-7) of this file's pairs."""
    adjacency = np.zeros((n_users + n_items,) * 2)
    adjacency[USERS, n_users + ITEMS] = 1.0
    adjacency[n_users + ITEMS, USERS] = 1.0
    degree = adjacency.sum(axis=1) + 1e-7
    return adjacency / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]


@pytest.mark.parametrize("jit", [False, True])
def test_forward_pass_matches_the_dense_reference(jit):
    model = _model()
    assert not model.preference_gates and not hasattr(model, "preferences")
    users, items = tf.function(lambda: model(), jit_compile=jit)()
    want_users, want_items, _, _ = _soil_reference(model)
    np.testing.assert_allclose(users.numpy(), want_users, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), want_items, rtol=1e-4, atol=1e-6)


def test_training_losses_match_the_authors_formulas():
    model = _model(cl_weight=0.5, user_item_cl_weight=0.25)
    users_table, items_table, content, side = _soil_reference(model)
    users, pos, neg = np.array([0, 2, 4]), np.array([1, 5, 0]), np.array([3, 3, 2])
    terms = model.training_losses({"user": tf.constant(users), "pos_item": tf.constant(pos),
                                   "neg_item": tf.constant(neg)})
    u, p, n = users_table[users], items_table[pos], items_table[neg]
    np.testing.assert_allclose(float(terms["ranking"]), np.mean(np.log1p(np.exp(-((u * p).sum(1) - (u * n).sum(1))))),
                               rtol=1e-4)
    assert float(terms["l2"]) == 0.0  # no regularizer in the authors' loss
    np.testing.assert_allclose(float(terms["contrastive"]), 0.5 * (
        _info_nce(side[N_USERS + pos], content[N_USERS + pos], 0.2) + _info_nce(side[users], content[users], 0.2)
    ), rtol=1e-4)
    np.testing.assert_allclose(float(terms["user_item_contrastive"]), 0.25 * (
        _info_nce(u, content[N_USERS + pos], 0.2) + _info_nce(u, side[N_USERS + pos], 0.2)
    ), rtol=1e-4)
    assert set(terms) == set(model.loss_terms)
    assert "user_item_contrastive" not in _model(user_item_cl_weight=0.0).loss_terms


def test_prebuilt_graphs_give_the_same_model_and_wrong_ones_are_refused():
    graphs = soil_graphs(_features(signed_text=False), USERS, ITEMS, N_USERS, N_ITEMS, 3, 2, 1)
    built, given = _model(), _model(graphs=graphs)
    given.set_weights(built.get_weights())
    for got, want in zip(given(), built()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="SOIL's graphs must be"):
        _model(graphs={k: v for k, v in graphs.items() if k != "user_item"})
    with pytest.raises(ValueError, match="needs at least one modality"):
        SOIL(N_USERS, N_ITEMS, USERS, ITEMS, {})


def test_mrdib_wraps_soil_and_a_compiled_step_trains_all_but_the_frozen_features():
    model, terms, grads = _wrapped_step(_model())
    variables = model.trainable_variables
    assert not any("features" in v.path for v in variables)  # frozen, as the authors load them
    assert {"ranking", "contrastive", "user_item_contrastive"} <= set(terms)
    assert all(g is not None and np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)
    assert any(np.abs(tf.convert_to_tensor(g).numpy()).sum() > 0 for g, v in zip(grads, variables)
               if "bottleneck_image" in v.path)
