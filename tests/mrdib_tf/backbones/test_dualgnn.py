"""DualGNN against a dense numpy transcription of its equations (per-modality propagation summed over
layers, the per-user modality weighting, the user co-occurrence graph, the loss in bits), its user graph
against brute force, the per-epoch padding against the Polya urn's law, MRdIB's plug point and XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.backbones import DualGNN
from mrdib_tf.backbones.dualgnn import user_graph_weights
from mrdib_tf.backbones.graph import cooccurrence_neighbours
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer

# user 3 shares no item with anyone; user 4 shares with 0 and 2 only; (0, 1) is given twice.
USERS = np.array([0, 0, 0, 1, 1, 2, 2, 3, 4, 4])
ITEMS = np.array([0, 1, 1, 1, 2, 0, 2, 4, 0, 3])
N_USERS, N_ITEMS, DIM, NEIGHBOURS = 5, 5, 3, 3
BATCH = {"user": tf.constant([0, 2, 1, 4]), "pos_item": tf.constant([1, 0, 2, 3]),
         "neg_item": tf.constant([4, 3, 0, 1])}


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
            "audio": rng.normal(size=(N_ITEMS, 4)).astype(np.float32)}


def _model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    settings = dict(embedding_dim=DIM, user_neighbours=NEIGHBOURS, seed=seed, name="dualgnn")
    return DualGNN(N_USERS, N_ITEMS, USERS, ITEMS, _features(seed), **{**settings, **kwargs})


def _shared_items():
    """Users x users count of shared training items, each pair once, 0 on the diagonal."""
    interactions = np.zeros((N_USERS, N_ITEMS))
    interactions[USERS, ITEMS] = 1.0
    shared = interactions @ interactions.T
    np.fill_diagonal(shared, 0.0)
    return shared


def _normalized_adjacency():
    n = N_USERS + N_ITEMS
    adjacency = np.zeros((n, n))
    adjacency[USERS, N_USERS + ITEMS] = 1.0
    adjacency[N_USERS + ITEMS, USERS] = 1.0
    inv_sqrt = 1.0 / np.sqrt(adjacency.sum(axis=1) + 1e-7)
    return adjacency * inv_sqrt[:, None] * inv_sqrt[None, :]


def _mlp(model, m, features):
    hidden, out = model.mlps[m]
    h = features @ hidden.kernel.numpy() + hidden.bias.numpy()
    h = np.where(h > 0, h, 0.01 * h)
    return h @ out.kernel.numpy() + out.bias.numpy()


def _user_graph_dense(model):
    rows, cols, weights, _ = model.user_graph
    dense = np.zeros((N_USERS, N_USERS))
    np.add.at(dense, (rows.numpy(), cols.numpy()), weights.numpy())
    return dense


def _reference(model, item_inputs=None):
    """(users, items) from DualGNN's equations with dense matrices."""
    features = _features()
    item_inputs = item_inputs or {m: _mlp(model, m, features[m]) for m in model.modalities}
    adjacency = _normalized_adjacency()
    outputs = []
    for m in model.modalities:
        x = np.concatenate([model.preferences[m].numpy(), item_inputs[m]])
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        outputs.append(x + adjacency @ x + adjacency @ adjacency @ x)
    items = sum(o[N_USERS:] for o in outputs)
    weights = model.modality_weights.numpy()
    users = sum(weights[:, [i]] * o[:N_USERS] for i, o in enumerate(outputs))
    return users + _user_graph_dense(model) @ users, items


