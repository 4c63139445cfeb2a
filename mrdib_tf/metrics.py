"""Full-ranking top-K evaluation under MMRec's protocol: Recall, NDCG, Precision and MAP at each cutoff.

Every item is ranked for every evaluated user (one with at least one ground-truth item); only the
user's *training* items are masked, so validation items stay rankable when testing. Masked items get
-inf, so they can never outrank an unmasked item; ties keep `top_k`'s order (lower item id first).

- Recall@K = hits@K / |truth| (the full size, not min(|truth|, K)).
- NDCG@K: binary relevance, DCG = sum over hits of 1 / log2(rank + 1) with ranks from 1, IDCG over
  min(|truth|, K) positions.
- Precision@K = hits@K / K.
- MAP@K = sum over relevant ranks j <= K of Precision@j, divided by min(|truth|, K).

Each is averaged over the evaluated users. A cutoff K larger than the catalogue ranks the whole catalogue
and counts the positions past its end as misses, so every formula above holds as written: Recall, NDCG
and MAP at such K equal their values at K = n_items, and Precision@K is hits / K. (MMRec's top-k at
max(K) cannot rank past the catalogue; this keeps a catalogue under 50 items trainable with the usual
cutoffs 5, 10, 20, 50.)

Both front ends, `evaluate_scores` (a score matrix and
per-user lists) and `FullRankingEvaluator` (embeddings and `UserItems`), run the same batched, XLA-compiled
ranking and the same metric arithmetic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from data_pipeline.interactions import UserItems

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)
METRIC_NAMES: tuple[str, ...] = ("recall", "ndcg", "precision", "map")

_RankFn = Callable[..., tf.Tensor]
ArrayLike = tf.Tensor | tf.Variable | np.ndarray


def _mask_and_rank(scores: tf.Tensor, mask_coords: tf.Tensor, mask_values: tf.Tensor, k: int) -> tf.Tensor:
    """Sets the (row, item) pairs in `mask_coords` to -inf and returns each row's top-k item ids.

    `mask_values` holds -inf for real pairs and +inf for padding: under `min` the padding is a no-op,
    which lets every batch share one shape and so one XLA compilation.
    """
    masked = tf.tensor_scatter_nd_min(scores, mask_coords, tf.cast(mask_values, scores.dtype))
    return tf.math.top_k(masked, k=k, sorted=True).indices


def _rank_embeddings(
    user_embeddings: tf.Tensor,
    item_embeddings: tf.Tensor,
    users: tf.Tensor,
    mask_coords: tf.Tensor,
    mask_values: tf.Tensor,
    k: int,
) -> tf.Tensor:
    """Top-k items of `users` by dot-product score, training items masked."""
    scores = tf.matmul(tf.gather(user_embeddings, users), item_embeddings, transpose_b=True)
    return _mask_and_rank(scores, mask_coords, mask_values, k)


def _rank_scores(
    scores: tf.Tensor, users: tf.Tensor, mask_coords: tf.Tensor, mask_values: tf.Tensor, k: int
) -> tf.Tensor:
    """Top-k items of `users` from a precomputed [n_users, n_items] score matrix, training items masked."""
    return _mask_and_rank(tf.gather(scores, users), mask_coords, mask_values, k)


def _metric_sums(hits: np.ndarray, n_truth: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Sums over users of each metric at each cutoff.

    Args:
        hits: bool [n_users, depth], whether the item at each rank is a ground-truth item; depth is
            min(max(ks), n_items), and ranks past it are misses.
        n_truth: [n_users] ground-truth sizes, all >= 1 and <= depth whenever some K exceeds depth.
        ks: the cutoffs.

    Returns:
        float64 [len(METRIC_NAMES), len(ks)].
    """
    relevant = hits.astype(np.float64)
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    found = np.cumsum(relevant, axis=1)
    discounts = 1.0 / np.log2(ranks + 1.0)
    dcg = np.cumsum(relevant * discounts, axis=1)
    ideal_dcg = np.cumsum(discounts)
    precision_sums = np.cumsum(relevant * found / ranks, axis=1)
    sums = np.empty((len(METRIC_NAMES), len(ks)))
    for column, k in enumerate(ks):
        ideal_len = np.minimum(n_truth, k)
        last = min(k, hits.shape[1]) - 1  # the last ranked position within the cutoff
        per_user = {
            "recall": found[:, last] / n_truth,
            "ndcg": dcg[:, last] / ideal_dcg[ideal_len - 1],
            "precision": found[:, last] / k,
            "map": precision_sums[:, last] / ideal_len,
        }
        sums[:, column] = [np.sum(per_user[name]) for name in METRIC_NAMES]
    return sums


