import json

import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.diagnostics import estimate_mutual_information, export_projector, pca_2d


def test_pca_matches_the_covariance_eigenvectors_up_to_sign():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 3.0
    centred = x - x.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred.T))
    expected = centred @ eigenvectors[:, ::-1][:, :2]
    got = pca_2d(x)
    for column in range(2):
        assert np.allclose(np.abs(got[:, column]), np.abs(expected[:, column]), atol=1e-8)


def test_mutual_information_of_correlated_gaussians_is_close_to_the_closed_form():
    rng = np.random.default_rng(1)
    rho, d, n = 0.8, 2, 4000
    a = rng.normal(size=(n, d))
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=(n, d))
    truth = -d / 2 * np.log(1 - rho**2)  # 1.022 nats
    estimate = estimate_mutual_information(a, b, steps=400, seed=0)
    assert 0.7 * truth <= estimate <= truth + 0.1
    independent = estimate_mutual_information(a, rng.normal(size=(n, d)), steps=200, seed=0)
    assert abs(independent) < 0.08


def test_projector_export_holds_every_view_with_its_values(tmp_path):
    rng = np.random.default_rng(2)
    views = {"h": {"image": rng.normal(size=(7, 3)), "text": rng.normal(size=(7, 3))},
             "mu": {"image": rng.normal(size=(7, 3)), "text": rng.normal(size=(7, 3))}}
    final = rng.normal(size=(7, 6))
    names = export_projector(views, final, tmp_path)
    assert sorted(names) == ["items/final", "items/h_image", "items/h_text", "items/mu_image", "items/mu_text"]
    config = (tmp_path / "projector_config.pbtxt").read_text()
    reader = tf.train.load_checkpoint(str(tmp_path))
    for key, expected in [("items_final", final), ("items_mu_text", views["mu"]["text"])]:
        tensor_name = f"{key}/.ATTRIBUTES/VARIABLE_VALUE"
        assert tensor_name in config
        np.testing.assert_allclose(reader.get_tensor(tensor_name), expected, rtol=1e-6)
    assert len((tmp_path / "metadata.tsv").read_text().splitlines()) == 7


def test_mutual_information_rejects_unpaired_rows():
    with pytest.raises(ValueError, match="pair rows"):
        estimate_mutual_information(np.zeros((3, 2)), np.zeros((4, 2)))
