"""Recommender: the backbone's terms and MRdIB's added losses against numpy references, inference on the
posterior means, and training with Keras' own Model.fit (XLA), the critics included."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.backbones import MGCN, VBPR, LightGCN
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer

N_USERS, N_ITEMS = 5, 8
BATCH = {"user": tf.constant([0, 1, 4, 2]), "pos_item": tf.constant([1, 2, 3, 7]),
         "neg_item": tf.constant([0, 5, 6, 4])}


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
            "text": rng.normal(size=(N_ITEMS, 4)).astype(np.float32)}


def _vbpr(seed=0):
    return VBPR(N_USERS, N_ITEMS, _features(seed), embedding_dim=3, reg_weight=0.1)


def _mgcn():
    users, items = np.array([0, 0, 1, 2, 3, 4, 4]), np.array([1, 2, 3, 0, 5, 6, 7])
    return MGCN(N_USERS, N_ITEMS, users, items, _features(1), embedding_dim=3, knn_k=2, name="mgcn")


def _mrdib(**kwargs):
    return MRdIBRegularizer(["image", "text"], n_users=N_USERS, **{"seed": 1, **kwargs})


def _numpy_bpr_total(users_table, items_table, reg_weight, batch=BATCH):
    u = users_table[batch["user"].numpy()]
    p = items_table[batch["pos_item"].numpy()]
    n = items_table[batch["neg_item"].numpy()]
    bpr = np.mean(np.log1p(np.exp(-((u * p).sum(1) - (u * n).sum(1)))))
    return bpr + reg_weight * (np.linalg.norm(u) + np.linalg.norm(p) + np.linalg.norm(n)) / len(u)


def _loss(model, batch=BATCH):
    return float(model.compute_loss(y_pred=model(batch, training=True)))


def test_bare_loss_is_bpr_plus_l2_of_the_backbone():
    model = Recommender(_vbpr())
    terms = model(BATCH, training=True)
    assert set(terms) == {"ranking", "l2"}
    users_table, items_table = (t.numpy() for t in model())
    np.testing.assert_allclose(_loss(model), _numpy_bpr_total(users_table, items_table, 0.1), rtol=1e-5)


def test_all_zero_alphas_reproduce_the_bare_backbone_loss_exactly():
    bare = Recommender(_vbpr(seed=3))
    wrapped = Recommender(_vbpr(seed=3), _mrdib(alpha_kl=0, alpha_mi=0, alpha_unique=0))
    wrapped.backbone.set_weights(bare.backbone.get_weights())
    assert _loss(wrapped) == pytest.approx(_loss(bare), rel=1e-6)
    assert [float(x) for x in wrapped.losses] == [0.0]


def _affine(x, layer):
    """What the bottleneck's mu or sigma layer computes, in numpy: dense (kernel [d, d]) or diagonal ([d])."""
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    return (x @ kernel if kernel.ndim == 2 else x * kernel) + bias


def _standardized_means(model, batch):
    """Per modality: the posterior means of the batch's positive then negative rows, standardised over them,
    and sigma, in numpy from the layer's weights."""
    rows = np.concatenate([batch["pos_item"].numpy(), batch["neg_item"].numpy()])
    if isinstance(model.backbone, VBPR):  # it computes only the batch's rows, in that order
        representations = model.backbone.modality_representations(items=tf.constant(rows))
        rows = np.arange(len(rows))
    else:
        representations = model.backbone.modality_representations()
    out = {}
    for m, h in representations.items():
        bottleneck = model.regularizer.bottlenecks[m]
        mu = _affine(h.numpy().astype(np.float64), bottleneck.mu)[rows]
        standardized = (mu - mu.mean(0)) / np.sqrt(mu.var(0) + 1e-12)
        sigma = None
        if bottleneck.sigma is not None:
            logits = _affine(standardized, bottleneck.sigma)
            sigma = 1e-4 + (1 - 1e-4) / (1 + np.exp(-logits))
        out[m] = standardized, sigma
    return out


def _randomize(layer, seed=9):
    rng = np.random.default_rng(seed)
    for variable in layer.trainable_variables:  # away from the identity / constant start
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype(np.float32))


