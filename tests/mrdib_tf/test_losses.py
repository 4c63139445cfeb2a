import numpy as np
import tensorflow as tf

from mrdib_tf.losses import bpr_loss, embedding_norm_loss


def test_bpr_loss_matches_the_definition():
    pos = np.array([2.0, -1.0, 0.5, 30.0], dtype=np.float32)
    neg = np.array([1.0, 1.0, 0.5, -30.0], dtype=np.float32)
    expected = np.mean(-np.log(1.0 / (1.0 + np.exp(-(pos.astype(np.float64) - neg)))))
    np.testing.assert_allclose(float(bpr_loss(tf.constant(pos), tf.constant(neg))), expected, rtol=1e-6)


def test_bpr_loss_stays_finite_for_huge_margins():
    value = float(bpr_loss(tf.constant([-200.0]), tf.constant([200.0])))
    np.testing.assert_allclose(value, 400.0, rtol=1e-6)


def test_embedding_norm_loss_is_sum_of_frobenius_norms_over_batch_size():
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    b = np.ones((3, 4), dtype=np.float32)
    expected = (np.sqrt((a**2).sum()) + np.sqrt((b**2).sum())) / 3
    np.testing.assert_allclose(float(embedding_norm_loss(tf.constant(a), tf.constant(b))), expected, rtol=1e-6)
