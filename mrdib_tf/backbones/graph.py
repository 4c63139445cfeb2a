"""Normalized user-item graphs and XLA-compilable propagation over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class NormalizedGraph:
    """The symmetric-normalized bipartite adjacency D^-1/2 A D^-1/2 as COO edges over users + items.

    Node ids: users are `0..n_users-1`, items `n_users..n_users+n_items-1`.
    """

    rows: np.ndarray  # int32 [n_edges], the receiving node
    cols: np.ndarray  # int32 [n_edges], the sending node
    weights: np.ndarray  # float32 [n_edges]
    n_nodes: int

    @classmethod
    def from_interactions(
        cls, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
    ) -> "NormalizedGraph":
        """Builds the graph from (user, item) training pairs; duplicate pairs count once.

        Degrees get +1e-7 as in LightGCN's reference implementation, so isolated nodes do not divide by 0.
        """
        pairs = np.unique(np.stack([users, items], axis=1).astype(np.int64), axis=0)
        user_nodes, item_nodes = pairs[:, 0], pairs[:, 1] + n_users
        rows = np.concatenate([user_nodes, item_nodes])
        cols = np.concatenate([item_nodes, user_nodes])
        n_nodes = n_users + n_items
        degree = np.bincount(rows, minlength=n_nodes).astype(np.float64) + 1e-7
        inv_sqrt = degree**-0.5
        weights = (inv_sqrt[rows] * inv_sqrt[cols]).astype(np.float32)
        return cls(rows.astype(np.int32), cols.astype(np.int32), weights, n_nodes)

    def plus(self, other: "NormalizedGraph", scale: float = 1.0) -> "NormalizedGraph":
        """The graph of `A + scale * B`, an edge present in both kept once with the summed weight (fewer
        edges to propagate over), edges sorted by (receiver, sender)."""
        if other.n_nodes != self.n_nodes:
            raise ValueError(f"Cannot add a {other.n_nodes}-node graph to a {self.n_nodes}-node one.")
        rows = np.concatenate([self.rows, other.rows]).astype(np.int64)
        cols = np.concatenate([self.cols, other.cols]).astype(np.int64)
        weights = np.concatenate([self.weights.astype(np.float64), scale * other.weights.astype(np.float64)])
        span = int(max(rows.max(initial=0), cols.max(initial=0))) + 1
        edges, slot = np.unique(rows * span + cols, return_inverse=True)
        rows, cols = np.divmod(edges, span)
        summed = np.bincount(slot, weights=weights, minlength=len(edges))
        return NormalizedGraph(rows.astype(np.int32), cols.astype(np.int32), summed.astype(np.float32), self.n_nodes)

    def users_from_items(self, n_users: int) -> "NormalizedGraph":
        """The user <- item block of a bipartite graph (MGCN's R): user receivers, item-id senders."""
        to_users = self.rows < n_users
        return NormalizedGraph(
            self.rows[to_users], self.cols[to_users] - n_users, self.weights[to_users], n_users
        )


def propagate(
    embeddings: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor, weights: tf.Tensor, n_nodes: int
) -> tf.Tensor:
    """One step `A_hat @ embeddings` as gather + unsorted_segment_sum, which (unlike sparse matmul) XLA compiles."""
    messages = tf.gather(embeddings, cols) * weights[:, None]
    return tf.math.unsorted_segment_sum(messages, rows, n_nodes)


def mean_over_layers(embeddings: tf.Tensor, graph_tables: tuple, n_layers: int) -> tf.Tensor:
    """LightGCN's smoothing: the mean of `embeddings` propagated 0, 1, ..., `n_layers` times."""
    layer = total = embeddings
    for _ in range(n_layers):
        layer = propagate(layer, *graph_tables)
        total += layer
    return total / float(n_layers + 1)


def row_normalized(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_nodes: int, floor: float | None = None
) -> NormalizedGraph:
    """Edges `rows <- cols` weighing d_r^-1/2 v d_c^-1/2, d the row sums of `values` (a factor 0 where a
    row sum is not positive); `floor`: weights below it are raised to it (SOIL's authors floor at 1e-7)."""
    degree = np.bincount(rows, weights=values, minlength=n_nodes)
    inv_sqrt = np.zeros_like(degree)
    np.power(degree, -0.5, out=inv_sqrt, where=degree > 0)
    weights = inv_sqrt[rows] * values * inv_sqrt[cols]
    if floor is not None:
        weights = np.maximum(weights, floor)
    return NormalizedGraph(rows.astype(np.int32), cols.astype(np.int32), weights.astype(np.float32), n_nodes)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """`features` with each row scaled to unit length (float32); an all-zero row stays zero."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.divide(features, norms, out=np.zeros(features.shape, dtype=np.float32), where=norms > 0)


def knn_neighbours(features: np.ndarray, k: int, chunk_rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each item's k most cosine-similar items (itself included) and their similarities, `[n_items, k]` each.

    Similarities are computed `chunk_rows` rows at a time, so an 18k-item catalogue never holds the
    full n x n matrix. An all-zero feature row has similarity 0 with every item.
    """
    n_items = features.shape[0]
    if not 1 <= k <= n_items:
        raise ValueError(f"knn k must be in [1, n_items={n_items}], got {k}.")
    unit = unit_rows(features)
    neighbours = np.empty((n_items, k), dtype=np.int64)
    similarities = np.empty((n_items, k), dtype=np.float32)
    for start in range(0, n_items, chunk_rows):
        block = unit[start : start + chunk_rows] @ unit.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        neighbours[start : start + len(block)] = top
        similarities[start : start + len(block)] = np.take_along_axis(block, top, axis=1)
    return neighbours, similarities


def knn_item_graph(features: np.ndarray, k: int, weighted: bool = True, chunk_rows: int = 1024) -> NormalizedGraph:
    """The item-item graph of MGCN/LATTICE/FREEDOM: each item linked to its k most cosine-similar items.

    Row i keeps its top-k neighbours (itself included, as MMRec's `build_knn_normalized_graph` does).
    `weighted` (MGCN, LATTICE): the edge weights are the similarities s_ij, normalized symmetrically with
    the row sums d_i, w_ij = d_i^-1/2 s_ij d_j^-1/2 (0 where a row sum is not positive, e.g. an all-zero
    feature row). Unweighted (FREEDOM): every kept edge weighs 1, and since every row then sums to k
    the normalized weight is 1/k.
    """
    neighbours, similarities = knn_neighbours(features, k, chunk_rows)
    n_items = features.shape[0]
    rows = np.repeat(np.arange(n_items), k)
    cols = neighbours.ravel()
    if not weighted:
        weights = np.full(rows.shape, 1.0 / k, dtype=np.float32)
        return NormalizedGraph(rows.astype(np.int32), cols.astype(np.int32), weights, n_items)
    return row_normalized(rows, cols, similarities.ravel(), n_items)


def degree_sensitive_pruning(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, keep: int, rng: np.random.Generator
) -> NormalizedGraph:
    """FREEDOM's denoised user-item graph: `keep` of the training pairs, favouring low-degree ones.

    Pairs are drawn without replacement with probability proportional to their weight in the full
    normalized graph, 1/sqrt(d_u d_i) (so edges between popular users and items go first), by
    exponential races: each pair's key is an Exp(1) draw divided by its weight, and the `keep` smallest
    keys win, which is the distribution of `keep` successive weighted draws without replacement
    (PyTorch's `multinomial`, which MMRec calls). The kept pairs are normalized anew with their own
    degrees. `users`, `items`: the training pairs, each pair once.
    """
    if not 1 <= keep <= len(users):
        raise ValueError(f"keep must be in [1, n_pairs={len(users)}], got {keep}.")
    user_degree = np.bincount(users, minlength=n_users) + 1e-7
    item_degree = np.bincount(items, minlength=n_items) + 1e-7
    weights = 1.0 / np.sqrt(user_degree[users] * item_degree[items])
    keys = rng.exponential(size=len(users)) / weights
    kept = np.argpartition(keys, keep - 1)[:keep]
    return NormalizedGraph.from_interactions(users[kept], items[kept], n_users, n_items)


def user_histories(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """The unique (user, item) pairs sorted by user, and each user's first row in them (`[n_users + 1]`)."""
    pairs = np.unique(np.stack([users, items], axis=1).astype(np.int64), axis=0)
    return pairs, np.searchsorted(pairs[:, 0], np.arange(n_users + 1))


def cooccurrence_neighbours(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, k: int, chunk_users: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's k users that share the most training items with it (DualGNN's user-user graph).

    Returns `(neighbours, counts)`, `[n_users, k]` each: the neighbours by descending count of shared
    items, ties to the lower user id (`torch.topk`, which MMRec's preprocessing calls, leaves tie order
    unspecified), the user itself excluded. A user with fewer than k co-users (k may exceed the
    catalogue) has count 0 and neighbour 0 in its remaining slots. The counts are never a dense users x users matrix: the shared items of
    `chunk_users` users at a time are counted as sparse pairs, so work and memory follow the sum of
    squared item degrees (9.3M pairs on sports).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    pairs, user_start = user_histories(users, items, n_users)
    by_item = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
    item_start = np.searchsorted(by_item[:, 1], np.arange(n_items))
    item_degree = np.bincount(pairs[:, 1], minlength=n_items)
    neighbours = np.zeros((n_users, k), dtype=np.int64)
    counts = np.zeros((n_users, k), dtype=np.int64)
    for first in range(0, n_users, chunk_users):
        last = min(first + chunk_users, n_users)
        block = pairs[user_start[first] : user_start[last]]
        lengths = item_degree[block[:, 1]]
        offsets = np.repeat(item_start[block[:, 1]] - np.cumsum(lengths) + lengths, lengths)
        co_users = by_item[offsets + np.arange(lengths.sum()), 0]
        keys, shared = np.unique(np.repeat(block[:, 0], lengths) * n_users + co_users, return_counts=True)
        receivers, co_users = np.divmod(keys, n_users)
        others = receivers != co_users
        receivers, co_users, shared = receivers[others], co_users[others], shared[others]
        order = np.lexsort((co_users, -shared, receivers))  # by user, then count down, then lower id
        receivers, co_users, shared = receivers[order], co_users[order], shared[order]
        rank = np.arange(len(receivers)) - np.searchsorted(receivers, receivers)
        top = rank < k
        neighbours[receivers[top], rank[top]] = co_users[top]
        counts[receivers[top], rank[top]] = shared[top]
    return neighbours, counts
