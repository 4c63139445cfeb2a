"""Ranking and regularization losses shared by every backbone and by MRdIB's auxiliary heads."""

from __future__ import annotations

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla


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


def pairwise_bpr(users: tf.Tensor, positives: tf.Tensor, negatives: tf.Tensor) -> tf.Tensor:
    """BPR of dot-product scores: each user against its positive and its negative item vector, row by row."""
    return bpr_loss(tf.reduce_sum(users * positives, axis=-1), tf.reduce_sum(users * negatives, axis=-1))


def embedding_norm_loss(*embeddings: tf.Tensor) -> tf.Tensor:
    """MMRec's embedding regularizer: the sum of the tensors' Frobenius norms divided by the batch size.

    Note the norms are not squared: this is what MMRec's `reg_weight` values are calibrated for.
    """
    total = tf.add_n([tf.norm(embedding) for embedding in embeddings])
    return total / tf.cast(tf.shape(embeddings[-1])[0], total.dtype)


def half_squared_norm_loss(*embeddings: tf.Tensor, batch_size: int | None = None) -> tf.Tensor:
    """Half the sum of squared entries of the tensors, divided by `batch_size` (MGCN's regularizer in MMRec).

    MMRec's MGCN divides by the configured training batch size, not the rows at hand; None divides by
    the rows of the last tensor. Under a strategy of R replicas a configured size is the global batch's,
    so each replica divides by its 1/R share of it.
    """
    total = tf.add_n([tf.reduce_sum(tf.square(embedding)) for embedding in embeddings]) / 2.0
    if batch_size is None:
        return total / tf.cast(tf.shape(embeddings[-1])[0], total.dtype)
    return total * (tf.distribute.get_strategy().num_replicas_in_sync / batch_size)


def info_nce(anchors: tf.Tensor, positives: tf.Tensor, temperature: float) -> tf.Tensor:
    """InfoNCE between two views of the same rows, the other rows of the batch as negatives.

    With unit-normalised rows a_i, p_j: mean_i [logsumexp_j(<a_i, p_j> / t) - <a_i, p_i> / t], the
    log-sum-exp taken stably (MMRec exponentiates directly, which equals this while it does not overflow).
    """
    return unit_info_nce(tf.math.l2_normalize(anchors, axis=-1), tf.math.l2_normalize(positives, axis=-1),
                         temperature)


def unit_info_nce(anchors: tf.Tensor, positives: tf.Tensor, temperature: float) -> tf.Tensor:
    """`info_nce` of rows already of unit length, with its gradient written out.

    With S the logits' row softmax and n rows, the gradients are (S P - P) / (n t) for the anchors and
    (S^T A - A) / (n t) for the positives. Autodiff forms the second as a product that contracts S's
    rows in place, which XLA's CPU backend runs about 3x slower than a row-major product of the same
    size (10.5 against 3.2 ms for 2048 x 2048 by 2048 x 64). Here S^T is materialised row-major first,
    and on tiktok an epoch of MGCN (two InfoNCE terms a step) runs 1.14-1.16x and one of SOIL 1.10x
    faster than with autodiff's gradient (`benchmarks/info_nce.py`).
    """

    @tf.custom_gradient
    def loss(anchors: tf.Tensor, positives: tf.Tensor):
        logits = tf.matmul(anchors, positives, transpose_b=True) / temperature
        log_normalizers = tf.reduce_logsumexp(logits, axis=-1)
        matching = tf.reduce_sum(anchors * positives, axis=-1) / temperature

        def gradient(upstream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            softmax = tf.exp(logits - log_normalizers[:, None])
            scale = upstream / (tf.cast(tf.shape(anchors)[0], anchors.dtype) * temperature)
            return (scale * (tf.matmul(softmax, positives) - positives),
                    scale * (tf.matmul(_row_major_transpose(softmax), anchors) - anchors))

        return tf.reduce_mean(log_normalizers - matching), gradient

    return loss(anchors, positives)


def _row_major_transpose(matrix: tf.Tensor) -> tf.Tensor:
    """`tf.transpose(matrix)`, materialised: behind an optimization barrier XLA cannot fold the transpose
    into the product that reads it (which would bring back the slow contraction); outside XLA the
    barrier is an identity."""
    (transposed,) = xla.optimization_barrier(tf.transpose(matrix))
    return transposed
