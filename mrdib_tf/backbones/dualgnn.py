"""DualGNN (Wang et al., IEEE TMM 2021): per-modality graph convolutions fused per user, then a
user-user co-occurrence graph."""

from __future__ import annotations

import math
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.base import Backbone, Encode, batch_vectors, check_item_features, rows_of
from mrdib_tf.backbones.graph import NormalizedGraph, cooccurrence_neighbours, propagate
from mrdib_tf.backbones.torch_defaults import LEAKY_SLOPE, NORMALIZE_EPSILON, torch_linear, xavier_normal
from mrdib_tf.losses import pairwise_bpr

#: Mixed into the seed of the per-epoch user-graph draws, so they share no stream with other users of the seed.
_USER_GRAPH_STREAM = 0x4455414C  # "DUAL"


def user_graph_weights(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One epoch's weights of each user's neighbours in DualGNN's user graph, `[n_users, k]` float32.

    `counts`: `cooccurrence_neighbours`' shared-item counts (0: no neighbour). As MMRec's
    `topk_sample`: a user with k neighbours weighs them softmax(counts). A user with n < k pads its list
    to k by drawing k - n times from the list as it grows (a Polya urn), then takes the softmax over the
    padded list, so a neighbour drawn r times weighs (1 + r) exp(c) / sum_j (1 + r_j) exp(c_j). The urn's
    extra copies follow a Dirichlet-multinomial law with all parameters 1, which is how they are drawn
    here, all users at once. A user without neighbours weighs nothing.
    """
    valid = counts > 0
    k = counts.shape[1]
    found = valid.sum(axis=1)
    copies = valid.astype(np.int64)
    short = (found > 0) & (found < k)
    if short.any():
        shares = rng.standard_exponential((int(short.sum()), k)) * valid[short]
        copies[short] += rng.multinomial(k - found[short], shares / shares.sum(axis=1, keepdims=True))
    logits = np.where(valid, counts, 0).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    weights = copies * np.exp(logits)
    total = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0).astype(np.float32)


def _fused_user_weights(shape, dtype=None):
    """MMRec's `weight_u`: Xavier-normal over [n_users, modalities], then a softmax over the modalities."""
    return keras.ops.softmax(xavier_normal()(shape, dtype), axis=-1)


class DualGNN(Backbone):
    """DualGNN for any number of modalities, as MMRec runs it (enoche/MMRec `src/models/dualgnn.py`).

    - Per modality m, over the symmetric-normalized user-item graph A: x = row-wise L2-normalize
      ([P_m ; MLP_m(f_m)]), P_m a per-user preference table and MLP_m(f) = W2 lrelu(W1 f + b1) + b2
      (widths 4d, then d); the modality's output is x + A x + A^2 x + ... (`n_layers` propagations,
      summed with x).
    - Items: the sum over modalities of their output rows. Users: a learned per-user weighting of the
      modalities' user rows, u = sum_m w_um o_um (`weight_sum`), then u + sum_v a_uv u_v over the user's
      `user_neighbours` users that share the most training items with it (`cooccurrence_neighbours`),
      weighted as `user_graph_weights` says; the padding of short neighbour lists is redrawn every epoch.
    - Loss: BPR in bits (MMRec's -mean(log2 sigmoid)), plus `reg_weight` x (sum over modalities of
      mean(P_m^2) over the batch's users, + mean(w^2) over the whole weighting table).

    Where it differs from MMRec's code, and why (line numbers of `src/models/dualgnn.py` at e775373):
    - The user weighting is the paper's sum_m w_um o_um. MMRec's `representation += self.t_rep` (l. 158)
      adds in place into the tensor that is also `self.v_rep`, so it weighs (v + t) and t: the same
      family of functions (w_v (v + t) + w_t t = w_v v + (w_v + w_t) t), reparametrized.
    - MMRec's item weighting `weight_i` and its regularizer never reach a score (a dead parameter);
      left out. So are `MLP_v`, `MLP_t`, `MLP_user` and `result_embed`, which nothing reads.
    - MMRec builds edge-dropped graphs (`edge_index_dropv`, `_dropt`) and passes them to the GCNs, which
      ignore them (l. 284-294): no dropout here, as in what MMRec runs.
    - MMRec scores with the embeddings of the last training batch, taken before that batch's step;
      `embeddings` computes them from the current weights.
    - The raw features stay as they are, as in MMRec (they are not parameters there).

    Where MRdIB plugs in: h_m is MLP_m(f_m), the items' projected features before the normalization and
    before anything collaborative enters; `embeddings` runs the GCNs from whatever replaces h_m. The
    graph mixes every item, so `items` is ignored in `modality_representations`.

    Args:
        n_users, n_items: catalogue sizes.
        train_users, train_items: the training pairs (both graphs); duplicates count once.
        features: `{modality: [n_items, dim]}`, one or more modalities, kept as they are.
        embedding_dim: d of the preferences and of the MLP outputs (MMRec: 64).
        n_layers: propagations over the user-item graph (MMRec runs 2).
        user_neighbours: neighbours per user in the user-user graph (MMRec: 40).
        reg_weight: weight of the regularizer (MMRec grid 1e-5 ... 0.1).
        seed: the seed of the per-epoch user-graph draws.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_users: np.ndarray,
        train_items: np.ndarray,
        features: Mapping[str, np.ndarray],
        embedding_dim: int = 64,
        n_layers: int = 2,
        user_neighbours: int = 40,
        reg_weight: float = 1e-4,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(n_users, n_items, reg_weight, **kwargs)
        check_item_features(features, n_items, "DualGNN")
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}.")
        self.modalities = tuple(sorted(features))
        self.embedding_dim = embedding_dim
        self.n_layers = n_layers
        self.seed = seed
        self.interactions = self._graph_tables(
            "interactions", NormalizedGraph.from_interactions(train_users, train_items, n_users, n_items))

        neighbours, self.neighbour_counts = cooccurrence_neighbours(
            np.asarray(train_users), np.asarray(train_items), n_users, n_items, user_neighbours)
        self.neighbour_slots = self.neighbour_counts > 0  # fixed; only their weights change per epoch
        receivers, _ = np.nonzero(self.neighbour_slots)
        self.user_graph = (
            self._frozen("user_graph_rows", receivers, "int32"),
            self._frozen("user_graph_cols", neighbours[self.neighbour_slots], "int32"),
            self._frozen("user_graph_weights", self._epoch_weights(epoch=0)),
            n_users,
        )

        self.features = {m: self._frozen(f"{m}_features", features[m]) for m in self.modalities}
        self.preferences = {
            m: self.add_weight(name=f"{m}_preference", shape=(n_users, embedding_dim), initializer=xavier_normal())
            for m in self.modalities
        }
        self.mlps = {
            m: (torch_linear(f"{m}_mlp_hidden", features[m].shape[1], 4 * embedding_dim),
                torch_linear(f"{m}_mlp_out", 4 * embedding_dim, embedding_dim))
            for m in self.modalities
        }
        self.modality_weights = self.add_weight(
            name="modality_weights", shape=(n_users, len(self.modalities)), initializer=_fused_user_weights)

    def _epoch_weights(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _USER_GRAPH_STREAM, epoch]))
        return user_graph_weights(self.neighbour_counts, rng)[self.neighbour_slots]

    def begin_epoch(self, epoch: int) -> None:
        """Draws epoch `epoch`'s padding of the short neighbour lists into the user graph's weights."""
        self.user_graph[2].assign(self._epoch_weights(epoch))

    def modality_representations(self, items: tf.Tensor | None = None, training: bool = False) -> dict[str, tf.Tensor]:
        """Each modality's projected item features MLP_m(f_m), every item."""
        outputs = {}
        for m, (hidden, out) in self.mlps.items():
            outputs[m] = out(tf.nn.leaky_relu(hidden(self.features[m]), LEAKY_SLOPE))
        return outputs

    def _modality_output(self, modality: str, item_inputs: tf.Tensor) -> tf.Tensor:
        """x + A x + ... + A^L x over users + items, x the normalized [P_m ; h_m]."""
        x = tf.concat([tf.convert_to_tensor(self.preferences[modality]), item_inputs], axis=0)
        layer = total = tf.math.l2_normalize(x, axis=1, epsilon=NORMALIZE_EPSILON)
        for _ in range(self.n_layers):
            layer = propagate(layer, *self.interactions)
            total += layer
        return total

    def _final(self, representations: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """Final (users [n_users, d], items [n_items, d])."""
        outputs = [self._modality_output(m, representations[m]) for m in self.modalities]
        items = tf.add_n([output[self.n_users :] for output in outputs])
        by_modality = tf.stack([output[: self.n_users] for output in outputs], axis=-1)
        users = tf.einsum("udm,um->ud", by_modality, self.modality_weights)
        return users + propagate(users, *self.user_graph), items

    def embeddings(
        self, representations: Mapping[str, tf.Tensor], items: tf.Tensor | None = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        users, all_items = self._final(representations)
        return users, rows_of(all_items, items)

    def training_losses(
        self, batch: Mapping[str, tf.Tensor], encode: Encode | None = None, training: bool = True
    ) -> dict[str, tf.Tensor]:
        """BPR in bits, and the squared-entry regularizer of the batch's preference rows and the weighting."""
        representations = self.modality_representations(training=training)
        if encode is not None:
            representations = encode(representations, batch["pos_item"], batch["neg_item"])
        users, positives, negatives = batch_vectors(*self._final(representations), batch)
        penalty = tf.reduce_mean(tf.square(self.modality_weights)) + tf.add_n([
            tf.reduce_mean(tf.square(tf.gather(self.preferences[m], batch["user"]))) for m in self.modalities
        ])
        return {"ranking": pairwise_bpr(users, positives, negatives) / math.log(2.0),
                "l2": self.reg_weight * penalty}
