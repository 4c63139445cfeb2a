import numpy as np
import pytest
import tensorflow as tf

from mrdib_tf.losses import bpr_loss, embedding_norm_loss, info_nce
from tests.mrdib_tf.backbones.test_mgcn import _info_nce as numpy_info_nce


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


@pytest.mark.parametrize("jit_compile", [False, True])
def test_info_nce_and_its_gradient_match_a_numpy_reference(jit_compile):
    """The value against MMRec's formula in numpy; the gradient, scaled as a loss weight scales it, against
    central differences of that numpy value."""
    rng = np.random.default_rng(4)
    anchors, positives = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))

    @tf.function(jit_compile=jit_compile)
    def value_and_gradients(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            loss = info_nce(a, b, 0.2)
            weighted = 3.0 * loss
        return loss, *tape.gradient(weighted, [a, b])

    loss, grad_anchors, grad_positives = value_and_gradients(tf.constant(anchors), tf.constant(positives))
    np.testing.assert_allclose(float(loss), numpy_info_nce(anchors, positives, 0.2), rtol=1e-10)
    step = 1e-6
    for got, which in ((grad_anchors, 0), (grad_positives, 1)):
        want = np.zeros((6, 3))
        for index in np.ndindex(6, 3):
            shifted = [anchors.copy(), positives.copy()], [anchors.copy(), positives.copy()]
            shifted[0][which][index] += step
            shifted[1][which][index] -= step
            want[index] = 3.0 * (numpy_info_nce(*shifted[0], 0.2) - numpy_info_nce(*shifted[1], 0.2)) / (2 * step)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
