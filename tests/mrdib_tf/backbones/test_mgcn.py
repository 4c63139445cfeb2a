"""MGCN against a dense numpy transcription of its equations (k-NN graphs, both views, the fuser, the
contrastive and regularization terms), under XLA too, and wrapped by MRdIB like any other backbone."""

import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.backbones import MGCN
from mrdib_tf.backbones.graph import NormalizedGraph, knn_item_graph
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer

USERS = np.array([0, 0, 1, 2, 2, 3, 4, 4, 4])
ITEMS = np.array([0, 1, 1, 2, 5, 3, 0, 4, 5])
N_USERS, N_ITEMS = 5, 6


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((N_ITEMS, 7)), "text": rng.standard_normal((N_ITEMS, 4))}


def _dense(graph: NormalizedGraph, n_receivers: int, n_senders: int) -> np.ndarray:
    matrix = np.zeros((n_receivers, n_senders))
    np.add.at(matrix, (graph.rows, graph.cols), graph.weights)
    return matrix


def _knn_reference(features, k):
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    kept = np.zeros_like(similarity)
    for i, row in enumerate(similarity):
        top = np.argsort(-row)[:k]
        kept[i, top] = row[top]
    degree = kept.sum(axis=1)
    return kept / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]


def _bipartite_reference():
    n = N_USERS + N_ITEMS
    adjacency = np.zeros((n, n))
    adjacency[USERS, N_USERS + ITEMS] = 1.0
    adjacency[N_USERS + ITEMS, USERS] = 1.0
    degree = adjacency.sum(axis=1) + 1e-7
    return adjacency / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]


def _dense_layer(layer, x, activation=None):
    kernel = layer.kernel.numpy()
    out = x @ kernel + (layer.bias.numpy() if layer.use_bias else 0.0)
    return {None: out, "sigmoid": 1 / (1 + np.exp(-out)), "tanh": np.tanh(out)}[activation]


def _mgcn_reference(model: MGCN, adjacency=None, users_from_items=None, item_graphs=None):
    """MGCN's forward pass written out with dense matrices: (users, items, content, side).

    The graphs default to MGCN's (SOIL's test passes its own); the preference gates apply when the model has them.
    """
    if adjacency is None:
        adjacency = _bipartite_reference()
        users_from_items = adjacency[:N_USERS, N_USERS:]
        item_graphs = {m: _knn_reference(_features()[m], 3) for m in model.modalities}
    ids = np.concatenate([model.user_embedding.numpy(), model.item_embedding.numpy()])
    layers = [ids]
    for _ in range(model.n_ui_layers):
        layers.append(adjacency @ layers[-1])
    content = np.mean(layers, axis=0)
    modal = []
    for m in model.modalities:
        features = model.features[m].numpy()
        gate = _dense_layer(model.purifiers[m], _dense_layer(model.projections[m], features), "sigmoid")
        item_view = model.item_embedding.numpy() * gate
        for _ in range(model.n_item_layers):
            item_view = item_graphs[m] @ item_view
        modal.append(np.concatenate([users_from_items @ item_view, item_view]))
    modal = np.stack(modal, axis=1)
    scores = _dense_layer(model.attention_score, _dense_layer(model.attention_hidden, modal, "tanh"))
    attention = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    common = (attention * modal).sum(axis=1)
    gated = sum(
        (_dense_layer(model.preferences[m], content, "sigmoid") if model.preference_gates else 1.0)
        * (modal[:, k] - common)
        for k, m in enumerate(model.modalities)
    )
    side = (gated + common) / (len(model.modalities) + 1)
    final = content + side
    return final[:N_USERS], final[N_USERS:], content, side


