"""Feature-derived graphs built once and kept beside the dataset's cache build.

MGCN and FREEDOM (and DualGNN, LATTICE) link every item to its k most cosine-similar items of each
modality's raw features (MGCN weighs the links by similarity, FREEDOM does not); SOIL adds interest
and second-order graphs from the features and the training pairs. Building them is the slowest part
of making such a model on an Amazon-sized catalogue, and they depend only on their inputs and
settings, so `fit`, `evaluate`, `export` and `diagnose` share one copy:
`<cache build>/graphs/<name>-<digest>.npz`, the digest a sha256 of the input arrays themselves (so
inputs replaced in memory never meet a stale graph) and of the settings. A build folder is deleted
with its cache build, when its source files change.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mrdib_tf.backbones.graph import NormalizedGraph, knn_item_graph
from mrdib_tf.backbones.soil import soil_graphs
from mrdib_tf.experiments.run_folder import atomic_target

logger = logging.getLogger(__name__)
GRAPH_FOLDER = "graphs"
_FORMAT = b"graphs-v4"  # mixed into the digest: a change of a graph's definition gets new files
_FIELDS = ("rows", "cols", "weights", "n_nodes")


def input_digest(arrays: Sequence[np.ndarray], settings: str) -> str:
    """A sha256 over the format, the settings, and each array's dtype, shape and bytes."""
    digest = hashlib.sha256(_FORMAT)
    digest.update(settings.encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"|{array.dtype.str}|{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def cached_graphs(
    folder: Path | None, name: str, digest: str, build: Callable[[], Mapping[str, NormalizedGraph]],
    sizes: Mapping[str, int],
) -> dict[str, NormalizedGraph]:
    """`build()`'s graphs, read from `folder` if built before, else built and saved there (atomically).

    `sizes`: each graph's name and node count, which a stored file must match (edges in range too);
    a file that cannot be read or does not match is rebuilt, with a warning. A folder that cannot be
    written only costs the rebuild next time. `folder` None: no caching.
    """
    if folder is None:
        return dict(build())
    path = folder / GRAPH_FOLDER / f"{name}-{digest[:20]}.npz"
    if path.exists():
        graphs = _read(path, sizes)
        if graphs is not None:
            return graphs
    graphs = dict(build())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(path) as temporary:
            np.savez(temporary, **{f"{g}.{field}": getattr(graph, field) for g, graph in graphs.items()
                                   for field in _FIELDS})
    except OSError as error:
        logger.warning("%s: could not save the graphs (%s); they will be rebuilt next time.", path, error)
    return graphs


def _read(path: Path, sizes: Mapping[str, int]) -> dict[str, NormalizedGraph] | None:
    try:
        with np.load(path) as stored:
            graphs = {g: NormalizedGraph(*(stored[f"{g}.{f}"] for f in _FIELDS[:3]), int(stored[f"{g}.n_nodes"]))
                      for g in sizes}
    except (OSError, EOFError, ValueError, KeyError) as error:
        logger.warning("%s: unreadable graph file (%s); rebuilding it.", path, error)
        return None
    for g, graph in graphs.items():
        if graph.n_nodes != sizes[g] or not graph.rows.shape == graph.cols.shape == graph.weights.shape:
            logger.warning("%s: graph '%s' is not a %d-node graph; rebuilding the file.", path, g, sizes[g])
            return None
    return graphs


def cached_knn_graph(
    features: np.ndarray, k: int, folder: Path | None, name: str, weighted: bool = True
) -> NormalizedGraph:
    """`knn_item_graph(features, k, weighted)`, through `cached_graphs` as `<name>-k<k>[-unweighted]`."""
    kind = "" if weighted else "-unweighted"
    digest = input_digest([features], f"knn|{k}|{weighted}")
    graphs = cached_graphs(folder, f"{name}-k{k}{kind}", digest,
                           lambda: {"knn": knn_item_graph(features, k, weighted)}, {"knn": features.shape[0]})
    return graphs["knn"]


def cached_soil_graphs(
    features: Mapping[str, np.ndarray], users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
    knn_k: int, interest_k: int, second_order_k: int, folder: Path | None,
) -> dict[str, NormalizedGraph]:
    """`soil_graphs(...)` through `cached_graphs`, its k-NN graphs shared with MGCN's cache files."""
    modalities = sorted(features)
    arrays = [np.asarray(features[m]) for m in modalities] + [np.asarray(users), np.asarray(items)]
    digest = input_digest(arrays, f"soil|{modalities}|{n_users}|{n_items}|{knn_k}|{interest_k}|{second_order_k}")
    sizes = {f"item_{m}": n_items for m in modalities} | {"user_item": n_users + n_items}

    def build() -> dict[str, NormalizedGraph]:
        knn = {m: cached_knn_graph(np.asarray(features[m], np.float32), knn_k, folder, m) for m in modalities}
        return soil_graphs(features, users, items, n_users, n_items, knn_k, interest_k, second_order_k, knn)

    return cached_graphs(folder, f"soil-k{knn_k}-i{interest_k}-a{second_order_k}", digest, build, sizes)
