import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.backbones import MGCN, VBPR, LightGCN
from mrdib_tf.losses import bpr_loss
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer

N_USERS, N_ITEMS = 5, 8


def _backbone(seed=0):
    rng = np.random.default_rng(seed)
    features = {"image": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
                "text": rng.normal(size=(N_ITEMS, 4)).astype(np.float32)}
    return VBPR(N_USERS, N_ITEMS, features, embedding_dim=3, reg_weight=0.1)


BATCH = {"user": tf.constant([0, 1, 4, 2]), "pos_item": tf.constant([1, 2, 3, 7]),
         "neg_item": tf.constant([0, 5, 6, 4])}


def _numpy_bpr_total(users_table, items_table, reg_weight):
    u = users_table[BATCH["user"].numpy()]
    p = items_table[BATCH["pos_item"].numpy()]
    n = items_table[BATCH["neg_item"].numpy()]
    margin = (u * p).sum(1) - (u * n).sum(1)
    bpr = np.mean(np.log1p(np.exp(-margin)))
    l2 = reg_weight * (np.linalg.norm(u) + np.linalg.norm(p) + np.linalg.norm(n)) / len(u)
    return bpr + l2


def test_bare_loss_is_bpr_plus_l2_of_the_backbone():
    model = Recommender(_backbone())
    losses = model.compute_losses(BATCH)
    users_table, items_table = (t.numpy() for t in model.final_embeddings())
    np.testing.assert_allclose(float(losses["loss"]), _numpy_bpr_total(users_table, items_table, 0.1),
                               rtol=1e-5)
    assert set(losses) == {"backbone", "l2", "loss"}


def test_all_zero_alphas_reproduce_the_bare_backbone_loss_exactly():
    bare = Recommender(_backbone(seed=3))
    wrapped = Recommender(_backbone(seed=3),
                          MRdIBRegularizer(["image", "text"], n_users=N_USERS, alpha_kl=0, alpha_mi=0,
                                           alpha_unique=0))
    wrapped.backbone.set_weights(bare.backbone.get_weights())
    bare_losses, wrapped_losses = bare.compute_losses(BATCH), wrapped.compute_losses(BATCH)
    assert float(wrapped_losses["mrdib"]) == 0.0
    np.testing.assert_allclose(float(wrapped_losses["loss"]), float(bare_losses["loss"]), rtol=1e-6)


def _numpy_codes(model, batch):
    """Per modality: the standardised posterior means on the batch's positive then negative rows, and sigma."""
    reg = model.regularizer
    rows = np.concatenate([batch["pos_item"].numpy(), batch["neg_item"].numpy()])
    if model.backbone.row_wise:  # it computes only the batch's rows, in that order
        rows = np.arange(len(rows))
        representations = model.backbone.modality_representations(
            items=tf.concat([batch["pos_item"], batch["neg_item"]], 0))
    else:
        representations = model.backbone.modality_representations()
    codes = {}
    for m, h in representations.items():
        mu = (h.numpy().astype(np.float64) @ reg.mu[m].kernel.numpy() + reg.mu[m].bias.numpy())[rows]
        standardized = (mu - mu.mean(0)) / np.sqrt(mu.var(0) + 1e-12)
        logits = standardized @ reg.sigma[m].kernel.numpy() + reg.sigma[m].bias.numpy()
        codes[m] = standardized, 1e-4 + (1 - 1e-4) / (1 + np.exp(-logits))
    return codes


def _numpy_kl(model, batch):
    """L_KL against the matched prior: summed over dimensions and modalities, mean over rows."""
    return sum(np.mean(np.sum(-np.log(sigma) + (sigma**2 + z**2) / 2 - 0.5, axis=1))
               for z, sigma in _numpy_codes(model, batch).values())


def _numpy_unique(model, batch):
    """L_U: each decoder's BPR on its modality's standardised codes against its own user table."""
    users, b = batch["user"].numpy(), len(batch["pos_item"])
    total = 0.0
    for m, (z, _) in _numpy_codes(model, batch).items():
        p_u = model.regularizer.decoders[m].users.numpy()[users]
        margin = (p_u * z[:b]).sum(1) - (p_u * z[b:]).sum(1)
        total += np.mean(np.log1p(np.exp(-margin)))
    return total


def _mgcn():
    rng = np.random.default_rng(1)
    features = {"image": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
                "text": rng.normal(size=(N_ITEMS, 4)).astype(np.float32)}
    users, items = np.array([0, 0, 1, 2, 3, 4, 4]), np.array([1, 2, 3, 0, 5, 6, 7])
    return MGCN(N_USERS, N_ITEMS, users, items, features, embedding_dim=3, knn_k=2, name="mgcn")


def test_mrdib_losses_match_a_numpy_reference_and_are_summed():
    model = Recommender(_backbone(), MRdIBRegularizer(["image", "text"], n_users=N_USERS, alpha_kl=0.02,
                                                      alpha_mi=0.0, alpha_unique=0.3, seed=1))
    model.compute_losses(BATCH, training=False)  # builds every variable
    rng = np.random.default_rng(9)
    for variable in model.regularizer.trainable_variables:  # away from the identity / constant start
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype(np.float32))
    losses = {k: float(v) for k, v in model.compute_losses(BATCH, training=False).items()}
    kl, unique = _numpy_kl(model, BATCH), _numpy_unique(model, BATCH)
    mrdib = 0.02 * kl + 0.3 * unique
    np.testing.assert_allclose([losses["kl"], losses["unique"], losses["mrdib"]], [kl, unique, mrdib], rtol=1e-4)
    users_table, items_table = (t.numpy() for t in model.final_embeddings())
    np.testing.assert_allclose(losses["loss"], _numpy_bpr_total(users_table, items_table, 0.1) + mrdib, rtol=1e-4)


