"""Fixtures shared by the command-line tests."""

import pytest

from data_pipeline import write_synthetic_dataset


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A tiny synthetic MMRec folder (120 users, ~80 items, image + text) for end-to-end command runs."""
    folder = tmp_path_factory.mktemp("data") / "tiny"
    write_synthetic_dataset(folder, n_users=120, n_items=80, noise_dims=8, signal_dims=16,
                            interactions_per_user=8, seed=3)
    return folder
