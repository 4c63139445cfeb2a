"""SOIL's graphs (Su et al., 2024): interest-aware item graphs and the second-order user-item graph.

Both come from the training pairs and the cosine similarities of the item features, built as the
authors' code builds them (github.com/TL-UESTC/SOIL, `models/soil.py`) but without any items x items
matrix: similarities are computed a chunk of rows at a time, so the work follows users x items x d
(interest graphs) and items x items x d (second-order graph), and memory stays near the edges kept.

Weights are normalized as the authors' `get_sparse_laplacian` does: w_ij = d_i^-1/2 a_ij d_j^-1/2
with the row sums d (a factor 0 where a row sum is 0), and weights below 1e-7 raised to 1e-7.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from mrdib_tf.backbones.graph import NormalizedGraph, row_normalized, unit_rows, user_histories

#: The authors' floor on a normalized edge weight (their `masked_fill_(edge_weight <= 1e-7, 1e-7)`).
WEIGHT_FLOOR = 1e-7


def interest_item_graphs(
    features: Mapping[str, np.ndarray],
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    interest_k: int,
    chunk_users: int = 1024,
    chunk_pairs: int = 65536,
) -> dict[str, NormalizedGraph]:
    """Each modality's interest graph: a user's items linked to the items that user is most drawn to.

    For user u with training items H_u, its interest items C_u are the union over modalities m of the
    `interest_k` items with the largest sum_{i in H_u} s_m(i, j) (cosine similarity). Every pair
    (i in H_u, c in C_u) adds s_m(i, c) to entry (i, c) of modality m's matrix, so an entry is the
    similarity times the number of users that link the pair. Row i receives from its columns.

    One departure from the authors' code: a link whose similarity is negative is dropped. Their code
    keeps it in the row sums, and a row whose sum turns negative gets a NaN degree, so training fails on
    features with negative similarities (tiktok's audio: 1,656 of 6,245 rows). Where no similarity is
    negative (non-negative CNN features) the graphs are the same.
    """
    if interest_k < 1 or interest_k > n_items:
        raise ValueError(f"interest_k must be in [1, n_items={n_items}], got {interest_k}.")
    pairs, starts = user_histories(users, items, n_users)
    history = sp.csr_matrix((np.ones(len(pairs), np.float32), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items))
    units = {m: unit_rows(np.asarray(f, np.float32)) for m, f in sorted(features.items())}

    links = []  # keys i * n_items + c, one per (user, history item, interest item)
    for first in range(0, n_users, chunk_users):
        last = min(first + chunk_users, n_users)
        chosen = np.concatenate([
            np.argpartition(-(history[first:last] @ unit) @ unit.T, interest_k - 1, axis=1)[:, :interest_k]
            for unit in units.values()
        ], axis=1)  # [chunk, M * interest_k], with repeats across modalities
        for u in range(first, last):
            own = pairs[starts[u] : starts[u + 1], 1]
            if len(own):
                interest = np.unique(chosen[u - first])
                links.append((own[:, None] * n_items + interest[None, :]).ravel())
    keys, counts = np.unique(np.concatenate(links), return_counts=True)
    rows, cols = np.divmod(keys, n_items)

    graphs = {}
    for m, unit in units.items():
        similarity = np.concatenate([
            np.einsum("pd,pd->p", unit[rows[s : s + chunk_pairs]], unit[cols[s : s + chunk_pairs]])
            for s in range(0, len(rows), chunk_pairs)
        ])
        kept = similarity > 0  # the authors keep the non-zero entries; see the docstring for negatives
        graphs[m] = row_normalized(rows[kept], cols[kept], counts[kept] * similarity[kept].astype(np.float64), n_items,
                                   WEIGHT_FLOOR)
    return graphs


def _top_similar_products(
    units: list[np.ndarray], depth: np.ndarray, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each item i its `depth[i]` largest products prod_m s_m(i, j), in descending order, as ragged
    rows: `(offsets [n + 1], columns, values)`."""
    n_items = units[0].shape[0]
    offsets = np.concatenate([[0], np.cumsum(depth)])
    columns = np.empty(offsets[-1], dtype=np.int64)
    values = np.empty(offsets[-1], dtype=np.float32)
    for start in range(0, n_items, chunk_rows):
        stop = min(start + chunk_rows, n_items)
        block = units[0][start:stop] @ units[0].T
        for unit in units[1:]:
            block *= unit[start:stop] @ unit.T
        widest = int(depth[start:stop].max())
        top = np.argpartition(-block, widest - 1, axis=1)[:, :widest]
        top_values = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_values, axis=1, kind="stable")
        top, top_values = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_values, order, axis=1)
        for i in range(start, stop):
            kept = slice(offsets[i], offsets[i + 1])
            columns[kept], values[kept] = top[i - start, : depth[i]], top_values[i - start, : depth[i]]
    return offsets, columns, values


def second_order_graphs(
    features: Mapping[str, np.ndarray],
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    extra_k: int,
    chunk_rows: int = 1024,
) -> NormalizedGraph:
    """The second-order interactions: each user linked to the items most similar to its own in every modality.

    With p(i, j) = prod_m s_m(i, j), user u (training items H_u) keeps the K = |H_u| + `extra_k`
    largest entries p(i, j) over i in H_u and all j (its own items come first, p(i, i) = 1, then the
    `extra_k` best others), and links to each kept j with weight p(i, j), summed where several i pick
    the same j. Returns the symmetric graph over users + items (ids as
    `NormalizedGraph.from_interactions`), normalized with the user and item row sums of the links.

    The authors normalize its user <- item block's item side with the row sum of the *user* whose id equals the
    item's (an index slip that only runs where there are more users than items); this uses the item's own.
    """
    if extra_k < 0:
        raise ValueError(f"extra_k must be >= 0, got {extra_k}.")
    pairs, starts = user_histories(users, items, n_users)
    sizes = np.diff(starts)
    if sizes.max() + extra_k > n_items:
        raise ValueError(f"extra_k={extra_k} plus the longest history ({sizes.max()}) exceeds n_items={n_items}.")
    depth = np.ones(n_items, dtype=np.int64)  # an item no user holds is never read: one slot suffices
    np.maximum.at(depth, pairs[:, 1], sizes[pairs[:, 0]] + extra_k)
    units = [unit_rows(np.asarray(f, np.float32)) for _, f in sorted(features.items())]
    offsets, columns, values = _top_similar_products(units, depth, chunk_rows)

    link_users, link_items, link_values = [], [], []
    for u in np.flatnonzero(sizes):
        keep = sizes[u] + extra_k
        rows = [slice(offsets[i], offsets[i] + keep) for i in pairs[starts[u] : starts[u + 1], 1]]
        candidates = np.concatenate([values[r] for r in rows])
        best = np.argpartition(-candidates, keep - 1)[:keep]
        link_items.append(np.concatenate([columns[r] for r in rows])[best])
        link_values.append(candidates[best])
        link_users.append(np.full(keep, u))
    keys = np.concatenate(link_users) * n_items + np.concatenate(link_items)
    keys, slot = np.unique(keys, return_inverse=True)
    weight = np.bincount(slot, weights=np.concatenate(link_values).astype(np.float64))
    link_user, link_item = np.divmod(keys, n_items)

    item_nodes = link_item + n_users
    return row_normalized(np.concatenate([link_user, item_nodes]), np.concatenate([item_nodes, link_user]),
                          np.concatenate([weight, weight]), n_users + n_items, WEIGHT_FLOOR)