def _info_nce(a, b, t):
    """MMRec's InfoNCE, exponentials and all."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.mean(-np.log(np.exp((a * b).sum(1) / t) / np.exp(a @ b.T / t).sum(1)))


def _model(**kwargs):
    return MGCN(N_USERS, N_ITEMS, USERS, ITEMS, _features(), embedding_dim=4, knn_k=3, **kwargs)


def test_knn_graph_keeps_the_top_k_cosine_neighbours_normalized_symmetrically():
    features = _features()["image"]
    got = _dense(knn_item_graph(features, 3, chunk_rows=4), N_ITEMS, N_ITEMS)  # 4: chunks of unequal size
    np.testing.assert_allclose(got, _knn_reference(features, 3), rtol=1e-5, atol=1e-7)


def test_knn_graph_gives_an_all_zero_feature_row_no_edges_and_rejects_a_bad_k():
    features = _features()["image"]
    features[2] = 0.0
    dense = _dense(knn_item_graph(features, 3), N_ITEMS, N_ITEMS)
    assert np.all(dense[2] == 0) and np.all(dense[:, 2] == 0) and np.isfinite(dense).all()
    with pytest.raises(ValueError, match="knn k"):
        knn_item_graph(features, N_ITEMS + 1)


def test_users_from_items_is_the_user_block_of_the_normalized_bipartite_graph():
    graph = NormalizedGraph.from_interactions(USERS, ITEMS, N_USERS, N_ITEMS).users_from_items(N_USERS)
    np.testing.assert_allclose(
        _dense(graph, N_USERS, N_ITEMS), _bipartite_reference()[:N_USERS, N_USERS:], rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("jit", [False, True])
def test_forward_pass_matches_the_dense_reference(jit):
    model = _model()
    users, items = tf.function(lambda: model(), jit_compile=jit)()
    want_users, want_items, _, _ = _mgcn_reference(model)
    np.testing.assert_allclose(users.numpy(), want_users, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), want_items, rtol=1e-4, atol=1e-6)


def test_training_losses_match_mmrecs_formulas():
    model = _model(cl_weight=0.5, temperature=0.2, reg_weight=3.0, batch_size=5)
    users_table, items_table, content, side = _mgcn_reference(model)
    users, pos, neg = np.array([0, 2, 4]), np.array([1, 5, 0]), np.array([3, 3, 2])
    terms = model.training_losses({"user": tf.constant(users), "pos_item": tf.constant(pos),
                                   "neg_item": tf.constant(neg)})
    want = 0.5 * (_info_nce(side[N_USERS + pos], content[N_USERS + pos], 0.2)
                  + _info_nce(side[users], content[users], 0.2))
    np.testing.assert_allclose(float(terms["contrastive"]), want, rtol=1e-4)
    u, p, n = users_table[users], items_table[pos], items_table[neg]
    np.testing.assert_allclose(float(terms["ranking"]), np.mean(np.log1p(np.exp(-((u * p).sum(1) - (u * n).sum(1))))),
                               rtol=1e-4)
    # MMRec divides by the configured batch size (5), not by the 3 rows at hand
    want_reg = 3.0 * 0.5 * ((u**2).sum() + (p**2).sum() + (n**2).sum()) / 5
    np.testing.assert_allclose(float(terms["l2"]), want_reg, rtol=1e-4)
    assert set(_model(cl_weight=0.0).training_losses({"user": tf.constant(users), "pos_item": tf.constant(pos),
                                                      "neg_item": tf.constant(neg)})) == {"ranking", "l2"}


def _wrapped_step(backbone):
    """`backbone` wrapped by MRdIB: (the model, the loss terms of one XLA-compiled step, their gradients)."""
    model = Recommender(backbone, MRdIBRegularizer(["image", "text"], n_users=N_USERS, seed=0))
    model.build()
    batch = {k: tf.constant(v) for k, v in
             {"user": [0, 2, 4, 1], "pos_item": [1, 5, 0, 1], "neg_item": [3, 3, 2, 4]}.items()}

    @tf.function(jit_compile=True)
    def gradients():
        with tf.GradientTape() as tape:
            terms = model(batch, training=True)
            loss = model.compute_loss(y_pred=terms)
        return terms, tape.gradient(loss, model.trainable_variables)

    return (model, *gradients())


def test_mrdib_wraps_mgcn_and_one_compiled_step_trains_every_variable():
    model, terms, grads = _wrapped_step(_model())
    variables = model.trainable_variables
    assert set(terms) == {"ranking", "l2", "contrastive"}
    assert {m.name for m in model.regularizer.metrics} == {"kl", "mi_estimate", "unique"}
    assert all(g is not None and np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)
    assert any(np.abs(g.numpy()).sum() > 0 for g, v in zip(grads, variables) if "features" in v.path)


def test_feature_placement_exposes_the_projected_features_and_gives_the_same_model():
    views, features = _model(), _model(placement="features")
    features.set_weights(views.get_weights())
    projected = features.modality_representations()
    for m in ("image", "text"):
        want = _features()[m] @ views.projections[m].kernel.numpy() + views.projections[m].bias.numpy()
        np.testing.assert_allclose(projected[m].numpy(), want, rtol=1e-5, atol=1e-6)
    for got, want in zip(features.embeddings(projected), views.embeddings(views.modality_representations())):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="placement must be one of"):
        _model(placement="users")
