import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from data_pipeline.interactions import UserItems
from data_pipeline.sampling import candidate_items, derive_seed, positive_keys, sample_negatives


def sample(train: UserItems, users, seed=(1, 2)):
    keys = tf.constant(positive_keys(train))
    return sample_negatives(
        tf.constant(users, tf.int64), keys, train.n_items, tf.constant(seed, tf.int64)
    ).numpy()


def test_derive_seed_is_a_deterministic_function_of_its_inputs():
    assert derive_seed(3, 1).dtype == np.int64 and derive_seed(3, 1).shape == (2,)
    np.testing.assert_array_equal(derive_seed(3, 1), derive_seed(3, 1))
    assert not np.array_equal(derive_seed(3, 1), derive_seed(3, 2))
    assert not np.array_equal(derive_seed(3, 1), derive_seed(1, 3))


def test_positive_keys_are_sorted_user_item_codes():
    train = UserItems.from_pairs([1, 0, 1], [0, 2, 1], n_users=2, n_items=3)
    np.testing.assert_array_equal(positive_keys(train), [2, 3, 4])


def test_never_returns_a_train_positive_when_collisions_dominate():
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    # Each user has 25 to 29 of the 30 items: most uniform draws collide.
    pairs = [(u, i) for u in range(n_users) for i in rng.choice(n_items, rng.integers(25, 30), replace=False)]
    train = UserItems.from_pairs(*np.array(pairs).T, n_users, n_items)
    users = np.repeat(np.arange(n_users), 50)
    negatives = sample(train, users)
    positives = set(pairs)
    assert not any((u, i) in positives for u, i in zip(users.tolist(), negatives.tolist(), strict=True))
    assert negatives.min() >= 0 and negatives.max() < n_items


def test_uniform_over_the_allowed_items():
    # User 0 may get items {1, 4, 6}; user 1 anything but item 2.
    train = UserItems.from_pairs([0] * 5 + [1], [0, 2, 3, 5, 7, 2], n_users=2, n_items=8)
    draws = sample(train, np.array([0] * 6000 + [1] * 7000))
    for user, allowed, n in ((0, [1, 4, 6], 6000), (1, [0, 1, 3, 4, 5, 6, 7], 7000)):
        mine = draws[:6000] if user == 0 else draws[6000:]
        counts = np.bincount(mine, minlength=8)
        assert counts[np.setdiff1d(np.arange(8), allowed)].sum() == 0
        assert stats.chisquare(counts[allowed]).pvalue > 1e-3
        assert counts[allowed].sum() == n


def test_uniform_over_the_allowed_candidates_only():
    # Items 0..5 occur in train; 6 and 7 do not. User 0 may get {1, 4} of the pool, user 1 {0, 1, 3, 4, 5}.
    train = UserItems.from_pairs([0] * 4 + [1], [0, 2, 3, 5, 2], n_users=2, n_items=8)
    pool = candidate_items(UserItems.from_pairs([2] * 6, range(6), n_users=3, n_items=8), "train")
    np.testing.assert_array_equal(pool, np.arange(6))
    draws = sample_negatives(
        tf.constant([0] * 4000 + [1] * 5000, tf.int64), tf.constant(positive_keys(train)), 8,
        tf.constant((3, 4), tf.int64), tf.constant(pool),
    ).numpy()
    for mine, allowed in ((draws[:4000], [1, 4]), (draws[4000:], [0, 1, 3, 4, 5])):
        counts = np.bincount(mine, minlength=8)
        assert counts[np.setdiff1d(np.arange(8), allowed)].sum() == 0
        assert stats.chisquare(counts[allowed]).pvalue > 1e-3


def test_candidate_items_of_each_pool():
    train = UserItems.from_pairs([0, 1, 1], [4, 4, 1], n_users=2, n_items=6)
    assert candidate_items(train, "all") is None
    np.testing.assert_array_equal(candidate_items(train, "train"), [1, 4])
    with pytest.raises(ValueError, match="negative_pool must be one of"):
        candidate_items(train, "test")


def test_same_seed_same_draws_other_seed_other_draws():
    train = UserItems.from_pairs([0, 1], [0, 1], n_users=2, n_items=50)
    users = np.tile([0, 1], 100)
    np.testing.assert_array_equal(sample(train, users, (5, 6)), sample(train, users, (5, 6)))
    assert not np.array_equal(sample(train, users, (5, 6)), sample(train, users, (5, 7)))


@pytest.mark.parametrize("jit", [False, True])
def test_compiles_inside_a_tf_function(jit):
    train = UserItems.from_pairs([0, 0], [0, 1], n_users=1, n_items=3)
    keys = tf.constant(positive_keys(train))
    fn = tf.function(lambda u, s: sample_negatives(u, keys, 3, s), jit_compile=jit)
    out = fn(tf.zeros([64], tf.int64), tf.constant([0, 1], tf.int64)).numpy()
    assert set(out.tolist()) == {2}
