"""Graph propagation, side by side: the library's XLA gather + segment-sum against other forms.

Times one LightGCN-shaped step on a real interaction graph: two propagations of a [n_nodes, 64] table,
forward and backward (the gradient of a sum of squares of x + Ax + A^2 x). Forms:

- `xla as built`: `graph.propagate` compiled with XLA, in the edge order `from_interactions` builds
  (user receivers, then item receivers in user order): the library's form.
- `xla receiver-sorted`: the same with every edge sorted by receiver (CSR order).
- `xla shuffled`: the same with the edges in random order (does memory locality matter?).
- `eager-graph gather+segment`: the same ops in a tf.function without XLA.
- `sparse matmul`: `tf.sparse.sparse_dense_matmul` (a CSR-style kernel, what PyTorch's MMRec calls;
  XLA cannot compile it, so it runs in a tf.function without XLA).
- `xla degree buckets (ELL)`: no scatter at all: the receivers grouped by degree into buckets of
  widths 1, 2, 4, ..., each bucket's senders padded to its width, gathered and summed over the width;
  the gradient is the same propagation over the transposed graph.
- `xla two halves`: the bipartite graph's user rows and item rows as two independent segment sums
  (can XLA run them on the two cores at once?).

Each round times every form in turn; ratios are medians over rounds, against the library's form.

    python benchmarks/propagation.py --datasets tiktok,sports --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_pipeline import load_dataset  # noqa: E402
from mrdib_tf.backbones.graph import NormalizedGraph, propagate  # noqa: E402


def degree_buckets(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n_nodes: int):
    """`rows <- cols` edges as ELL buckets: per bucket of receivers with degree in (w/2, w], their senders
    and weights padded to w (weight 0); and the permutation that puts the buckets' rows back in node order."""
    order = np.lexsort((cols, rows))
    rows, cols, weights = rows[order], cols[order], weights[order]
    degree = np.bincount(rows, minlength=n_nodes)
    first = np.concatenate([[0], np.cumsum(degree)])
    buckets, bucket_nodes, width = [], [], 1
    while width // 2 < max(degree.max(), 1):
        nodes = np.flatnonzero((degree > width // 2) & (degree <= width))
        if len(nodes):
            slot = np.arange(width)[None, :]
            valid = slot < degree[nodes][:, None]
            edge = np.where(valid, first[nodes][:, None] + slot, 0)
            buckets.append((tf.constant(np.where(valid, cols[edge], 0).astype(np.int32)),
                            tf.constant(np.where(valid, weights[edge], 0).astype(np.float32))))
            bucket_nodes.append(nodes)
        width *= 2
    isolated = np.flatnonzero(degree == 0)
    position = np.empty(n_nodes, np.int32)
    position[np.concatenate(bucket_nodes + [isolated])] = np.arange(n_nodes)
    return buckets, len(isolated), tf.constant(position)


def ell_propagation(graph: NormalizedGraph):
    """`A @ x` by degree buckets, its gradient `A^T @ g` by the transposed graph's buckets."""
    forward = degree_buckets(graph.rows, graph.cols, graph.weights, graph.n_nodes)
    backward = degree_buckets(graph.cols, graph.rows, graph.weights, graph.n_nodes)

    def apply(x, spec):
        buckets, isolated, position = spec
        parts = [tf.reduce_sum(tf.gather(x, senders) * weights[..., None], axis=1) for senders, weights in buckets]
        parts.append(tf.zeros([isolated, tf.shape(x)[1]], x.dtype))
        return tf.gather(tf.concat(parts, 0), position)

    @tf.custom_gradient
    def one_hop(x):
        return apply(x, forward), lambda upstream: apply(upstream, backward)

    return one_hop


def step_functions(graph: NormalizedGraph, n_users: int, width: int,
                   seed: int = 0) -> dict[str, tf.types.experimental.GenericFunction]:
    """Every form's compiled step, each returning the gradient of the step's loss."""
    rng = np.random.default_rng(seed)
    table = tf.Variable(rng.standard_normal((graph.n_nodes, width)).astype(np.float32))
    by_receiver = np.lexsort((graph.cols, graph.rows))
    shuffled = rng.permutation(len(graph.rows))

    def edges(order):
        return (tf.constant(graph.rows[order]), tf.constant(graph.cols[order]), tf.constant(graph.weights[order]),
                graph.n_nodes)

    sorted_edges, shuffled_edges = edges(by_receiver), edges(shuffled)
    as_built = edges(np.arange(len(graph.rows)))
    to_users = graph.rows < n_users
    halves = [(tf.constant(graph.rows[part] - offset), tf.constant(graph.cols[part]),
               tf.constant(graph.weights[part]), size)
              for part, offset, size in ((to_users, 0, n_users), (~to_users, n_users, graph.n_nodes - n_users))]
    ell = ell_propagation(graph)
    matrix = tf.sparse.SparseTensor(
        np.stack([graph.rows[by_receiver], graph.cols[by_receiver]], axis=1).astype(np.int64),
        graph.weights[by_receiver], [graph.n_nodes, graph.n_nodes])

    def step(one_hop):
        def gradient():
            with tf.GradientTape() as tape:
                first = one_hop(table)
                loss = tf.reduce_sum(tf.square(table + first + one_hop(first)))
            return tape.gradient(loss, table)
        return gradient

    return {
        "xla as built": tf.function(step(lambda x: propagate(x, *as_built)), jit_compile=True),
        "xla receiver-sorted": tf.function(step(lambda x: propagate(x, *sorted_edges)), jit_compile=True),
        "xla shuffled": tf.function(step(lambda x: propagate(x, *shuffled_edges)), jit_compile=True),
        "eager-graph gather+segment": tf.function(step(lambda x: propagate(x, *sorted_edges)), jit_compile=False),
        "sparse matmul": tf.function(step(lambda x: tf.sparse.sparse_dense_matmul(matrix, x)), jit_compile=False),
        "xla degree buckets (ELL)": tf.function(step(ell), jit_compile=True),
        "xla two halves": tf.function(step(lambda x: tf.concat([propagate(x, *half) for half in halves], 0)),
                                      jit_compile=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="tiktok,sports")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per form and round")
    args = parser.parse_args()
    for name in args.datasets.split(","):
        dataset = load_dataset(name=name, require_features=False)
        users, items = dataset.train_pairs()
        graph = NormalizedGraph.from_interactions(users, items, dataset.n_users, dataset.n_items)
        forms = step_functions(graph, dataset.n_users, args.width)
        reference = next(iter(forms.values()))().numpy()
        for form in forms.values():  # compile, and check every form computes the same gradient
            np.testing.assert_allclose(form().numpy(), reference, rtol=1e-3, atol=1e-3)
        seconds: dict[str, list[float]] = {form: [] for form in forms}
        for _ in range(args.rounds):
            for form, function in forms.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    function().numpy()
                seconds[form].append((time.perf_counter() - start) / args.steps)
        base = statistics.median(seconds["xla as built"])
        print(f"# {name}: {graph.n_nodes} nodes, {len(graph.rows)} directed edges, width {args.width}, "
              f"{args.rounds} rounds x {args.steps} steps")
        print(f"{'form':<28} {'ms/step':>9} {'speed vs library':>17}")
        for form, values in seconds.items():
            median = statistics.median(values)
            print(f"{form:<28} {1000 * median:9.1f} {base / median:17.2f}")


if __name__ == "__main__":
    sys.exit(main())
