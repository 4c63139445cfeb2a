"""SplitMix64 against its published outputs and a pure-Python reference; standard_normal: the distribution
(Kolmogorov-Smirnov against scipy's normal CDF, moments, the bound), reproducibility from the seed,
independence across seeds and within a draw, eager and XLA alike."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from mrdib_tf.sampling import seed_state, splitmix64, standard_normal

MASK64 = 2**64 - 1


def _splitmix64_reference(state: int, count: int) -> list[int]:
    """SplitMix64 as Steele, Lea & Flood (2014) define it, one step at a time in Python integers."""
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append(z ^ (z >> 31))
    return out


@pytest.mark.parametrize("jit", [False, True])
def test_splitmix64_gives_the_published_outputs(jit):
    """The first outputs from state 1234567, as printed by the reference implementation (splitmix64.c)."""
    fn = tf.function(splitmix64, jit_compile=True) if jit else splitmix64
    got = fn(tf.constant(1234567, tf.uint64), 5).numpy().tolist()
    assert got == [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                   16408922859458223821]


@pytest.mark.parametrize("jit", [False, True])
def test_splitmix64_from_a_seed_matches_the_reference_and_agrees_across_xla(jit):
    seed = tf.constant([-3, 2**31 - 1], tf.int32)  # negative and extreme halves: a uint32 reinterpretation
    state_fn = tf.function(seed_state, jit_compile=True) if jit else seed_state
    state = int(state_fn(seed).numpy())
    (expected_state,) = _splitmix64_reference(((2**32 - 3) << 32 | (2**31 - 1)) - 0x9E3779B97F4A7C15, 1)
    assert state == expected_state  # the seed's 64 bits, passed once through the output function
    fn = tf.function(splitmix64, jit_compile=True) if jit else splitmix64
    assert fn(tf.constant(state, tf.uint64), 1000).numpy().tolist() == _splitmix64_reference(state, 1000)


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
