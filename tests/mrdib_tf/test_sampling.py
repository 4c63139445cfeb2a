"""standard_normal: the distribution (Kolmogorov-Smirnov against scipy's normal CDF, moments, the bound),
reproducibility from the seed, independence across seeds and within a draw, eager and XLA alike."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from mrdib_tf.sampling import standard_normal


def _draw(shape, seed, jit):
    fn = tf.function(standard_normal, jit_compile=True) if jit else standard_normal
    return fn(tf.constant(shape), tf.constant(seed, tf.int32)).numpy()


@pytest.mark.parametrize("jit", [False, True])
def test_draws_are_standard_normal(jit):
    x = _draw([401, 250], [3, 4], jit).ravel()  # an odd count: half of the last 64-bit word is unused
    assert x.dtype == np.float32 and x.size == 100_250
    assert stats.kstest(x, "norm").pvalue > 1e-3
    tolerance = 4.0 / np.sqrt(x.size)  # ~4 standard errors
    assert abs(x.mean()) < tolerance and abs(x.std() - 1.0) < tolerance
    assert abs(np.mean(x**3)) < 4 * np.sqrt(15 / x.size) and abs(np.mean(x**4) - 3.0) < 4 * np.sqrt(96 / x.size)
    assert np.abs(x).max() <= 5.5  # 24-bit uniforms: the largest |x| is sqrt(2) erfinv(1 - 2^-24) ~ 5.42


@pytest.mark.parametrize("jit", [False, True])
def test_a_seed_fixes_the_draw_and_other_seeds_are_independent(jit):
    first, again, other = (_draw([300, 64], seed, jit) for seed in ([1, 2], [1, 2], [2, 2]))
    assert first.shape == (300, 64)
    np.testing.assert_array_equal(first, again)
    tolerance = 4.0 / np.sqrt(first.size)
    assert abs(np.corrcoef(first.ravel(), other.ravel())[0, 1]) < tolerance
    # neighbours within one draw (the two halves of a 64-bit word, adjacent words) are uncorrelated too
    flat = first.ravel()
    assert abs(np.corrcoef(flat[0::2], flat[1::2])[0, 1]) < 2 * tolerance
    assert abs(np.corrcoef(flat[:-2], flat[2:])[0, 1]) < 2 * tolerance


@pytest.mark.parametrize("jit", [False, True])
def test_the_extreme_levels_map_to_finite_mirrored_quantiles(jit):
    """The largest 24-bit level once rounded to u = 1 and drew inf; both ends must be finite and mirror."""
    from mrdib_tf.sampling import normal_quantiles

    words = tf.constant([0, 0xFFFFFFFF, 0x7FFFFF00, 0x80000000, 0x12345600], tf.uint32)
    fn = tf.function(normal_quantiles, jit_compile=True) if jit else normal_quantiles
    got = fn(words).numpy()
    levels = np.array([0, 2**24 - 1, 2**23 - 1, 2**23, 0x123456], np.float64)
    np.testing.assert_allclose(got, stats.norm.ppf((levels + 0.5) / 2**24), rtol=2e-5)
    assert got[0] == -got[1] and got[2] == -got[3]
