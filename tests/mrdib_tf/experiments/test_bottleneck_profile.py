"""bottleneck_profile: the noise and KL per code dimension, and the nuisance columns' share of the code's
weight, against numpy computed from the model's own weights."""

import json

import numpy as np
import pytest

from data_pipeline.corruption import RECIPE_FILE
from data_pipeline.synthetic import STRUCTURE_FILE
from mrdib_tf.backbones import VBPR
from mrdib_tf.experiments.bottleneck_profile import bottleneck_profile, nuisance_columns
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer

N_USERS, N_ITEMS, DIM = 4, 50, 3


def _model(**kwargs):
    rng = np.random.default_rng(0)
    features = {"image": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
                "text": rng.normal(size=(N_ITEMS, 4)).astype(np.float32)}
    model = Recommender(VBPR(N_USERS, N_ITEMS, features, embedding_dim=DIM),
                        MRdIBRegularizer(["image", "text"], n_users=N_USERS, seed=0, **kwargs))
    model.build()
    return model, features


def _set_sigma_logits(model, modality, logits):
    sigma = model.regularizer.bottlenecks[modality].sigma
    sigma.kernel.assign(np.zeros(DIM, np.float32))
    sigma.bias.assign(np.asarray(logits, np.float32))


def test_the_matched_forms_noise_is_reported_in_units_of_each_dimensions_spread(tmp_path):
    model, features = _model()
    _set_sigma_logits(model, "image", [-2.0, 0.0, 2.0])  # sigma = sigmoid(logit) of the spread
    profile = bottleneck_profile(model)
    entry = profile["modalities"]["image"]
    want = 1 / (1 + np.exp(-np.array([-2.0, 0.0, 2.0])))
    np.testing.assert_allclose(entry["noise_to_spread"], 1e-4 + (1 - 1e-4) * want, rtol=1e-4)
    np.testing.assert_allclose(entry["kl_per_dimension"], -np.log(1e-4 + (1 - 1e-4) * want) + (want**2 + 1) / 2 - 0.5,
                               rtol=1e-3)
    assert profile["form"] == "matched" and "nuisance" not in entry


def test_nuisance_columns_share_of_the_code_weight_follows_the_projection_and_the_noise(tmp_path):
    model, _ = _model()
    logits = np.array([-3.0, 3.0, -3.0])
    _set_sigma_logits(model, "image", logits)
    gains = np.array([2.0, 0.5, -1.5], np.float32)  # the bottleneck's mean map: per dimension, not the identity
    model.regularizer.bottlenecks["image"].mu.kernel.assign(gains)
    kernel = np.zeros((6, DIM), np.float32)
    kernel[0, 0] = kernel[1, 2] = 1.0  # signal columns 0, 1 feed the quiet dimensions 0 and 2
    kernel[4, 1] = kernel[5, 1] = 1.0  # nuisance columns 4, 5 feed the drowned dimension 1
    model.backbone.projections["image"].kernel.assign(kernel)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / RECIPE_FILE).write_text(json.dumps({"measured": {"image": {"nuisance_columns": [4, 6]},
                                                               "train_rows": {"before": 1, "after": 1}}}))
    shares = bottleneck_profile(model, folder)["modalities"]["image"]["nuisance"]
    codes = model.backbone.modality_representations()["image"].numpy() * gains  # the served means, less the bias
    jacobian = kernel * gains / codes.std(axis=0)
    noise = 1e-4 + (1 - 1e-4) / (1 + np.exp(-logits))  # sigma, in units of the spread, by definition
    plain, weighed = (jacobian**2).sum(axis=1), (jacobian**2 / noise**2).sum(axis=1)
    np.testing.assert_allclose(shares["share_of_weight_without_noise"], plain[4:].sum() / plain.sum(), rtol=1e-4)
    np.testing.assert_allclose(shares["share_of_weight_with_noise"], weighed[4:].sum() / weighed.sum(), rtol=1e-4)
    assert shares["share_of_weight_with_noise"] < 0.01 < shares["share_of_weight_without_noise"]
    assert shares["share_of_columns"] == pytest.approx(2 / 6)


def test_nuisance_columns_are_read_from_a_corruption_recipe_or_a_synthetic_structure(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / RECIPE_FILE).write_text(json.dumps({"measured": {"image": {"nuisance_columns": [3, 5]},
                                                                       "audio": {"rows_moved": 2}}}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / STRUCTURE_FILE).write_text(json.dumps({"feature_columns": {
        "image": {"signal": [0, 2], "noise": [1, 3]}, "text": {"signal": [0], "noise": []}}}))
    assert nuisance_columns(tmp_path / "a") == {"image": [3, 4]}
    assert nuisance_columns(tmp_path / "b") == {"image": [1, 3]}
    assert nuisance_columns(None) == {} and nuisance_columns(tmp_path) == {}


def test_a_bare_model_or_a_deterministic_bottleneck_has_no_profile():
    assert bottleneck_profile(Recommender(_model()[0].backbone)) is None
    assert bottleneck_profile(_model(alpha_kl=0.0)[0]) is None
    dropout = bottleneck_profile(_model(bottleneck="dropout")[0])
    assert dropout == {"form": "dropout", "modalities": {"image": {}, "text": {}}}
