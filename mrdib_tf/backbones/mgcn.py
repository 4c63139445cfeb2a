"""MGCN (Yu et al., ACM MM 2023): multi-view graph convolution with a behavior-guided purifier and fuser."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.base import Backbone, Encode, batch_vectors, check_item_features
from mrdib_tf.backbones.graph import NormalizedGraph, knn_item_graph, mean_over_layers, propagate
from mrdib_tf.losses import half_squared_norm_loss, info_nce, pairwise_bpr
from mrdib_tf.precision import Dense


class MGCN(Backbone):
    """MGCN for any number of modalities, with MMRec's defaults.

    - User-item view: LightGCN over the interaction graph on ID embeddings (`n_ui_layers`, layer mean):
      the "content" embeddings.
    - Item-item view, per modality m: the item IDs purified by the modality, e_i * sigmoid(G_m(W_m f_i)),
      propagated `n_item_layers` times over the frozen k-NN cosine graph of the raw features. These are
      the h_m that MRdIB's bottleneck replaces. Users get R h_m (R: the normalized user <- item block).
    - Fuser: attention over modalities gives a common part; each modality's remainder is gated by the
      user-item view; side = (sum_m gated remainders + common) / (M + 1); final = content + side.
    - Loss: BPR with MMRec's MGCN regularizer (half squared norms of the final vectors) plus
      `cl_weight` x InfoNCE (temperature 0.2) between the side and content views of the batch's positive
      items and of its users.

    As in MMRec, the raw item features are trainable (fine-tuned; `trainable_features=False` keeps them as
    they are) and the k-NN graphs are built once from their initial values.

    Where MRdIB plugs in (`placement`): "views" exposes each modality's purified, propagated item view
    as h_m (what users aggregate); "features" exposes the projected features W_m f_i, before the
    purifier and any propagation, and builds the views from whatever replaces them.

    Args:
        n_users, n_items: catalogue sizes.
        train_users, train_items: the training pairs (the user-item graph).
        features: `{modality: [n_items, dim]}`, one or more modalities.
        embedding_dim: d (MMRec: 64).
        n_ui_layers: propagation layers of the user-item view (MMRec: 2).
        n_item_layers: propagation layers of the item-item views (MMRec: 1).
        knn_k: neighbours per item in the item-item graphs (MMRec: 10).
        cl_weight: weight of the contrastive term (MMRec's `cl_loss`, grid 0.001, 0.01, 0.1).
        temperature: InfoNCE temperature (MMRec: 0.2).
        reg_weight: weight of the regularizer (MMRec: 1e-4).
        batch_size: the training batch size the regularizer is divided by, as MMRec divides it (so a
            short last batch weighs each of its rows like a full one).
        placement: "views" or "features" (see above).
        trainable_features: fine-tune the raw feature tables (MMRec) or keep them as they are.
        item_graphs: the k-NN graphs by modality, prebuilt (say, read from a cache) as
            `knn_item_graph(features[m], knn_k)` would build them; built here when None.
        user_item_graph: the bipartite graph of the user-item view, whose user <- item block users
            aggregate the item views over; from the training pairs when None (SOIL passes its
            second-order augmented one).
    """

    #: Whether each modality's remainder is gated by the user-item view (MGCN's behavior-aware fuser).
    preference_gates: bool = True

    PLACEMENTS = ("views", "features")

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_users: np.ndarray,
        train_items: np.ndarray,
        features: Mapping[str, np.ndarray],
        embedding_dim: int = 64,
        n_ui_layers: int = 2,
        n_item_layers: int = 1,
        knn_k: int = 10,
        cl_weight: float = 0.01,
        temperature: float = 0.2,
        reg_weight: float = 1e-4,
        batch_size: int = 2048,
        placement: str = "views",
        trainable_features: bool = True,
        item_graphs: Mapping[str, NormalizedGraph] | None = None,
        user_item_graph: NormalizedGraph | None = None,
        **kwargs,
    ):
        super().__init__(n_users, n_items, reg_weight, **kwargs)
        check_item_features(features, n_items, "MGCN")
        if placement not in self.PLACEMENTS:
            raise ValueError(f"MGCN placement must be one of {self.PLACEMENTS}, got {placement!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.placement = placement
        self.batch_size = batch_size
        self.loss_terms = ("ranking", "l2", "contrastive") if cl_weight > 0 else ("ranking", "l2")
        if n_ui_layers < 0 or n_item_layers < 0:
            raise ValueError(f"Layer counts must be >= 0, got {n_ui_layers} and {n_item_layers}.")
        if cl_weight < 0 or temperature <= 0:
            raise ValueError(f"cl_weight must be >= 0 and temperature > 0, got {cl_weight} and {temperature}.")
        self.modalities = tuple(sorted(features))
        self.embedding_dim = embedding_dim
        self.n_ui_layers = n_ui_layers
        self.n_item_layers = n_item_layers
        self.cl_weight = cl_weight
        self.temperature = temperature

        if user_item_graph is None:
            user_item_graph = NormalizedGraph.from_interactions(train_users, train_items, n_users, n_items)
        if user_item_graph.n_nodes != n_users + n_items:
            raise ValueError(f"user_item_graph must span {n_users} users + {n_items} items, got "
                             f"{user_item_graph.n_nodes} nodes.")
        self.interactions = self._graph_tables("interactions", user_item_graph)
        self.users_from_items = self._graph_tables("users_from_items", user_item_graph.users_from_items(n_users))
        if item_graphs is None:
            item_graphs = {m: knn_item_graph(np.asarray(features[m], np.float32), knn_k) for m in self.modalities}
        if sorted(item_graphs) != list(self.modalities) or any(g.n_nodes != n_items for g in item_graphs.values()):
            raise ValueError(f"item_graphs must hold one {n_items}-item graph per modality {self.modalities}, "
                             f"got {sorted(item_graphs)}.")
        self.item_graphs = {m: self._graph_tables(f"{m}_knn", item_graphs[m]) for m in self.modalities}

        self.user_embedding = self.add_weight(
            name="user_embedding", shape=(n_users, embedding_dim), initializer="glorot_uniform"
        )
        self.item_embedding = self.add_weight(
            name="item_embedding", shape=(n_items, embedding_dim), initializer="glorot_uniform"
        )
        table = self._trainable_table if trainable_features else self._frozen
        self.features = {m: table(f"{m}_features", features[m]) for m in self.modalities}
        self.projections = {m: self._dense(f"{m}_projection", features[m].shape[1]) for m in self.modalities}
        self.purifiers = {m: self._dense(f"{m}_purifier", embedding_dim, "sigmoid") for m in self.modalities}
        if self.preference_gates:
            self.preferences = {m: self._dense(f"{m}_preference", embedding_dim, "sigmoid") for m in self.modalities}
        self.attention_hidden = self._dense("attention_hidden", embedding_dim, "tanh")
        self.attention_score = Dense(1, use_bias=False, name="attention_score")
        self.attention_score.build((None, embedding_dim))

    def _dense(self, name: str, input_dim: int, activation: str | None = None) -> Dense:
        layer = Dense(self.embedding_dim, activation=activation, name=name)
        layer.build((None, input_dim))
        return layer

    def modality_representations(self, items: tf.Tensor | None = None, training: bool = False) -> dict[str, tf.Tensor]:
        projected = {m: self.projections[m](self.features[m]) for m in self.modalities}
        return projected if self.placement == "features" else self._item_views(projected)

    def _item_views(self, projected: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Each modality's item view: the item IDs purified by its projected features, propagated."""
        views = {}
        for m in self.modalities:
            purified = self.item_embedding * self.purifiers[m](projected[m])
            for _ in range(self.n_item_layers):
                purified = propagate(purified, *self.item_graphs[m])
            views[m] = purified
        return views

    def _views(self, representations: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """(content, side) over users + items, [n_users + n_items, d] each."""
        ids = tf.concat([self.user_embedding, self.item_embedding], axis=0)
        content = mean_over_layers(ids, self.interactions, self.n_ui_layers)
        if self.placement == "features":
            representations = self._item_views(representations)

        modal = tf.stack(
            [
                tf.concat([propagate(representations[m], *self.users_from_items), representations[m]], axis=0)
                for m in self.modalities
            ],
            axis=1,
        )  # [n_users + n_items, M, d]
        attention = tf.nn.softmax(self.attention_score(self.attention_hidden(modal)), axis=1)
        common = tf.reduce_sum(attention * modal, axis=1)
        remainders = [modal[:, k] - common for k in range(len(self.modalities))]
        if self.preference_gates:
            remainders = [self.preferences[m](content) * r for m, r in zip(self.modalities, remainders)]
        gated = tf.add_n(remainders)
        side = (gated + common) / float(len(self.modalities) + 1)
        return content, side

    def embeddings(
        self, representations: Mapping[str, tf.Tensor], items: tf.Tensor | None = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        content, side = self._views(representations)
        final = content + side
        return final[: self.n_users], final[self.n_users :]

    def training_losses(
        self, batch: Mapping[str, tf.Tensor], encode: Encode | None = None, training: bool = True
    ) -> dict[str, tf.Tensor]:
        """BPR, MMRec's regularizer on the batch's final vectors and `cl_weight` x InfoNCE between the side
        and content views of the batch's positive items and of its users."""
        representations = self.modality_representations(training=training)
        if encode is not None:
            representations = encode(representations, batch["pos_item"], batch["neg_item"])
        return self._loss_terms(batch, *self._views(representations))

    def _loss_terms(self, batch: Mapping[str, tf.Tensor], content: tf.Tensor, side: tf.Tensor) -> dict[str, tf.Tensor]:
        """The weighted terms from the batch and the two views over users + items."""
        final = content + side
        users, positives, negatives = batch_vectors(final[: self.n_users], final[self.n_users :], batch)
        terms = {
            "ranking": pairwise_bpr(users, positives, negatives),
            "l2": self.reg_weight * half_squared_norm_loss(users, positives, negatives, batch_size=self.batch_size),
        }
        if self.cl_weight > 0:
            item_rows = batch["pos_item"] + self.n_users
            terms["contrastive"] = self.cl_weight * (
                info_nce(tf.gather(side, item_rows), tf.gather(content, item_rows), self.temperature)
                + info_nce(tf.gather(side, batch["user"]), tf.gather(content, batch["user"]), self.temperature)
            )
        return terms
