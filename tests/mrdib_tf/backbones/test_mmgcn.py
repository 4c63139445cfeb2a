"""MMGCN against a dense numpy transcription of MMRec's equations (mean-aggregating GCNs per modality,
the concatenating gates, the loss with its regularizer), its initialization, MRdIB's plug point, and
training under XLA with the fixed tables left as they are."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.backbones.graph import propagate
from mrdib_tf.backbones.mmgcn import MMGCN
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer

# (0, 1) is given twice and counts once (MMRec's float32 COO sums duplicates); item 3 has no neighbours.
USERS = np.array([0, 0, 0, 1, 2, 2])
ITEMS = np.array([0, 1, 1, 2, 1, 0])
N_USERS, N_ITEMS, DIM = 3, 4, 3
BATCH = {"user": tf.constant([0, 2, 1, 0]), "pos_item": tf.constant([1, 0, 2, 0]),
         "neg_item": tf.constant([3, 2, 0, 3])}


#: The tables MMRec never hands its optimizer.
FIXED_TABLES = {"id_embedding", "audio_preference", "image_preference"}


def _names(variables):
    return {v.path.split("/")[-1] for v in variables}


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(N_ITEMS, 5)).astype(np.float32),
            "audio": rng.normal(size=(N_ITEMS, 2)).astype(np.float32)}


def _model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return MMGCN(N_USERS, N_ITEMS, USERS, ITEMS, _features(seed), embedding_dim=DIM, **kwargs)


def _leaky_relu(x):
    return np.where(x > 0, x, 0.01 * x)


def _mean_adjacency():
    """D^-1 A of the bipartite graph, each pair once: row i averages node i's neighbours (0 without any)."""
    n = N_USERS + N_ITEMS
    adjacency = np.zeros((n, n))
    adjacency[USERS, N_USERS + ITEMS] = 1.0
    adjacency[N_USERS + ITEMS, USERS] = 1.0
    degree = adjacency.sum(axis=1, keepdims=True)
    return np.divide(adjacency, degree, out=np.zeros_like(adjacency), where=degree > 0)


def _linear(layer, x):
    return x @ layer.kernel.numpy() + layer.bias.numpy()


def _item_inputs(model):
    """MMRec's `temp_features`: the MLP of the features for the latent (image) modality, else the features."""
    features = _features()
    return {"image": _linear(model.mlps["image"], features["image"]), "audio": features["audio"]}


def _gcn_reference(model, modality, item_inputs):
    """MMRec's `GCN.forward` with dense matrices, for any number of layers."""
    x = np.concatenate([model.preferences[modality].numpy(), item_inputs])
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    ids = model.id_embedding.numpy()
    for conv, linear, gate in zip(model.convs[modality], model.linears[modality], model.gates[modality]):
        h = _leaky_relu(_mean_adjacency() @ (x @ conv.numpy()))
        x_hat = _leaky_relu(_linear(linear, x)) + ids
        x = _leaky_relu(_linear(gate, np.concatenate([h, x_hat], axis=1)) if model.concatenate
                        else _linear(gate, h) + x_hat)
    return x


def _reference(model, item_inputs=None):
    """(users, items): the mean of the modality GCNs' outputs."""
    item_inputs = _item_inputs(model) if item_inputs is None else item_inputs
    final = np.mean([_gcn_reference(model, m, item_inputs[m]) for m in ("image", "audio")], axis=0)
    return final[:N_USERS], final[N_USERS:]


def _numpy_losses(model, users_table, items_table, batch=BATCH):
    """MMRec's `calculate_loss` as written: interleaved (pos, neg) rows, the [1, -1] weight, log sigmoid."""
    users, pos, neg = (batch[k].numpy() for k in ("user", "pos_item", "neg_item"))
    user_rows = np.repeat(users, 2)
    item_rows = np.stack([pos, neg], axis=1).reshape(-1) + N_USERS
    final = np.concatenate([users_table, items_table])
    scores = (final[user_rows] * final[item_rows]).sum(axis=1).reshape(-1, 2) @ np.array([[1.0], [-1.0]])
    ranking = -np.mean(np.log(1.0 / (1.0 + np.exp(-scores))))
    ids = model.id_embedding.numpy()
    penalty = (ids[user_rows] ** 2 + ids[item_rows] ** 2).mean() + (model.preferences["image"].numpy() ** 2).mean()
    return ranking, model.reg_weight * penalty