def test_cooccurrence_neighbours_match_brute_force_with_ties_to_the_lower_id():
    rng = np.random.default_rng(4)
    users, items = rng.integers(0, 40, 300), rng.integers(0, 25, 300)
    interactions = np.zeros((40, 25))
    interactions[users, items] = 1.0
    shared = (interactions @ interactions.T).astype(int)
    np.fill_diagonal(shared, 0)
    for k, chunk in ((6, 7), (45, 1024)):  # chunked; and more neighbours than users
        neighbours, counts = cooccurrence_neighbours(users, items, 40, 25, k, chunk_users=chunk)
        for u in range(40):
            ranked = sorted((v for v in range(40) if shared[u, v] > 0), key=lambda v: (-shared[u, v], v))[:k]
            assert list(neighbours[u, : len(ranked)]) == ranked
            assert list(counts[u]) == [shared[u, v] for v in ranked] + [0] * (k - len(ranked))


def test_full_neighbour_lists_weigh_softmax_of_counts_and_empty_ones_nothing():
    counts = np.array([[3, 1, 1], [0, 0, 0]])
    weights = user_graph_weights(counts, np.random.default_rng(0))
    np.testing.assert_allclose(weights[0], np.exp([3, 1, 1]) / np.exp([3, 1, 1]).sum(), rtol=1e-6)
    np.testing.assert_array_equal(weights[1], 0.0)


def test_short_lists_are_padded_as_a_polya_urn_draws():
    """Two neighbours padded to four: the urn gives each split of the two extra copies, (2,0) (1,1) (0,2),
    probability 1/3, so the first neighbour weighs 3/4, 1/2 or 1/4 equally often. Drawing the copies
    uniformly with replacement would give 1/4, 1/2, 1/4 instead."""
    rows = 30_000
    weights = user_graph_weights(np.tile([[2, 2, 0, 0]], (rows, 1)), np.random.default_rng(1))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(weights[:, 2:], 0.0)
    share = {w: np.mean(np.isclose(weights[:, 0], w)) for w in (0.75, 0.5, 0.25)}
    assert sum(share.values()) == pytest.approx(1.0)
    for w, frequency in share.items():
        assert frequency == pytest.approx(1 / 3, abs=0.015), share


def test_user_graph_holds_the_co_users_and_is_redrawn_per_epoch_from_the_seed_alone():
    model = _model()
    dense = _user_graph_dense(model)
    shared = _shared_items()
    np.testing.assert_array_equal(dense > 0, shared > 0)  # no user has more than k = 3 co-users here
    np.testing.assert_allclose(dense.sum(axis=1), [1, 1, 1, 0, 1], rtol=1e-6)  # user 3 has none
    # users 0 and 2 have three co-users sharing one item each: 1/3 apiece, whatever the epoch
    np.testing.assert_allclose(dense[[0, 2]][shared[[0, 2]] > 0], 1 / 3, rtol=1e-6)
    draws = []
    for epoch in (1, 2, 3, 4, 5, 1):
        model.begin_epoch(epoch)
        draws.append(_user_graph_dense(model))
    np.testing.assert_array_equal(draws[0], draws[-1])
    # users 1 and 4 have two equal co-users padded with one copy of either: 2/3 and 1/3, in some order
    padded = np.stack([d[[1, 4]][shared[[1, 4]] > 0] for d in draws])
    np.testing.assert_allclose(np.sort(padded.reshape(-1, 2), axis=1), [[1 / 3, 2 / 3]] * 12, rtol=1e-6)
    assert len({tuple(np.round(row, 4)) for row in padded}) > 1


@pytest.mark.parametrize("jit", [False, True])
def test_forward_pass_matches_the_dense_reference(jit):
    model = _model()
    users, items = tf.function(lambda: model(), jit_compile=jit)()
    want_users, want_items = _reference(model)
    np.testing.assert_allclose(users.numpy(), want_users, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), want_items, rtol=1e-4, atol=1e-6)


def test_modality_weights_start_as_mmrecs_softmax_of_a_xavier_normal():
    model = _model()
    weights = model.modality_weights.numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    # xavier std sqrt(2 / (5 + 2)) = 0.53 for this tiny table: near 1/2, not equal to it
    assert np.all(np.abs(weights - 0.5) < 0.45) and not np.allclose(weights, 0.5)