@dataclass(frozen=True)
class _Batch:
    """One batch of users with its training-item mask, padded to the shape shared by all batches.

    Attributes:
        users: int64 [n] the batch's real users.
        padded_users: int32 [rows] `users` followed by user 0 as padding (its rows are dropped).
        mask_coords: int32 [width, 2] (row in batch, item) of each training item, then (0, 0) padding.
        mask_values: float32 [width] -inf for training items, +inf for padding.
    """

    users: np.ndarray
    padded_users: tf.Tensor
    mask_coords: tf.Tensor
    mask_values: tf.Tensor


def _rows_of(csr: UserItems, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of the user in `users`, item) for every item of the given users, vectorized."""
    starts, counts = csr.indptr[users], csr.indptr[users + 1] - csr.indptr[users]
    positions = np.repeat(np.arange(users.size), counts)
    offsets = np.arange(positions.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return positions, np.asarray(csr.indices)[np.repeat(starts, counts) + offsets]


def _plan_batches(users: np.ndarray, train: UserItems, batch_users: int) -> list[_Batch]:
    """Splits `users` into balanced batches of at most `batch_users` with precomputed mask tensors."""
    chunks = np.array_split(users, -(-users.size // batch_users))
    rows = chunks[0].size
    coordinates = [_rows_of(train, chunk) for chunk in chunks]
    width = max(1, max(positions.size for positions, _ in coordinates))
    batches = []
    for chunk, (positions, items) in zip(chunks, coordinates):
        coords = np.zeros((width, 2), dtype=np.int32)
        coords[: positions.size, 0], coords[: positions.size, 1] = positions, items
        values = np.full(width, np.inf, dtype=np.float32)
        values[: positions.size] = -np.inf
        padded = np.zeros(rows, dtype=np.int32)
        padded[: chunk.size] = chunk
        batches.append(_Batch(chunk, tf.constant(padded), tf.constant(coords), tf.constant(values)))
    return batches


def _check_csr(csr: UserItems, name: str) -> None:
    """Raises ValueError unless `csr` is a well-formed CSR (monotone indptr, item ids in range)."""
    indptr, indices = np.asarray(csr.indptr), np.asarray(csr.indices)
    if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0 or indptr[-1] != indices.size:
        raise ValueError(
            f"{name}.indptr must be 1-D, start at 0 and end at len({name}.indices)={indices.size}."
        )
    if np.any(np.diff(indptr) < 0):
        user = np.argmax(np.diff(indptr) < 0)
        raise ValueError(f"{name}.indptr must be non-decreasing; it decreases at user {user}.")
    if indices.size and (indices.min() < 0 or indices.max() >= csr.n_items):
        raise ValueError(
            f"{name}.indices must lie in [0, {csr.n_items}); got [{indices.min()}, {indices.max()}]."
        )


class FullRankingEvaluator:
    """MMRec-protocol full-ranking metrics for one split, fast enough to run every epoch.

    The batches of evaluated users and their training-item masks are built once here; each `evaluate`
    then runs one XLA-compiled matmul + mask + top-k per batch and scores the hits on the host.

    Args:
        train: the training items of every user (masked when ranking).
        truth: the evaluated split's items (ground truth); users without any are not evaluated.
        ks: the cutoffs K (sorted, repeats dropped); the result holds every metric at each. A K above
            n_items is allowed: the ranking stops at the catalogue's end (see the module docstring).
        batch_users: the most users ranked at once; a batch's scores take 4 * batch_users * n_items
            bytes (300 MB at 4096 x 18k items), and a few of those are live during a batch.
        jit_compile: compile the ranking with XLA.

    Example:
        >>> train = UserItems.from_pairs([0, 1], [0, 1], n_users=2, n_items=3)
        >>> truth = UserItems.from_pairs([0], [2], n_users=2, n_items=3)
        >>> evaluator = FullRankingEvaluator(train, truth, ks=(1,))
        >>> evaluator.evaluate(np.eye(3)[[2, 0]], np.eye(3))["recall@1"]  # user 0 ranks item 2 first
        1.0
    """

    def __init__(
        self,
        train: UserItems,
        truth: UserItems,
        ks: Sequence[int] = DEFAULT_KS,
        batch_users: int = 4096,
        *,
        jit_compile: bool = True,
    ):
        _check_csr(train, "train")
        _check_csr(truth, "truth")
        if (train.indptr.size, train.n_items) != (truth.indptr.size, truth.n_items):
            raise ValueError(
                f"train and truth must cover the same users and items; got {train.indptr.size - 1} x "
                f"{train.n_items} and {truth.indptr.size - 1} x {truth.n_items}."
            )
        self.n_users, self.n_items = int(train.indptr.size - 1), int(train.n_items)
        self.ks = tuple(sorted({int(k) for k in ks}))
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"ks must be non-empty cutoffs >= 1; got {tuple(ks)}.")
        self.depth = min(self.ks[-1], self.n_items)  # how many items each ranking lists
        if batch_users < 1:
            raise ValueError(f"batch_users must be >= 1; got {batch_users}.")
        self.train, self.batch_users = train, int(batch_users)
        self._truth_sizes = np.diff(truth.indptr)
        evaluated = np.flatnonzero(self._truth_sizes > 0)
        if evaluated.size == 0:
            raise ValueError("truth has no user with an item, so there is nobody to evaluate.")
        owners = np.repeat(np.arange(self.n_users, dtype=np.int64), self._truth_sizes)
        self._truth_keys = owners * self.n_items + np.asarray(truth.indices, dtype=np.int64)
        if np.any(np.diff(self._truth_keys) <= 0):
            user = owners[1:][np.diff(self._truth_keys) <= 0][0]
            raise ValueError(
                f"truth.indices must be sorted and unique within each user; user {user} is not."
            )
        self.n_evaluated = int(evaluated.size)
        self._batches = _plan_batches(evaluated, train, self.batch_users)
        self._rank_embeddings = tf.function(_rank_embeddings, jit_compile=jit_compile)
        self._rank_scores = tf.function(_rank_scores, jit_compile=jit_compile)

    def evaluate(self, user_embeddings: ArrayLike, item_embeddings: ArrayLike) -> dict[str, float]:
        """Metrics of the dot-product scores `user_embeddings @ item_embeddings^T`.

        Args:
            user_embeddings: [n_users, d] (all users, in id order).
            item_embeddings: [n_items, d].

        Returns:
            {"recall@5": ..., "recall@10": ..., "ndcg@5": ..., ...}: every metric at every K, as floats.
        """
        users, items = self._embeddings(user_embeddings, item_embeddings)
        return self._evaluate(self._rank_embeddings, users, items)

    def top_k(self, user_embeddings: ArrayLike, item_embeddings: ArrayLike, k: int) -> np.ndarray:
        """The k best items of every user (training items masked), best first: int64 [n_users, k]."""
        if not 1 <= k <= self.n_items:
            raise ValueError(f"k must lie in [1, n_items={self.n_items}]; got {k}.")
        users, items = self._embeddings(user_embeddings, item_embeddings)
        ranked = [
            self._run(self._rank_embeddings, batch, k, users, items) for batch in self._all_user_batches
        ]
        return np.concatenate(ranked).astype(np.int64)

    @functools.cached_property
    def _all_user_batches(self) -> list[_Batch]:
        """Batches over every user, built on the first `top_k` call (evaluation never needs them)."""
        return _plan_batches(np.arange(self.n_users, dtype=np.int64), self.train, self.batch_users)

    def _embeddings(self, user_embeddings: ArrayLike, item_embeddings: ArrayLike) -> tuple[tf.Tensor, ...]:
        """Both embedding tables as float32 tensors, after checking they match this split's shape."""
        users = tf.cast(tf.convert_to_tensor(user_embeddings), tf.float32)
        items = tf.cast(tf.convert_to_tensor(item_embeddings), tf.float32)
        if users.shape.rank != 2 or items.shape.rank != 2 or users.shape[1] != items.shape[1]:
            raise ValueError(
                f"embeddings must be [n_users, d] and [n_items, d]; got {users.shape} and {items.shape}."
            )
        if (users.shape[0], items.shape[0]) != (self.n_users, self.n_items):
            raise ValueError(
                f"expected {self.n_users} user and {self.n_items} item embeddings; "
                f"got {users.shape[0]} and {items.shape[0]}."
            )
        return users, items

    @staticmethod
    def _run(rank: _RankFn, batch: _Batch, k: int, *inputs: tf.Tensor) -> np.ndarray:
        """The top-k item ids of the batch's real users."""
        ranked = rank(*inputs, batch.padded_users, batch.mask_coords, batch.mask_values, k)
        return ranked.numpy()[: batch.users.size]

    def _evaluate(self, rank: _RankFn, *inputs: tf.Tensor) -> dict[str, float]:
        """Ranks every batch of evaluated users with `rank` and averages the metrics over them."""
        sums = np.zeros((len(METRIC_NAMES), len(self.ks)))
        for batch in self._batches:
            ranked = self._run(rank, batch, self.depth, *inputs)
            sums += _metric_sums(self._hits(batch.users, ranked), self._truth_sizes[batch.users], self.ks)
        means = sums / self.n_evaluated
        return {
            f"{name}@{k}": float(means[row, column])
            for row, name in enumerate(METRIC_NAMES)
            for column, k in enumerate(self.ks)
        }

    def _hits(self, users: np.ndarray, ranked: np.ndarray) -> np.ndarray:
        """bool [len(users), k]: whether each ranked item is in its user's ground truth."""
        keys = users[:, None] * self.n_items + ranked.astype(np.int64)
        found = np.minimum(np.searchsorted(self._truth_keys, keys), self._truth_keys.size - 1)
        return self._truth_keys[found] == keys