def test_one_layer_is_mean_aggregation_over_the_unnormalized_graph():
    model = _model(n_layers=1)
    x = np.random.default_rng(1).normal(size=(N_USERS + N_ITEMS, 2)).astype(np.float32)
    np.testing.assert_allclose(propagate(tf.constant(x), *model.edges).numpy(), _mean_adjacency() @ x,
                               rtol=1e-5, atol=1e-6)
    inputs = _item_inputs(model)
    for m in ("image", "audio"):
        got = model._modality_output(m, tf.constant(inputs[m], tf.float32)).numpy()
        np.testing.assert_allclose(got, _gcn_reference(model, m, inputs[m]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("concatenate", [True, False])
def test_forward_pass_matches_the_dense_reference(jit, concatenate):
    model = _model(concatenate=concatenate)
    users, items = tf.function(lambda: model(), jit_compile=jit)()
    want_users, want_items = _reference(model)
    np.testing.assert_allclose(users.numpy(), want_users, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), want_items, rtol=1e-4, atol=1e-6)


def test_defaults_are_what_mmrec_runs():
    model = _model()
    assert model.n_layers == 3 and model.concatenate and model.modalities == ("audio", "image")
    assert model.latent_dims == {"audio": None, "image": 256} and set(model.mlps) == {"image"}
    # image: 5 -> 256 MLP, then 256-wide first layer; audio (MMRec's text GCN): the raw 2-d features
    assert tuple(model.preferences["image"].shape) == (N_USERS, 256)
    assert tuple(model.preferences["audio"].shape) == (N_USERS, 2)
    assert tuple(model.convs["image"][0].shape) == (256, 256) and tuple(model.convs["audio"][0].shape) == (2, 2)
    assert tuple(model.gates["image"][0].kernel.shape) == (256 + DIM, DIM)
    assert [tuple(g.kernel.shape) for g in model.gates["audio"]] == [(2 + DIM, DIM), (2 * DIM, DIM), (2 * DIM, DIM)]
    assert tuple(_model(concatenate=False).gates["audio"][0].kernel.shape) == (2, DIM)
    assert _names(model.non_trainable_weights) == FIXED_TABLES
    assert not _model(trainable_tables=True).non_trainable_weights


def test_initialization_follows_mmrec():
    """Xavier-normal (untruncated) where MMRec calls xavier_normal_, PyTorch's default Linear init elsewhere."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    n_users, n_items, dim = 300, 200, 32
    features = {"image": rng.normal(size=(n_items, 40)), "audio": rng.normal(size=(n_items, 24))}
    model = MMGCN(n_users, n_items, rng.integers(0, n_users, 500), rng.integers(0, n_items, 500), features,
                  embedding_dim=dim)

    def xavier(table, fan_in, fan_out):
        values, std = np.asarray(table), np.sqrt(2.0 / (fan_in + fan_out))
        np.testing.assert_allclose(values.std(), std, rtol=0.15)
        # normal tails: Keras' truncated normal never exceeds 2.27 std
        assert abs(values.mean()) < 0.15 * std and np.abs(values).max() > 2.35 * std

    def torch_default(table, fan_in):
        values, bound = np.asarray(table), 1.0 / np.sqrt(fan_in)
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.7 * bound
        if values.size >= 1000:
            np.testing.assert_allclose(values.std(), bound / np.sqrt(3.0), rtol=0.1)

    xavier(model.id_embedding, n_users + n_items, dim)
    xavier(model.preferences["image"], n_users, 256)
    xavier(model.preferences["audio"], n_users, 24)
    torch_default(model.mlps["image"].kernel, 40)
    torch_default(model.mlps["image"].bias, 40)
    for m, width in (("image", 256), ("audio", 24)):
        xavier(model.convs[m][0], width, width)
        xavier(model.linears[m][0].kernel, width, dim)
        torch_default(model.linears[m][0].bias, width)
        xavier(model.gates[m][0].kernel, width + dim, dim)
        torch_default(model.gates[m][0].bias, width + dim)
        for layer in (1, 2):
            xavier(model.convs[m][layer], dim, dim)
            xavier(model.linears[m][layer].kernel, dim, dim)
            torch_default(model.linears[m][layer].bias, dim)
            torch_default(model.gates[m][layer].kernel, 2 * dim)  # g_layer2, g_layer3: never re-initialised
            torch_default(model.gates[m][layer].bias, 2 * dim)


def test_training_losses_match_mmrecs_calculate_loss():
    model = _model(reg_weight=0.5)
    terms = model.training_losses(BATCH)
    assert set(terms) == set(model.loss_terms) == {"ranking", "l2"}
    want_ranking, want_l2 = _numpy_losses(model, *_reference(model))
    np.testing.assert_allclose(float(terms["ranking"]), want_ranking, rtol=1e-5)
    np.testing.assert_allclose(float(terms["l2"]), want_l2, rtol=1e-5)
    # without a latent modality no preference table is regularized
    plain = _model(reg_weight=0.5, latent_dims={"image": None})
    ids = plain.id_embedding.numpy()
    user_rows = np.repeat(BATCH["user"].numpy(), 2)
    item_rows = np.stack([BATCH["pos_item"].numpy(), BATCH["neg_item"].numpy()], axis=1).reshape(-1) + N_USERS
    np.testing.assert_allclose(float(plain.training_losses(BATCH)["l2"]),
                               0.5 * (ids[user_rows] ** 2 + ids[item_rows] ** 2).mean(), rtol=1e-5)


def test_encodes_output_reaches_the_scores():
    model = _model()
    replaced = {"image": np.zeros((N_ITEMS, 256), np.float32),
                "audio": np.arange(2 * N_ITEMS, dtype=np.float32).reshape(N_ITEMS, 2) - 3.0}
    seen = {}

    def encode(representations, pos_rows, neg_rows):
        seen.update(representations=representations, pos=pos_rows.numpy(), neg=neg_rows.numpy())
        return {m: tf.constant(v) for m, v in replaced.items()}

    terms = model.training_losses(BATCH, encode)
    np.testing.assert_array_equal(seen["pos"], BATCH["pos_item"].numpy())  # rows are item ids
    np.testing.assert_array_equal(seen["neg"], BATCH["neg_item"].numpy())
    for m, h in _item_inputs(model).items():
        np.testing.assert_allclose(seen["representations"][m].numpy(), h, rtol=1e-5, atol=1e-6)
    want_users, want_items = _reference(model, replaced)
    np.testing.assert_allclose(float(terms["ranking"]), _numpy_losses(model, want_users, want_items)[0], rtol=1e-5)
    users, items = model.embeddings({m: tf.constant(v) for m, v in replaced.items()})
    np.testing.assert_allclose(users.numpy(), want_users, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), want_items, rtol=1e-4, atol=1e-6)
    # the codes did change the embeddings, by more than the tolerance of the comparisons above
    for got, unchanged in zip((users.numpy(), items.numpy()), _reference(model)):
        assert not np.allclose(got, unchanged, rtol=1e-3, atol=1e-5)


def test_compiled_fit_trains_the_network_and_leaves_mmrecs_fixed_tables_as_they_are():
    backbone = _model(n_layers=2)  # a first layer and a later one; compiling a third would only cost time
    model = Recommender(backbone)
    model.build()
    trainable = {v.path: v.numpy().copy() for v in model.trainable_variables}
    fixed = {v.path: v.numpy().copy() for v in backbone.non_trainable_variables}
    features = {m: backbone.features[m].numpy().copy() for m in backbone.modalities}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    history = model.fit(tf.data.Dataset.from_tensors(BATCH).repeat(), steps_per_epoch=2, epochs=1, verbose=0,
                        shuffle=False)
    assert {"loss", "ranking", "l2"} <= set(history.history) and np.isfinite(history.history["loss"]).all()
    assert all(not np.allclose(v.numpy(), trainable[v.path]) for v in model.trainable_variables)
    assert _names(backbone.non_trainable_variables) == FIXED_TABLES
    for v in backbone.non_trainable_variables:
        np.testing.assert_array_equal(v.numpy(), fixed[v.path])
    for m, values in features.items():
        np.testing.assert_array_equal(backbone.features[m].numpy(), values)


def test_trainable_tables_get_gradients_from_the_ranking_and_the_regularizer():
    model = _model(trainable_tables=True, reg_weight=0.5)
    assert FIXED_TABLES <= _names(model.trainable_variables)
    tables = [model.id_embedding, model.preferences["audio"], model.preferences["image"]]
    for term in ("ranking", "l2"):
        with tf.GradientTape() as tape:
            loss = model.training_losses(BATCH)[term]
        gradients = tape.gradient(loss, tables)
        assert all(g is not None and np.abs(tf.convert_to_tensor(g).numpy()).sum() > 0 for g in gradients[::2])
    # the l2 term reads no text-role (non-latent) preference table
    assert gradients[1] is None or not np.abs(tf.convert_to_tensor(gradients[1]).numpy()).any()


def test_mrdib_wraps_mmgcn_and_its_codes_carry_gradients_to_the_mlp():
    model = Recommender(_model(), MRdIBRegularizer(["audio", "image"], n_users=N_USERS, seed=0))
    model.build()
    with tf.GradientTape() as tape:
        terms = model(BATCH, training=True)
        loss = model.compute_loss(y_pred=terms)
    variables = model.trainable_variables
    gradients = dict(zip((v.path for v in variables), tape.gradient(loss, variables)))
    assert set(terms) == {"ranking", "l2"} and np.isfinite(float(loss))
    for path in ("image_mlp/kernel", "bottleneck_audio", "bottleneck_image", "audio_conv1", "image_gate3"):
        grads = [g for p, g in gradients.items() if path in p]
        assert grads and any(g is not None and np.abs(tf.convert_to_tensor(g).numpy()).sum() > 0 for g in grads), path


def test_bad_input_is_a_clear_error():
    features = _features()
    with pytest.raises(ValueError, match="n_items=4"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS, {**features, "audio": features["audio"][:3]})
    with pytest.raises(ValueError, match="at least one modality"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS, {})
    with pytest.raises(ValueError, match="n_layers >= 1"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS, features, n_layers=0)
    with pytest.raises(ValueError, match="embedding_dim"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS, features, embedding_dim=0)
    with pytest.raises(ValueError, match="unknown \\['text'\\]"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS, features, latent_dims={"text": 256})
    with pytest.raises(ValueError, match="bad widths"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS, features, latent_dims={"image": 0})
    with pytest.raises(ValueError, match="one length"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS[:-1], features)
    with pytest.raises(ValueError, match="items in \\[0, 4\\)"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS + 2, features)
    with pytest.raises(ValueError, match="reg_weight"):
        MMGCN(N_USERS, N_ITEMS, USERS, ITEMS, features, reg_weight=-1.0)
