"""Test-wide set-up: quiet TensorFlow, the project root importable from any test, and a tiny dataset."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from data_pipeline import write_synthetic_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A tiny synthetic MMRec folder (120 users, ~80 items, image + text) for end-to-end runs."""
    folder = tmp_path_factory.mktemp("data") / "tiny"
    write_synthetic_dataset(folder, n_users=120, n_items=80, noise_dims=8, signal_dims=16,
                            interactions_per_user=8, seed=3)
    return folder
