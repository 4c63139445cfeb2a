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


def step_functions(graph: NormalizedGraph, width: int, seed: int = 0) -> dict[str, tf.types.experimental.GenericFunction]:
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
        forms = step_functions(graph, args.width)
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
