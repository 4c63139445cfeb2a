"""Exact uniform negative sampling, vectorised in TensorFlow, and reproducible seeds."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from data_pipeline.interactions import UserItems


def derive_seed(*values: int) -> np.ndarray:
    """A stateless-RNG seed (int64 [2]) mixed from integers such as (seed, epoch, purpose)."""
    return np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint32).astype(np.int64)


#: Where negatives come from: "all" = every item of the catalogue (DESIGN.md's wording); "train" = only
#: items that occur in training, as MMRec samples (items first seen in validation or test are never
#: negatives, so a content-based model is not taught to rank them low).
NEGATIVE_POOLS = ("all", "train")


def candidate_items(train: UserItems, pool: str) -> np.ndarray | None:
    """The item ids negatives are drawn from for `pool`, or None for the whole catalogue."""
    if pool not in NEGATIVE_POOLS:
        raise ValueError(f"negative_pool must be one of {NEGATIVE_POOLS}, got {pool!r}.")
    return None if pool == "all" else np.unique(train.indices).astype(np.int64)


def positive_keys(train: UserItems) -> np.ndarray:
    """Sorted `user * n_items + item` keys of every training pair (the CSR order is already sorted)."""
    users, items = train.to_pairs()
    return users * train.n_items + items


def sample_negatives(
    users: tf.Tensor,
    keys: tf.Tensor,
    n_items: int,
    seed: tf.Tensor,
    candidates: tf.Tensor | None = None,
) -> tf.Tensor:
    """One item per user, uniform over the candidate items that user has no training pair with.

    Rejection sampling: draw uniformly over the candidates (all items by default), then redraw, in a
    `tf.while_loop`, only the draws that are positives (found by `tf.searchsorted` in `keys`) until
    none is. Conditioned on
    acceptance each draw is uniform over the allowed items; the only bias is that of
    `stateless_uniform` for int64 ranges, of order n_items / 2**64. Every user must have at least
    one allowed item, or the loop never ends.

    Args:
        users: int64 [b] user ids.
        keys: int64 [nnz] sorted `user * n_items + item` keys of the training pairs (non-empty).
        n_items: size of the item space.
        seed: int64 [2] stateless seed; iteration j draws with `stateless_fold_in(seed, j)`.
        candidates: int64 [c] item ids to draw from; None for all `n_items` items.

    Returns:
        int64 [b] sampled items.
    """
    users = tf.convert_to_tensor(users, tf.int64)
    last = tf.size(keys, out_type=tf.int64) - 1
    pool_size = n_items if candidates is None else tf.size(candidates, out_type=tf.int64)

    def draw(step: tf.Tensor) -> tf.Tensor:
        step_seed = tf.random.experimental.stateless_fold_in(seed, step)
        drawn = tf.random.stateless_uniform(
            tf.shape(users), step_seed, minval=0, maxval=pool_size, dtype=tf.int64
        )
        return drawn if candidates is None else tf.gather(candidates, drawn)

    def is_positive(items: tf.Tensor) -> tf.Tensor:
        wanted = users * n_items + items
        found = tf.gather(keys, tf.minimum(tf.searchsorted(keys, wanted, out_type=tf.int64), last))
        return tf.equal(found, wanted)

    def redraw(step: tf.Tensor, items: tf.Tensor, rejected: tf.Tensor) -> tuple[tf.Tensor, ...]:
        items = tf.where(rejected, draw(step), items)
        return step + 1, items, rejected & is_positive(items)

    first = draw(tf.constant(0, tf.int64))
    _, items, _ = tf.while_loop(
        lambda step, items, rejected: tf.reduce_any(rejected),
        redraw,
        (tf.constant(1, tf.int64), first, is_positive(first)),
    )
    return items
