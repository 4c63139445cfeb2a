"""MMGCN (Wei et al., ACM MM 2019): one graph convolution network per modality over the user-item graph."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.base import Backbone, Encode, batch_vectors, check_item_features
from mrdib_tf.backbones.graph import propagate
from mrdib_tf.backbones.torch_defaults import LEAKY_SLOPE, NORMALIZE_EPSILON, torch_linear, xavier_normal
from mrdib_tf.losses import pairwise_bpr

#: The width of the latent MLP MMRec gives its vision GCN (`dim_latent=256`).
IMAGE_LATENT_DIM = 256


def mmrec_latent_dims(modalities: tuple[str, ...]) -> dict[str, int | None]:
    """The latent MLP width of each modality as MMRec sets it: 256 for "image", none for the others.

    MMRec knows two modalities by role, not by width: its vision GCN gets the MLP and its text GCN reads
    the raw features. Its tiktok run reads the audio features as its text, so "audio" must be MMRec's
    text GCN, and a width threshold could not tell tiktok's image and audio apart (both are 128-d).
    """
    return {m: IMAGE_LATENT_DIM if m == "image" else None for m in modalities}


class MMGCN(Backbone):
    """MMGCN for any number of modalities, as MMRec runs it (enoche/MMRec `src/models/mmgcn.py`).

    Per modality m, over the user-item graph (each training pair once, as an edge both ways; no self
    loops, no normalization): x^0 = row-wise L2-normalize([P_m ; W_m f + b_m]), P_m a per-user preference
    table and W_m a latent MLP (only for modalities with a latent width; the others read the raw
    features f). Then, per layer l (lrelu: leaky ReLU of slope 0.01, e: the shared id embedding of every
    user and item node):
        h = lrelu(mean_{j in N(i)} x^{l-1}_j C_l)          (PyG's 'mean' aggregation; 0 without neighbours)
        x_hat = lrelu(x^{l-1} L_l + c_l) + e
        x^l = lrelu([h ; x_hat] G_l + g_l)                 (`concatenate`; else lrelu(h G_l + g_l + x_hat))
    The final representation is the mean over modalities of x^L, users and items alike; scores are dot
    products of its user and item rows. Loss: BPR, plus `reg_weight` x (mean(e_user^2 + e_item^2) over
    the batch's (user, item) pairs, + mean(P_m^2) over the whole table of each latent modality).

    What MMRec's code does, reproduced here (line numbers of `src/models/mmgcn.py` at e775373):
    - `self.concate = 'False'` (l. 33) is a non-empty string, hence truthy: every `g_layer` is built and
      applied on the concatenation [h ; x_hat] (l. 134, 154, 161, 173). `concatenate` defaults to True.
    - `n_layers` (MMRec's config: 2) is passed to the GCN and never read: `GCN.forward` always runs its
      three hard-coded layers (l. 170-186). `n_layers` defaults to 3, what MMRec runs; layers after the
      second are built like MMRec's third.
    - `id_embedding` (l. 55) and each `preference` (l. 126, 139) are plain tensors made by `.to(device)`,
      not `nn.Parameter`s, so they are not in `model.parameters()`, which is all the optimizer gets
      (`common/trainer.py`): they stay the random tables they start as, and the regularizer on them is
      a constant with no gradient. Here they are non-trainable weights (saved with the model, unlike
      `_frozen` tables, since they cannot be rebuilt from the dataset); `trainable_tables` trains them.
    - Only the vision GCN's preference table is regularized (l. 94-95): here, those of the modalities
      with a latent MLP, which is the vision GCN's role (`mmrec_latent_dims`).
    - The regularizer's means (l. 93) are over [2b, d] entries whose user rows repeat each batch user
      twice: mean(e_u^2) + (mean(e_pos^2) + mean(e_neg^2)) / 2 over the batch's rows.
    - Initialization: Xavier-normal for the id embedding, the preferences, every convolution C_l and the
      weights of the first gate G_1 and of every L_l; the gates G_l, l >= 2 (l. 154, 161) and the MLP
      (l. 129) keep PyTorch's default `nn.Linear` init, and so does every bias.
    - BaseModel (l. 191-213) has no bias and ignores its `normalize` flag; it adds no self loops.
    - The MLP has no activation (l. 165), and the L2 normalization covers the preference rows too (l. 168).
    - `dataset.inter_matrix(form='coo').astype(np.float32)` (l. 39) sums duplicate pairs (scipy's
      `astype` on a float64 COO does), so each pair is one edge each way, as here.
    - The BPR loss is -mean(log sigmoid(pos - neg)) (l. 92), computed here as the same value's softplus.
    - MMRec scores with `self.result`, the representation of the last training forward pass, taken before
      that batch's optimizer step (l. 76, 100); here `embeddings` computes it from the current weights.

    Where MRdIB plugs in: h_m is the item rows of modality m's GCN input, W_m f + b_m (or the raw features
    f), before the normalization: the point where the modality's features are projected, before anything
    collaborative enters. Every GCN output carries the same id embedding e, added at every layer, so a
    redundancy penalty there would fight the shared id signal rather than overlap between modalities.
    `embeddings` runs the GCNs from whatever replaces h_m, so the codes reach users and items through the
    graph. Every item's row is needed (the graph mixes items), so `items` is ignored, as in MGCN.

    Args:
        n_users, n_items: catalogue sizes.
        train_users, train_items: the training pairs (the user-item graph); duplicates count once.
        features: `{modality: [n_items, dim]}`, one or more modalities, kept as they are.
        embedding_dim: d of the id embedding and of every layer's output (MMRec: 64).
        n_layers: GCN layers, >= 1 (MMRec runs 3 whatever its config says; see above).
        reg_weight: weight of the regularizer (MMRec grid 0, 1e-5 ... 0.1).
        latent_dims: each modality's latent MLP width, or None for none; None: `mmrec_latent_dims`.
        concatenate: the gates read [h ; x_hat] (what MMRec runs) or add x_hat after them.
        trainable_tables: train the id embedding and the preference tables (MMRec does not).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train_users: np.ndarray,
        train_items: np.ndarray,
        features: Mapping[str, np.ndarray],
        embedding_dim: int = 64,
        n_layers: int = 3,
        reg_weight: float = 1e-4,
        latent_dims: Mapping[str, int | None] | None = None,
        concatenate: bool = True,
        trainable_tables: bool = False,
        **kwargs,
    ):
        super().__init__(n_users, n_items, reg_weight, **kwargs)
        check_item_features(features, n_items, "MMGCN")
        if n_layers < 1:
            raise ValueError(f"MMGCN needs n_layers >= 1, got {n_layers}.")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}.")
        self.modalities = tuple(sorted(features))
        latent_dims = mmrec_latent_dims(self.modalities) if latent_dims is None else dict(latent_dims)
        unknown = sorted(set(latent_dims) - set(self.modalities))
        bad = {m: w for m, w in latent_dims.items() if w is not None and (not isinstance(w, int) or w < 1)}
        if unknown or bad:
            raise ValueError(f"latent_dims must map modalities of {self.modalities} to a positive int or None; "
                             f"unknown {unknown}, bad widths {bad}.")
        self.latent_dims = {m: latent_dims.get(m) for m in self.modalities}
        self.embedding_dim = embedding_dim
        self.n_layers = n_layers
        self.concatenate = concatenate
        self.trainable_tables = trainable_tables
        self.edges = self._mean_edges(np.asarray(train_users), np.asarray(train_items))

        self.features = {m: self._frozen(f"{m}_features", features[m]) for m in self.modalities}
        self.id_embedding = self.add_weight(name="id_embedding", shape=(n_users + n_items, embedding_dim),
                                            initializer=xavier_normal(), trainable=trainable_tables)
        # Built whole, then assigned: Keras tracks the layers of a nested list only when it is assigned.
        preferences, mlps, convs, linears, gates = {}, {}, {}, {}, {}
        for m in self.modalities:
            latent = self.latent_dims[m]
            width = features[m].shape[1] if latent is None else latent
            preferences[m] = self.add_weight(name=f"{m}_preference", shape=(n_users, width),
                                             initializer=xavier_normal(), trainable=trainable_tables)
            if latent is not None:
                mlps[m] = torch_linear(f"{m}_mlp", features[m].shape[1], latent)
            convs[m], linears[m], gates[m] = [], [], []
            for layer in range(1, n_layers + 1):
                convs[m].append(self.add_weight(name=f"{m}_conv{layer}", shape=(width, width),
                                                initializer=xavier_normal()))
                linears[m].append(torch_linear(f"{m}_linear{layer}", width, embedding_dim, xavier_kernel=True))
                gate_input = width + embedding_dim if concatenate else width
                gates[m].append(torch_linear(f"{m}_gate{layer}", gate_input, embedding_dim,
                                                   xavier_kernel=layer == 1))
                width = embedding_dim
        self.preferences, self.mlps, self.convs, self.linears, self.gates = preferences, mlps, convs, linears, gates

    def _mean_edges(self, users: np.ndarray, items: np.ndarray) -> tuple:
        """The user-item graph as `propagate`'s tables, each edge weighing 1 / (its receiver's degree):
        propagation is then PyG's 'mean' aggregation over every node's neighbours."""
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(f"train_users and train_items must be 1-d of one length, got {users.shape} "
                             f"and {items.shape}.")
        if users.size and (users.min() < 0 or users.max() >= self.n_users or items.min() < 0
                           or items.max() >= self.n_items):
            raise ValueError(f"Training pairs must have users in [0, {self.n_users}) and items in "
                             f"[0, {self.n_items}).")
        pairs = np.unique(np.stack([users, items], axis=1).astype(np.int64), axis=0)
        user_nodes, item_nodes = pairs[:, 0], pairs[:, 1] + self.n_users
        rows = np.concatenate([user_nodes, item_nodes])
        cols = np.concatenate([item_nodes, user_nodes])
        n_nodes = self.n_users + self.n_items
        weights = 1.0 / np.bincount(rows, minlength=n_nodes)[rows]
        return (self._frozen("edge_rows", rows, "int32"), self._frozen("edge_cols", cols, "int32"),
                self._frozen("edge_weights", weights), n_nodes)

    def modality_representations(self, items: tf.Tensor | None = None, training: bool = False) -> dict[str, tf.Tensor]:
        """Each modality's GCN input item rows before the normalization: W_m f + b_m, or f itself."""
        return {m: self.mlps[m](self.features[m]) if m in self.mlps else tf.convert_to_tensor(self.features[m])
                for m in self.modalities}

    def _modality_output(self, modality: str, item_inputs: tf.Tensor) -> tf.Tensor:
        """Modality `modality`'s GCN over users + items, [n_users + n_items, d], from its item inputs."""
        x = tf.concat([tf.convert_to_tensor(self.preferences[modality]), item_inputs], axis=0)
        x = tf.math.l2_normalize(x, axis=1, epsilon=NORMALIZE_EPSILON)
        ids = tf.convert_to_tensor(self.id_embedding)
        for conv, linear, gate in zip(self.convs[modality], self.linears[modality], self.gates[modality]):
            h = tf.nn.leaky_relu(propagate(tf.matmul(x, conv), *self.edges), LEAKY_SLOPE)
            x_hat = tf.nn.leaky_relu(linear(x), LEAKY_SLOPE) + ids
            x = tf.nn.leaky_relu(gate(tf.concat([h, x_hat], axis=1)) if self.concatenate else gate(h) + x_hat,
                                 LEAKY_SLOPE)
        return x

    def _final(self, representations: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The mean over modalities of the GCN outputs, [n_users + n_items, d]."""
        outputs = [self._modality_output(m, representations[m]) for m in self.modalities]
        return tf.add_n(outputs) / float(len(self.modalities))

    def embeddings(
        self, representations: Mapping[str, tf.Tensor], items: tf.Tensor | None = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        final = self._final(representations)
        return final[: self.n_users], final[self.n_users :]

    def training_losses(
        self, batch: Mapping[str, tf.Tensor], encode: Encode | None = None, training: bool = True
    ) -> dict[str, tf.Tensor]:
        """BPR on the final representation and MMRec's squared-entry regularizer of the id embedding's batch
        rows and of the latent modalities' preference tables."""
        representations = self.modality_representations(training=training)
        if encode is not None:
            representations = encode(representations, batch["pos_item"], batch["neg_item"])
        final = self._final(representations)
        users, positives, negatives = batch_vectors(final[: self.n_users], final[self.n_users :], batch)
        id_users, id_positives, id_negatives = batch_vectors(
            self.id_embedding[: self.n_users], self.id_embedding[self.n_users :], batch)
        penalty = tf.reduce_mean(tf.square(id_users)) + (
            tf.reduce_mean(tf.square(id_positives)) + tf.reduce_mean(tf.square(id_negatives))) / 2.0
        for m in self.mlps:
            penalty += tf.reduce_mean(tf.square(self.preferences[m]))
        return {"ranking": pairwise_bpr(users, positives, negatives), "l2": self.reg_weight * penalty}
