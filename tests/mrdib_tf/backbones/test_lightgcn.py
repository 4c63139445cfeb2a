import numpy as np
import tensorflow as tf

from mrdib_tf.backbones import LightGCN


def _dense_reference(users, items, n_users, n_items, user_emb, item_emb, n_layers):
    """LightGCN from its definition with a dense normalized adjacency."""
    n = n_users + n_items
    adjacency = np.zeros((n, n))
    adjacency[users, n_users + items] = 1.0
    adjacency[n_users + items, users] = 1.0
    degree = adjacency.sum(axis=1) + 1e-7
    normalized = adjacency / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]
    layer = np.concatenate([user_emb, item_emb])
    layers = [layer]
    for _ in range(n_layers):
        layer = normalized @ layer
        layers.append(layer)
    mean = np.mean(layers, axis=0)
    return mean[:n_users], mean[n_users:]


def test_propagation_matches_dense_normalized_adjacency():
    users = np.array([0, 0, 1, 2, 2, 2, 3])
    items = np.array([0, 1, 1, 2, 3, 0, 4])
    # item 5 has no interaction: an isolated node must stay as it is, divided by the layer count.
    model = LightGCN(4, 6, users, items, embedding_dim=3, n_layers=3)
    got_users, got_items = (t.numpy() for t in model())
    want_users, want_items = _dense_reference(
        users, items, 4, 6, model.user_embedding.numpy(), model.item_embedding.numpy(), 3)
    np.testing.assert_allclose(got_users, want_users, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_items, want_items, rtol=1e-5, atol=1e-6)


def test_duplicate_pairs_count_once():
    once = LightGCN(2, 2, np.array([0, 1]), np.array([0, 1]), embedding_dim=2, n_layers=1)
    twice = LightGCN(2, 2, np.array([0, 0, 1]), np.array([0, 0, 1]), embedding_dim=2, n_layers=1)
    np.testing.assert_allclose(once.edges[2].numpy(), twice.edges[2].numpy())  # (rows, cols, weights, n)


def test_no_modalities_and_compiles_under_xla():
    model = LightGCN(4, 6, np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]), embedding_dim=3, n_layers=2)
    assert model.modalities == () and model.modality_representations() == {}
    eager = model()[0].numpy()
    compiled = tf.function(lambda: model()[0], jit_compile=True)().numpy()
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_training_losses_are_bpr_on_propagated_and_the_norm_of_layer_zero_embeddings():
    model = LightGCN(3, 3, np.array([0, 1, 2]), np.array([0, 1, 2]), embedding_dim=2, reg_weight=2.0)
    users_table, items_table = (t.numpy() for t in model())
    terms = model.training_losses({"user": tf.constant([1]), "pos_item": tf.constant([2]), "neg_item": tf.constant([0])})
    margin = users_table[1] @ items_table[2] - users_table[1] @ items_table[0]
    np.testing.assert_allclose(float(terms["ranking"]), np.log1p(np.exp(-margin)), rtol=1e-5)
    u, i = model.user_embedding.numpy(), model.item_embedding.numpy()
    expected = 2.0 * (np.linalg.norm(u[[1]]) + np.linalg.norm(i[[2]]) + np.linalg.norm(i[[0]]))
    np.testing.assert_allclose(float(terms["l2"]), expected, rtol=1e-5)
