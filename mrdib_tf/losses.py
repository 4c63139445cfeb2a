"""Ranking and regularization losses shared by every backbone and by MRdIB's auxiliary heads."""

from __future__ import annotations

import tensorflow as tf


def bpr_loss(positive_scores: tf.Tensor, negative_scores: tf.Tensor) -> tf.Tensor:
    """Bayesian Personalized Ranking loss, mean over the batch.

    Computes `mean(-log sigmoid(pos - neg))` as `softplus(neg - pos)`, which is the same value without
    the overflow of `log(sigmoid(x))` for large negative margins.

    Args:
        positive_scores: `[batch]` scores of the observed (user, item) pairs.
        negative_scores: `[batch]` scores of the sampled negatives, aligned with `positive_scores`.

    Example:
        >>> float(bpr_loss(tf.constant([0.0]), tf.constant([0.0])))  # log(2)
        0.6931...
    """
    return tf.reduce_mean(tf.math.softplus(negative_scores - positive_scores))


def embedding_norm_loss(*embeddings: tf.Tensor) -> tf.Tensor:
    """MMRec's embedding regularizer: the sum of the tensors' Frobenius norms divided by the batch size.

    Note the norms are not squared: this is what MMRec's `reg_weight` values are calibrated for.
    """
    total = tf.add_n([tf.norm(embedding) for embedding in embeddings])
    return total / tf.cast(tf.shape(embeddings[-1])[0], total.dtype)