def test_training_losses_are_bpr_in_bits_and_mmrecs_regularizer():
    model = _model(reg_weight=0.5)
    terms = model.training_losses(BATCH)
    assert set(terms) == set(model.loss_terms) == {"ranking", "l2"}
    users, items = _reference(model)
    u, p, n = (users[BATCH["user"].numpy()], items[BATCH["pos_item"].numpy()], items[BATCH["neg_item"].numpy()])
    margin = (u * p).sum(axis=1) - (u * n).sum(axis=1)
    np.testing.assert_allclose(float(terms["ranking"]), -np.mean(np.log2(1 / (1 + np.exp(-margin)))), rtol=1e-5)
    penalty = (model.modality_weights.numpy() ** 2).mean() + sum(
        (model.preferences[m].numpy()[BATCH["user"].numpy()] ** 2).mean() for m in model.modalities)
    np.testing.assert_allclose(float(terms["l2"]), 0.5 * penalty, rtol=1e-5)


def test_encodes_output_reaches_the_scores():
    model = _model()
    replaced = {m: np.arange(N_ITEMS * DIM, dtype=np.float32).reshape(N_ITEMS, DIM) - i * 4.0
                for i, m in enumerate(model.modalities)}
    seen = {}

    def encode(representations, pos_rows, neg_rows):
        seen.update(representations=representations, pos=pos_rows.numpy())
        return {m: tf.constant(v) for m, v in replaced.items()}

    terms = model.training_losses(BATCH, encode)
    np.testing.assert_array_equal(seen["pos"], BATCH["pos_item"].numpy())  # rows are item ids
    features = _features()
    for m in model.modalities:
        np.testing.assert_allclose(seen["representations"][m].numpy(), _mlp(model, m, features[m]), rtol=1e-5,
                                   atol=1e-6)
    want_users, want_items = _reference(model, replaced)
    users, items = model.embeddings({m: tf.constant(v) for m, v in replaced.items()})
    np.testing.assert_allclose(users.numpy(), want_users, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), want_items, rtol=1e-4, atol=1e-6)
    assert not np.allclose(items.numpy(), _reference(model)[1], rtol=1e-3)
    assert np.isfinite(float(terms["ranking"]))


def test_compiled_fit_trains_everything_but_the_features_and_graphs():
    backbone = _model()
    model = Recommender(backbone)
    model.build()
    trainable = {v.path: v.numpy().copy() for v in model.trainable_variables}
    features = {m: backbone.features[m].numpy().copy() for m in backbone.modalities}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    history = model.fit(tf.data.Dataset.from_tensors(BATCH).repeat(), steps_per_epoch=2, epochs=1, verbose=0,
                        shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    assert len(trainable) == 2 * 1 + 2 * 4 + 1  # preferences, two MLP layers each, the weighting
    assert all(not np.allclose(v.numpy(), trainable[v.path]) for v in model.trainable_variables)
    for m, values in features.items():
        np.testing.assert_array_equal(backbone.features[m].numpy(), values)


def test_mrdib_wraps_dualgnn_and_its_codes_carry_gradients_to_the_mlps():
    model = Recommender(_model(), MRdIBRegularizer(["audio", "image"], n_users=N_USERS, seed=0))
    model.build()
    with tf.GradientTape() as tape:
        loss = model.compute_loss(y_pred=model(BATCH, training=True))
    variables = model.trainable_variables
    gradients = dict(zip((v.path for v in variables), tape.gradient(loss, variables)))
    for path in ("audio_mlp_hidden/kernel", "image_mlp_out/kernel", "bottleneck_audio", "bottleneck_image",
                 "modality_weights"):
        grads = [g for p, g in gradients.items() if path in p]
        assert grads and any(g is not None and np.abs(tf.convert_to_tensor(g).numpy()).sum() > 0 for g in grads), path


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="n_items=5"):
        DualGNN(N_USERS, N_ITEMS, USERS, ITEMS, {"image": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="n_layers"):
        _model(n_layers=-1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        _model(user_neighbours=0)
