"""Run settings: the per-backbone validated defaults come from one table and reach the model."""

import pytest

from data_pipeline import load_dataset, write_synthetic_dataset
from mrdib_tf.experiments.config import BACKBONE_DEFAULTS, COMMON_DEFAULTS, RunConfig, config_from_args
from mrdib_tf.experiments.models import build_recommender
from trainers import fit

ALPHAS = ("alpha_kl", "alpha_mi", "alpha_unique")


def _expected(backbone: str, name: str):
    return BACKBONE_DEFAULTS[backbone].get(name, COMMON_DEFAULTS[name])


@pytest.mark.parametrize("backbone", sorted(BACKBONE_DEFAULTS))
def test_unset_settings_take_the_backbones_validated_values(backbone):
    config = RunConfig(backbone=backbone)
    for name in COMMON_DEFAULTS:
        assert getattr(config, name) == _expected(backbone, name), name


def test_the_multimodal_backbones_have_validated_alphas_of_their_own():
    for backbone in ("vbpr", "mgcn", "dualgnn", "soil", "mmgcn", "freedom"):
        assert set(ALPHAS) <= BACKBONE_DEFAULTS[backbone].keys(), backbone


def test_the_command_with_no_flags_builds_the_regularizer_with_those_alphas(tmp_path):
    folder = tmp_path / "tiny"
    write_synthetic_dataset(folder, n_users=60, n_items=40, noise_dims=4, signal_dims=16,
                            interactions_per_user=6, seed=1)
    for backbone in ("vbpr", "mgcn"):
        config = config_from_args(fit.parse_args(["--data-dir", str(folder), "--backbone", backbone]))
        model = build_recommender(load_dataset(data_dir=folder), config)
        for name in ALPHAS:
            assert getattr(model.regularizer, name) == BACKBONE_DEFAULTS[backbone][name], (backbone, name)
    assert RunConfig(backbone="vbpr", alpha_mi=0.0).alpha_mi == 0.0  # a given value wins over the table


def test_mmgcn_runs_mmrecs_three_layers_and_the_other_graph_backbones_two():
    assert RunConfig(backbone="mmgcn").n_layers == 3
    assert RunConfig(backbone="freedom").n_layers == RunConfig(backbone="lightgcn").n_layers == 2
    assert RunConfig(backbone="mmgcn", n_layers=1).n_layers == 1


def test_mgcn_and_soil_decay_their_learning_rate_by_default_as_in_their_configs():
    assert RunConfig(backbone="mgcn").lr_decay == RunConfig(backbone="soil").lr_decay == 0.96
    assert all(RunConfig(backbone=b).lr_decay == 1.0 for b in ("vbpr", "lightgcn", "freedom", "mmgcn", "dualgnn"))
    with pytest.raises(ValueError, match="lr_decay"):
        RunConfig(lr_decay=0.0)


def test_soil_takes_its_authors_per_dataset_graph_settings_frozen_features_and_no_regularizer():
    assert (RunConfig(backbone="soil", dataset="sports").interest_k, RunConfig(backbone="soil", dataset="sports").second_order_k) == (5, 6)
    clothing = RunConfig(backbone="soil", data_dir="/somewhere/clothing")
    assert (clothing.interest_k, clothing.second_order_k) == (5, 3)
    assert (RunConfig(backbone="soil", dataset="tiktok").interest_k, RunConfig(backbone="soil", dataset="tiktok").second_order_k) == (10, 2)
    assert RunConfig(backbone="soil", dataset="sports", interest_k=7).interest_k == 7
    soil = RunConfig(backbone="soil")
    assert soil.fine_tune_features is False and soil.reg_weight == 0.0 and soil.user_item_cl_weight == 0.01
    assert RunConfig(backbone="mgcn").fine_tune_features is True
    assert RunConfig(backbone="soil", fine_tune_features=True).fine_tune_features is True
    with pytest.raises(ValueError, match="interest_k"):
        RunConfig(backbone="soil", interest_k=0)
