"""k-NN item graphs built once per feature table and kept beside the dataset's cache build.

MGCN and FREEDOM (and DualGNN, LATTICE) link every item to its k most cosine-similar items of each
modality's raw features (MGCN weighs the links by similarity, FREEDOM does not). Building that graph
is the slowest part of making the model on an Amazon-sized catalogue, and it depends only on the
feature values, k and the weighting, so `fit`, `evaluate`, `export` and `diagnose` share one copy:
`<cache build>/knn/<modality>-k<k>[-unweighted]-<digest>.npz`, the digest a sha256 of the feature
array itself (so features replaced in memory never meet a stale graph). A build folder is deleted
with its cache build, when its source files change.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from mrdib_tf.backbones.graph import NormalizedGraph, knn_item_graph
from mrdib_tf.experiments.run_folder import atomic_target

logger = logging.getLogger(__name__)
GRAPH_FOLDER = "knn"
_FORMAT = b"knn-graph-v1"  # mixed into the digest: a change of the graph's definition gets new files


def feature_digest(features: np.ndarray, k: int, weighted: bool = True) -> str:
    """A sha256 over the format, k, the weighting, the array's dtype, shape and bytes."""
    array = np.ascontiguousarray(features)
    digest = hashlib.sha256(_FORMAT)
    digest.update(f"{k}|{weighted}|{array.dtype.str}|{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def cached_knn_graph(
    features: np.ndarray, k: int, folder: Path | None, name: str, weighted: bool = True
) -> NormalizedGraph:
    """`knn_item_graph(features, k, weighted)`, read from `folder` if built before, else built and saved there.

    A file that cannot be read or does not hold a graph of the expected size is rebuilt (with a warning);
    a folder that cannot be written only costs the rebuild next time. `folder` None: no caching.
    """
    if folder is None:
        return knn_item_graph(features, k, weighted)
    kind = "" if weighted else "-unweighted"
    path = folder / GRAPH_FOLDER / f"{name}-k{k}{kind}-{feature_digest(features, k, weighted)[:20]}.npz"
    if path.exists():
        graph = _read(path, n_items=features.shape[0], k=k)
        if graph is not None:
            return graph
    graph = knn_item_graph(features, k, weighted)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(path) as temporary:
            np.savez(temporary, rows=graph.rows, cols=graph.cols, weights=graph.weights, n_nodes=graph.n_nodes)
    except OSError as error:
        logger.warning("%s: could not save the k-NN graph (%s); it will be rebuilt next time.", path, error)
    return graph


def _read(path: Path, n_items: int, k: int) -> NormalizedGraph | None:
    try:
        with np.load(path) as stored:
            graph = NormalizedGraph(stored["rows"], stored["cols"], stored["weights"], int(stored["n_nodes"]))
    except (OSError, EOFError, ValueError, KeyError) as error:
        logger.warning("%s: unreadable k-NN graph (%s); rebuilding it.", path, error)
        return None
    edges = n_items * k
    if graph.n_nodes != n_items or not (graph.rows.shape == graph.cols.shape == graph.weights.shape == (edges,)):
        logger.warning("%s: not a %d-item, k=%d graph; rebuilding it.", path, n_items, k)
        return None
    return graph