def test_the_kl_added_to_the_loss_matches_numpy_for_row_wise_and_graph_backbones_alike():
    """VBPR encodes only the batch's rows, a graph backbone every item: both average the KL over the batch's
    positive and negative rows (repeats counted); the loss gets alpha_kl times it."""
    batch = {"user": tf.constant([0, 1, 4, 2]), "pos_item": tf.constant([1, 2, 1, 2]),
             "neg_item": tf.constant([3, 3, 3, 0])}  # repeated items, half the catalogue
    for backbone in (_vbpr(seed=6), _mgcn()):
        model = Recommender(backbone, _mrdib(alpha_kl=0.3, alpha_mi=0, alpha_unique=0))
        model.build()
        _randomize(model.regularizer)
        terms = model(batch, training=True)
        kl = sum(np.mean(np.sum(-np.log(sigma) + (sigma**2 + z**2) / 2 - 0.5, axis=1))
                 for z, sigma in _standardized_means(model, batch).values())
        np.testing.assert_allclose(float(model.regularizer.trackers["kl"].result()), kl, rtol=1e-4,
                                   err_msg=backbone.name)
        want = float(tf.add_n(list(terms.values()))) + 0.3 * kl
        np.testing.assert_allclose(float(model.compute_loss(y_pred=terms)), want, rtol=1e-4)


def test_the_unique_term_added_to_the_loss_matches_numpy():
    model = Recommender(_vbpr(), _mrdib(alpha_kl=0.0, alpha_mi=0.0, alpha_unique=0.3))  # deterministic codes
    model.build()
    _randomize(model.regularizer)
    terms = model(BATCH, training=True)
    users, b = BATCH["user"].numpy(), len(BATCH["pos_item"])
    unique = 0.0
    for m, (z, _) in _standardized_means(model, BATCH).items():
        p_u = model.regularizer.decoders[m].users.numpy()[users]
        unique += np.mean(np.log1p(np.exp(-((p_u * z[:b]).sum(1) - (p_u * z[b:]).sum(1)))))
    users_table, items_table = (t.numpy() for t in model.backbone.embeddings(
        {m: model.regularizer.bottlenecks[m](h) for m, h in model.backbone.modality_representations().items()}))
    want = _numpy_bpr_total(users_table, items_table, 0.1) + 0.3 * unique
    np.testing.assert_allclose(float(model.compute_loss(y_pred=terms)), want, rtol=1e-4)


def test_inference_uses_posterior_means_and_is_deterministic():
    model = Recommender(_vbpr(), _mrdib())
    model.build()
    for bottleneck in model.regularizer.bottlenecks.values():  # move the means away from the identity
        bottleneck.mu.kernel.assign(bottleneck.mu.kernel * 0.5)
    first, second = model()[1].numpy(), model()[1].numpy()
    np.testing.assert_array_equal(first, second)
    backbone, bottlenecks = model.backbone, model.regularizer.bottlenecks
    means = {m: _affine(h.numpy(), bottlenecks[m].mu) for m, h in backbone.modality_representations().items()}
    expected = np.concatenate([backbone.item_factors.numpy(),
                               means["image"] + means["text"] + backbone.projection_bias.numpy()], axis=1)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make_backbone", [_vbpr, _mgcn])
def test_model_fit_under_xla_trains_the_backbone_the_heads_and_the_critics(make_backbone):
    model = Recommender(make_backbone(), _mrdib(fusion_head=True))
    model.build()
    before = {v.path: v.numpy().copy() for v in model.weights}
    critics = {v.path for v in model.regularizer.critic_variables}
    assert critics and critics.isdisjoint(v.path for v in model.trainable_variables)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    history = model.fit(tf.data.Dataset.from_tensors(BATCH).repeat(), steps_per_epoch=3, epochs=2, verbose=0,
                        shuffle=False)
    assert {"loss", "ranking", "l2", "kl", "mi_estimate", "unique", "synergy"} <= set(history.history)
    changed = {path for path, old in before.items()
               if not np.allclose(next(v for v in model.weights if v.path == path).numpy(), old)}
    assert critics <= changed  # trained by the layer's own optimizer, not the model's
    assert {p for p in changed if "decoder" in p or "fusion" in p} and {p for p in changed if "bottleneck" in p}
    assert all(np.isfinite(history.history["loss"]))


def test_id_only_backbone_with_mrdib_is_a_clear_error():
    lightgcn = LightGCN(N_USERS, N_ITEMS, np.array([0, 1]), np.array([0, 1]), embedding_dim=3)
    with pytest.raises(ValueError, match="at least two modalities.*regularizer=None"):
        Recommender(lightgcn, _mrdib())
