import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.backbones import VBPR


def _features(rng, n_items):
    return {"text": rng.normal(size=(n_items, 5)).astype(np.float32),
            "image": rng.normal(size=(n_items, 7)).astype(np.float32)}


def test_bare_vbpr_equals_one_projection_of_the_concatenated_features():
    """MMRec's VBPR: item = [ID factors ; Linear(concat(features))]; ours must be the same function."""
    rng = np.random.default_rng(0)
    features = _features(rng, n_items=6)
    model = VBPR(4, 6, features, embedding_dim=3)
    users, items = (t.numpy() for t in model())

    weights = np.concatenate([model.projections["image"].kernel.numpy(),
                              model.projections["text"].kernel.numpy()])
    bias = rng.normal(size=3).astype(np.float32)
    model.projection_bias.assign(bias)
    _, items = (t.numpy() for t in model())
    concatenated = np.concatenate([features["image"], features["text"]], axis=1)
    expected = np.concatenate([model.item_factors.numpy(), concatenated @ weights + bias], axis=1)
    np.testing.assert_allclose(items, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(users, model.user_factors.numpy())
    assert users.shape == (4, 6)


def test_representations_are_per_modality_projections():
    rng = np.random.default_rng(1)
    features = _features(rng, n_items=6)
    model = VBPR(4, 6, features, embedding_dim=3)
    representations = model.modality_representations()
    assert sorted(representations) == ["image", "text"]
    for modality, h in representations.items():
        expected = features[modality] @ model.projections[modality].kernel.numpy()
        np.testing.assert_allclose(h.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_rows_of_given_items_equal_those_rows_of_the_whole_table():
    rng = np.random.default_rng(4)
    model = VBPR(4, 6, _features(rng, 6), embedding_dim=3)
    items = np.array([5, 0, 5, 2])
    rows = model.modality_representations(items=items)
    whole = model.modality_representations()
    for modality in model.modalities:
        np.testing.assert_allclose(rows[modality].numpy(), whole[modality].numpy()[items], rtol=1e-6)
    users, item_rows = model.embeddings(rows, items=items)
    np.testing.assert_allclose(item_rows.numpy(), model()[1].numpy()[items], rtol=1e-5, atol=1e-6)
    assert users.shape == (4, 6)


def _numpy_bpr(u, p, n):
    return np.mean(np.log1p(np.exp(-((u * p).sum(1) - (u * n).sum(1)))))


def test_training_losses_are_bpr_and_mmrecs_emb_loss_on_the_whole_tables_rows():
    """Computed on the batch's rows only, the terms (and their gradients) equal the whole-table ones MMRec uses."""
    rng = np.random.default_rng(2)
    model = VBPR(4, 6, _features(rng, 6), embedding_dim=3, reg_weight=0.5)
    batch = {"user": tf.constant([0, 3, 3]), "pos_item": tf.constant([1, 2, 2]), "neg_item": tf.constant([5, 0, 4])}
    with tf.GradientTape(persistent=True) as tape:
        terms = model.training_losses(batch)
        total = terms["ranking"] + terms["l2"]
        users_table, items_table = model()  # every item, as MMRec computes it
        u, p, n = (tf.gather(t, batch[k]) for t, k in ((users_table, "user"), (items_table, "pos_item"),
                                                       (items_table, "neg_item")))
        whole = _numpy_bpr_tf(u, p, n) + 0.5 * (tf.norm(u) + tf.norm(p) + tf.norm(n)) / 3
    u, p, n = u.numpy(), p.numpy(), n.numpy()
    np.testing.assert_allclose(float(terms["ranking"]), _numpy_bpr(u, p, n), rtol=1e-5)
    want_l2 = 0.5 * (np.linalg.norm(u) + np.linalg.norm(p) + np.linalg.norm(n)) / 3
    np.testing.assert_allclose(float(terms["l2"]), want_l2, rtol=1e-5)
    for variable, got, want in zip(model.trainable_variables, tape.gradient(total, model.trainable_variables),
                                   tape.gradient(whole, model.trainable_variables)):
        np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(want).numpy(),
                                   rtol=1e-5, atol=1e-7, err_msg=variable.path)


def _numpy_bpr_tf(u, p, n):
    return tf.reduce_mean(tf.math.softplus(-(tf.reduce_sum(u * p, 1) - tf.reduce_sum(u * n, 1))))


def test_features_are_frozen_and_projections_train():
    model = VBPR(4, 6, _features(np.random.default_rng(3), 6), embedding_dim=3)
    trainable = {v.path.split("/")[-1] for v in model.trainable_variables}
    assert {"user_factors", "item_factors", "projection_bias", "kernel"} <= trainable
    assert not any("features" in v.path for v in model.trainable_variables)


def test_compiles_under_xla():
    model = VBPR(4, 6, _features(np.random.default_rng(4), 6), embedding_dim=3)
    eager = model()[1].numpy()
    compiled = tf.function(lambda: model()[1], jit_compile=True)().numpy()
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_rejects_features_with_the_wrong_number_of_rows():
    with pytest.raises(ValueError, match="image.*n_items=6"):
        VBPR(4, 6, {"image": np.zeros((5, 2), np.float32)})


def test_projections_start_as_the_blocks_of_mmrecs_single_xavier_normal_layer():
    """MMRec projects the concatenated features with one Xavier-normal layer: std sqrt(2 / (total width + d))."""
    features = {"image": np.zeros((3, 512), np.float32), "text": np.zeros((3, 256), np.float32)}
    model = VBPR(2, 3, features, embedding_dim=64)
    kernels = np.concatenate([model.projections[m].kernel.numpy() for m in ("image", "text")])
    want = np.sqrt(2.0 / (768 + 64))
    assert abs(kernels.std() / want - 1) < 0.02, (kernels.std(), want)
    assert abs(kernels.mean()) < 4 * want / np.sqrt(kernels.size)
