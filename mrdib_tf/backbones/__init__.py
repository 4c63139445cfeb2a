"""Backbones: one module per model, all behind `Backbone`; `build_backbone` picks one by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mrdib_tf.backbones.base import Backbone
from mrdib_tf.backbones.lightgcn import LightGCN
from mrdib_tf.backbones.mgcn import MGCN
from mrdib_tf.backbones.vbpr import VBPR

if TYPE_CHECKING:
    from data_pipeline.dataset import PreparedDataset
    from mrdib_tf.config import RunConfig


def _vbpr(dataset: "PreparedDataset", config: "RunConfig") -> Backbone:
    return VBPR(
        dataset.n_users, dataset.n_items, dataset.features,
        embedding_dim=config.embedding_dim, reg_weight=config.reg_weight, name="vbpr",
    )


def _lightgcn(dataset: "PreparedDataset", config: "RunConfig") -> Backbone:
    users, items = dataset.train_pairs()
    return LightGCN(
        dataset.n_users, dataset.n_items, users, items, embedding_dim=config.embedding_dim,
        n_layers=config.n_layers, reg_weight=config.reg_weight, name="lightgcn",
    )


def _mgcn(dataset: "PreparedDataset", config: "RunConfig") -> Backbone:
    users, items = dataset.train_pairs()
    return MGCN(
        dataset.n_users, dataset.n_items, users, items, dataset.features, embedding_dim=config.embedding_dim,
        n_ui_layers=config.n_layers, cl_weight=config.cl_weight, reg_weight=config.reg_weight,
        batch_size=config.batch_size, placement=config.placement, name="mgcn",
    )


BACKBONES: dict[str, Callable[["PreparedDataset", "RunConfig"], Backbone]] = {
    "lightgcn": _lightgcn,
    "mgcn": _mgcn,
    "vbpr": _vbpr,
}

#: Backbones that read no item features: their datasets may lack feature files.
ID_ONLY_BACKBONES = frozenset({"lightgcn"})


def build_backbone(dataset: "PreparedDataset", config: "RunConfig") -> Backbone:
    """The backbone named by `config.backbone`, sized for `dataset`."""
    try:
        factory = BACKBONES[config.backbone]
    except KeyError:
        raise ValueError(
            f"Unknown backbone '{config.backbone}'; choose one of {sorted(BACKBONES)}."
        ) from None
    return factory(dataset, config)


__all__ = ["BACKBONES", "Backbone", "ID_ONLY_BACKBONES", "LightGCN", "MGCN", "VBPR", "build_backbone"]
