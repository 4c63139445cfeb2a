"""Probes of what a trained model's item codes hold: how well one modality's codes alone rank items.

MRdIB's unique term asks each modality's code to predict the user's items on its own. To compare models
with and without that term on equal footing, `probe_recall` trains a fresh linear probe on a model's
frozen codes of one modality: a user table of its own, scored against the codes with BPR under the
run's protocol (the same data, negatives, optimizer and early stopping on validation), then evaluated
once on test. The codes never change; only the probe's users learn.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from mrdib_tf.backbones.base import Backbone, Encode, batch_vectors
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.training import fit
from mrdib_tf.losses import embedding_norm_loss, pairwise_bpr
from mrdib_tf.recommender import Recommender


class FrozenItemCodes(Backbone):
    """A backbone whose item embeddings are fixed codes and whose users are free: a linear probe.

    Args:
        n_users: number of users.
        codes: [n_items, d] item codes, held constant.
        reg_weight: MMRec's embedding-norm weight on the batch's user vectors.
    """

    def __init__(self, n_users: int, codes: np.ndarray, reg_weight: float = 0.0, **kwargs):
        super().__init__(n_users, codes.shape[0], reg_weight, **kwargs)
        self.codes = self._frozen("codes", codes)
        self.users = self.add_weight(name="users", shape=(n_users, codes.shape[1]), initializer="glorot_uniform")

    def embeddings(self, representations: Mapping[str, tf.Tensor], items: tf.Tensor | None = None,
                   training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.convert_to_tensor(self.users), tf.convert_to_tensor(self.codes)

    def training_losses(self, batch: Mapping[str, tf.Tensor], encode: Encode | None = None,
                        training: bool = True) -> dict[str, tf.Tensor]:
        users, positives, negatives = batch_vectors(*self.embeddings({}), batch)
        return {"ranking": pairwise_bpr(users, positives, negatives),
                "l2": self.reg_weight * embedding_norm_loss(users)}


def standardized(codes: np.ndarray) -> np.ndarray:
    """Each column centred and scaled to unit spread (constant columns left at 0)."""
    spread = codes.std(axis=0)
    return ((codes - codes.mean(axis=0)) / np.where(spread > 0, spread, 1.0)).astype(np.float32)


def probe_recall(dataset, codes: np.ndarray, config: RunConfig) -> dict[str, dict[str, float]]:
    """Trains a linear probe on frozen `codes` ([n_items, d], standardised first) and tests it once.

    `config` supplies the protocol (batch size, lr, negatives, patience, seed, XLA); its model settings
    are ignored. Returns `{"valid": ..., "test": ..., "best_epoch": ...}` at the best validation epoch.
    """
    probe = Recommender(FrozenItemCodes(dataset.n_users, standardized(codes), name="probe"), name="probe")
    result = fit(probe, dataset, config, run_dir=None, verbose=False)
    return {"valid": result.valid, "test": result.test, "best_epoch": result.best_epoch}
