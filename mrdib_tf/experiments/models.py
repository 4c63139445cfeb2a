"""From a `RunConfig` to its dataset and model: the one place run settings meet the library's constructors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mrdib_tf.backbones import FREEDOM, MGCN, MMGCN, SOIL, VBPR, Backbone, DualGNN, LightGCN
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.graph_cache import cached_knn_graph, cached_soil_graphs
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer


#: MGCN's, FREEDOM's and SOIL's item-item graphs keep each item's 10 most similar items (their configs' knn_k).
MGCN_KNN_K = 10
FREEDOM_KNN_K = 10
SOIL_KNN_K = 10


def _vbpr(dataset, config: RunConfig) -> Backbone:
    return VBPR(dataset.n_users, dataset.n_items, dataset.features, embedding_dim=config.embedding_dim,
                reg_weight=config.reg_weight, placement="raw" if config.placement == "raw" else "projections",
                name="vbpr")


def _lightgcn(dataset, config: RunConfig) -> Backbone:
    users, items = dataset.train_pairs()
    return LightGCN(dataset.n_users, dataset.n_items, users, items, embedding_dim=config.embedding_dim,
                    n_layers=config.n_layers, reg_weight=config.reg_weight, name="lightgcn")


def _mgcn(dataset, config: RunConfig) -> Backbone:
    users, items = dataset.train_pairs()
    graphs = {m: cached_knn_graph(np.asarray(f, np.float32), MGCN_KNN_K, dataset.cache_dir, m)
              for m, f in dataset.features.items()}
    return MGCN(dataset.n_users, dataset.n_items, users, items, dataset.features, embedding_dim=config.embedding_dim,
                n_ui_layers=config.n_layers, knn_k=MGCN_KNN_K, cl_weight=config.cl_weight,
                reg_weight=config.reg_weight, batch_size=config.batch_size, placement=config.placement,
                trainable_features=config.fine_tune_features, item_graphs=graphs, name="mgcn")


def _freedom(dataset, config: RunConfig) -> Backbone:
    users, items = dataset.train_pairs()
    graphs = {m: cached_knn_graph(np.asarray(f, np.float32), FREEDOM_KNN_K, dataset.cache_dir, m, weighted=False)
              for m, f in dataset.features.items()}
    return FREEDOM(dataset.n_users, dataset.n_items, users, items, dataset.features,
                   embedding_dim=config.embedding_dim, n_ui_layers=config.n_layers, knn_k=FREEDOM_KNN_K,
                   edge_dropout=config.edge_dropout, reg_weight=config.reg_weight,
                   trainable_features=config.fine_tune_features, seed=config.seed, item_graphs=graphs,
                   name="freedom")


def _mmgcn(dataset, config: RunConfig) -> Backbone:
    users, items = dataset.train_pairs()
    return MMGCN(dataset.n_users, dataset.n_items, users, items, dataset.features,
                 embedding_dim=config.embedding_dim, n_layers=config.n_layers, reg_weight=config.reg_weight,
                 name="mmgcn")


def _dualgnn(dataset, config: RunConfig) -> Backbone:
    users, items = dataset.train_pairs()
    return DualGNN(dataset.n_users, dataset.n_items, users, items, dataset.features,
                   embedding_dim=config.embedding_dim, n_layers=config.n_layers, reg_weight=config.reg_weight,
                   seed=config.seed, name="dualgnn")


def _soil(dataset, config: RunConfig) -> Backbone:
    users, items = dataset.train_pairs()
    graphs = cached_soil_graphs(dataset.features, users, items, dataset.n_users, dataset.n_items, SOIL_KNN_K,
                                config.interest_k, config.second_order_k, dataset.cache_dir)
    return SOIL(dataset.n_users, dataset.n_items, users, items, dataset.features, embedding_dim=config.embedding_dim,
                n_ui_layers=config.n_layers, knn_k=SOIL_KNN_K, interest_k=config.interest_k,
                second_order_k=config.second_order_k, cl_weight=config.cl_weight,
                user_item_cl_weight=config.user_item_cl_weight, reg_weight=config.reg_weight,
                batch_size=config.batch_size, placement=config.placement,
                trainable_features=config.fine_tune_features, graphs=graphs, name="soil")


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "dualgnn": _dualgnn, "freedom": _freedom, "lightgcn": _lightgcn, "mgcn": _mgcn, "mmgcn": _mmgcn, "soil": _soil,
    "vbpr": _vbpr,
}

#: Backbones that read no item features: their datasets may lack feature files.
ID_ONLY_BACKBONES = frozenset({"lightgcn"})


def dataset_for(config: RunConfig):
    """The `PreparedDataset` a run with `config` trains on (features only if the backbone reads them)."""
    from data_pipeline import load_dataset

    return load_dataset(
        name=None if config.data_dir else config.dataset,
        data_dir=config.data_dir,
        require_features=config.backbone not in ID_ONLY_BACKBONES,
    )


def build_backbone(dataset, config: RunConfig) -> Backbone:
    """The backbone named by `config.backbone`, sized for `dataset`."""
    try:
        factory = BACKBONES[config.backbone]
    except KeyError:
        raise ValueError(f"Unknown backbone '{config.backbone}'; choose one of {sorted(BACKBONES)}.") from None
    return factory(dataset, config)


def build_recommender(dataset, config: RunConfig) -> Recommender:
    """The backbone named by `config`, wrapped by MRdIB with its settings unless `config.mrdib` is off."""
    backbone = build_backbone(dataset, config)
    regularizer = None
    if config.mrdib:
        if len(backbone.modalities) < 2:
            raise ValueError(
                f"MRdIB needs two or more modalities; backbone '{config.backbone}' on {config.dataset_name} has "
                f"{len(backbone.modalities)}. Train it bare (`mrdib=False`), or choose a multimodal backbone."
            )
        regularizer = MRdIBRegularizer(
            backbone.modalities, n_users=backbone.n_users, alpha_kl=config.alpha_kl, alpha_mi=config.alpha_mi,
            alpha_unique=config.alpha_unique, codes_on_main_path=config.codes_on_main_path,
            initial_sigma=config.initial_sigma, prior_scale=config.prior_scale, encoder=config.encoder,
            bottleneck=config.bottleneck, dropout_rate=config.dropout_rate, target_rate=config.target_rate,
            rate_step=config.rate_step,
            fusion_head=config.fusion_head, critic_rows=config.critic_rows, critic_learning_rate=config.critic_lr,
            seed=config.seed, name="mrdib",
        )
    return Recommender(backbone, regularizer, name="recommender")