def test_inference_uses_posterior_means_and_is_deterministic():
    model = Recommender(_backbone(), MRdIBRegularizer(["image", "text"], n_users=N_USERS, seed=2))
    model.compute_losses(BATCH)  # creates every variable
    for layer in model.regularizer.mu.values():  # move the means away from the identity
        layer.kernel.assign(layer.kernel * 0.5)
    first, second = model.final_embeddings()[1].numpy(), model.final_embeddings()[1].numpy()
    np.testing.assert_array_equal(first, second)
    backbone = model.backbone
    means = {m: h.numpy() @ model.regularizer.mu[m].kernel.numpy() + model.regularizer.mu[m].bias.numpy()
             for m, h in backbone.modality_representations().items()}
    expected = np.concatenate([backbone.item_factors.numpy(),
                               means["image"] + means["text"] + backbone.projection_bias.numpy()], axis=1)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-6)


def test_a_compiled_training_step_updates_backbone_and_auxiliary_variables():
    model = Recommender(_backbone(), MRdIBRegularizer(["image", "text"], n_users=N_USERS, seed=4))
    model.compute_losses(BATCH)
    optimizer, critic_optimizer = tf.keras.optimizers.Adam(1e-2), tf.keras.optimizers.Adam(1e-2)
    optimizer.build(model.model_variables)
    critic_optimizer.build(model.critic_variables)
    assert {v.path for v in model.model_variables}.isdisjoint(v.path for v in model.critic_variables)
    assert len(model.model_variables) + len(model.critic_variables) == len(model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables]

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape(persistent=True) as tape:
            losses = model.compute_losses(BATCH)
            critic_loss = -losses["mi_estimate"]
        optimizer.apply_gradients(zip(tape.gradient(losses["loss"], model.model_variables), model.model_variables))
        critic_optimizer.apply_gradients(zip(tape.gradient(critic_loss, model.critic_variables),
                                             model.critic_variables))
        return losses["loss"]

    assert np.isfinite(float(step()))
    changed = {v.path for v, old in zip(model.trainable_variables, before) if not np.allclose(v.numpy(), old)}
    assert any("critic" in p for p in changed) and any("decoder" in p for p in changed)
    assert any(p.endswith("/user_factors") for p in changed)


def test_id_only_backbone_with_mrdib_is_a_clear_error():
    lightgcn = LightGCN(N_USERS, N_ITEMS, np.array([0, 1]), np.array([0, 1]), embedding_dim=3)
    with pytest.raises(ValueError, match="at least two modalities.*--no-mrdib"):
        Recommender(lightgcn, MRdIBRegularizer(["image", "text"], n_users=N_USERS))


def test_bpr_reference_agrees():
    np.testing.assert_allclose(float(bpr_loss(tf.constant([1.0]), tf.constant([0.0]))),
                               np.log1p(np.exp(-1.0)), rtol=1e-6)


def test_row_wise_training_gives_the_whole_table_loss_and_gradients():
    model = Recommender(_backbone(seed=5))
    assert model.backbone.row_wise
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        row_wise = model.compute_losses(BATCH)["loss"]
        users_table, items_table = model.final_embeddings()  # every item, as MMRec computes it
        u = tf.gather(users_table, BATCH["user"])
        p, n = tf.gather(items_table, BATCH["pos_item"]), tf.gather(items_table, BATCH["neg_item"])
        whole = bpr_loss(tf.reduce_sum(u * p, 1), tf.reduce_sum(u * n, 1)) + 0.1 * (
            tf.norm(u) + tf.norm(p) + tf.norm(n)) / 4
    np.testing.assert_allclose(float(row_wise), float(whole), rtol=1e-6)
    for variable, got, expected in zip(variables, tape.gradient(row_wise, variables),
                                       tape.gradient(whole, variables)):
        np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(expected).numpy(),
                                   rtol=1e-5, atol=1e-7, err_msg=variable.path)


def test_kl_averages_over_the_batch_rows_for_row_wise_and_graph_backbones_alike():
    """VBPR encodes only the batch's rows, a graph backbone every item: both average the KL over the batch's
    positive and negative rows (repeats counted), which the numpy reference computes from all items."""
    batch = {"user": tf.constant([0, 1, 4, 2]), "pos_item": tf.constant([1, 2, 1, 2]),
             "neg_item": tf.constant([3, 3, 3, 0])}  # repeated items, half the catalogue
    for backbone in (_backbone(seed=6), _mgcn()):
        model = Recommender(backbone, MRdIBRegularizer(["image", "text"], n_users=N_USERS, alpha_kl=1.0,
                                                       alpha_mi=0, alpha_unique=0, seed=3))
        model.compute_losses(batch, training=False)
        for layer in model.regularizer.sigma.values():
            layer.kernel.assign(np.full(layer.kernel.shape, 0.3, np.float32))
        kl = float(model.compute_losses(batch, training=False)["kl"])
        np.testing.assert_allclose(kl, _numpy_kl(model, batch), rtol=1e-4, err_msg=backbone.name)