def _user_items_from_lists(
    lists: Sequence[Sequence[int]], n_users: int, n_items: int, name: str
) -> UserItems:
    """`UserItems` from one sequence of item ids per user, with errors that name the argument."""
    if len(lists) != n_users:
        raise ValueError(f"{name} has {len(lists)} users but scores has {n_users} rows.")
    items = [np.asarray(row, dtype=np.int64).reshape(-1) for row in lists]
    users = np.repeat(np.arange(n_users, dtype=np.int64), [row.size for row in items])
    try:
        return UserItems.from_pairs(users, np.concatenate(items) if items else users, n_users, n_items)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from error


def evaluate_scores(
    scores: ArrayLike,
    train_items: Sequence[Sequence[int]],
    truth_items: Sequence[Sequence[int]],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """MMRec-protocol metrics of a full score matrix; a pure function over plain lists.

    Args:
        scores: [n_users, n_items], higher is better. Non-float scores are ranked as float64.
        train_items: per user, the item ids to mask (never ranked above an unmasked item).
        truth_items: per user, the ground-truth item ids; users with none are skipped.
        ks: the cutoffs K.

    Returns:
        The same dictionary as `FullRankingEvaluator.evaluate`.

    Example:
        >>> evaluate_scores([[0.9, 0.5, 0.1]], [[0]], [[1]], ks=(1,))["precision@1"]
        1.0
    """
    scores = tf.convert_to_tensor(scores)
    if scores.shape.rank != 2:
        raise ValueError(f"scores must be [n_users, n_items]; got shape {scores.shape}.")
    if not scores.dtype.is_floating:
        scores = tf.cast(scores, tf.float64)
    n_users, n_items = scores.shape
    train = _user_items_from_lists(train_items, n_users, n_items, "train_items")
    truth = _user_items_from_lists(truth_items, n_users, n_items, "truth_items")
    evaluator = FullRankingEvaluator(train, truth, ks)
    return evaluator._evaluate(evaluator._rank_scores, scores)
