import json

import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.experiments.diagnostics import estimate_mutual_information, export_projector, pca_2d


def test_pca_matches_the_covariance_eigenvectors_up_to_sign():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 3.0
    centred = x - x.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred.T))
    expected = centred @ eigenvectors[:, ::-1][:, :2]
    got = pca_2d(x)
    for column in range(2):
        assert np.allclose(np.abs(got[:, column]), np.abs(expected[:, column]), atol=1e-8)


def _gaussian_codes(rows, dims, total_mi, seed):
    """tiktok-sized item codes at MGCN's scale: per-dimension correlation rho with -dims/2 log(1 - rho^2) = total_mi."""
    rng = np.random.default_rng(seed)
    rho = np.sqrt(1 - np.exp(-2 * total_mi / dims))
    a = rng.normal(size=(rows, dims))
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=(rows, dims))
    return 0.0025 * a + 0.01, 0.0025 * b


def test_mutual_information_of_correlated_gaussians_is_close_to_the_closed_form():
    a, b = _gaussian_codes(6700, 8, 2.0, seed=1)
    estimate = estimate_mutual_information(a, b, seed=0)
    # a lower bound on held-out rows: close from below, above only by sampling noise
    assert 0.85 * 2.0 <= estimate <= 2.0 + 0.05, estimate


def test_mutual_information_is_near_zero_on_independent_codes():
    a, _ = _gaussian_codes(6700, 8, 0.0, seed=2)
    _, b = _gaussian_codes(6700, 8, 0.0, seed=3)
    assert abs(estimate_mutual_information(a, b, seed=0)) < 0.02


def test_mutual_information_is_measured_on_rows_the_critic_did_not_train_on():
    # 600 rows of 64-d independent codes: a critic memorises its training pairs within the 300 steps, so an
    # estimate on those rows would come out clearly positive
    a, _ = _gaussian_codes(600, 64, 0.0, seed=4)
    _, b = _gaussian_codes(600, 64, 0.0, seed=5)
    assert estimate_mutual_information(a, b, steps=300, seed=0) < 0.02


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


def test_mutual_information_rejects_unpaired_rows_and_bad_arguments():
    with pytest.raises(ValueError, match="pair rows"):
        estimate_mutual_information(np.zeros((30, 2)), np.zeros((40, 2)))
    with pytest.raises(ValueError, match="at least 10 rows"):
        estimate_mutual_information(np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="evaluate_every"):
        estimate_mutual_information(np.zeros((30, 2)), np.zeros((30, 2)), evaluate_every=0)
