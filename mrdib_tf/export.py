"""A trained recommender as a TF Serving SavedModel: embeddings, training-item exclusion, top-K retrieval.

What is exported is the inference path only, as numbers: the final user and item embeddings (under
MRdIB these come from the posterior means; no sigma heads, decoders, fusion head or critic exists in
the export), each user's training items (excluded from recommendations), item popularity (the answer
for unknown users) and a `tfrs.layers.factorized_top_k.BruteForce` index over the items. Loading the
SavedModel needs nothing but TensorFlow: no project code, no TFRS, only stock ops.

Signatures (K = the export's `top_k`, fixed at export and clamped to the catalogue size):

- `serving_default`: `user_id` int64 [batch] -> `item_ids` int64 [batch, K], `scores` float32
  [batch, K] (best first, the user's training items excluded), `known_user` bool [batch].
- `score`: `user_id`, `item_id` int64 [batch] -> `score` float32 [batch], `known_user`,
  `known_item` bool [batch].
- `metadata`: `unused` int64 [] (TF Serving's REST API rejects a signature without inputs; any value)
  -> backbone, dataset, MRdIB alphas, run folder, metrics, export time (see `RetrievalModule.metadata`).

Defined answers, never an error:

- Unknown user (id < 0, id >= n_users, or an in-range id with no training items, whose embedding
  was never trained): `known_user` false, `item_ids` the K most-interacted training items (ties:
  lower id first), `scores` NaN (there is no model score). In `score`: NaN.
- Unknown item (id < 0 or id >= n_items): `known_item` false, `score` NaN.
- Fewer than K items left after excluding the user's training items: the list is padded with
  `item_ids` -1 and `scores` -inf (so scores stay non-increasing along each row).
- Empty batch: outputs with a 0-length batch dimension ([0, K] and [0]).

Exclusion. TFRS's `query_with_exclusions` takes the exclusions as one dense [batch, T] id matrix and
asks the index for K + T candidates for every user, T the widest row. Training counts are heavy-tailed
(tiktok: median 2, max 603), so one heavy user would make every user's top-k that long, and the index's
top-k dominates latency. Here the index is asked for C = min(K + T, n_items) candidates in two exact
passes: all users with T capped at `light_items` (default K), then only the users with more training
items than that, with their own T. Removing each user's training items (looked up by binary search in
the sorted keys user * n_items + item) leaves at least min(K, items the user has not trained on), so
the result is exactly the full-ranking top-K with training items masked (ties: lower item id first).
docs/RESULTS.md ("Export latency") gives the measured difference.

TFRS 0.7.7 imports only under tf_keras: set `TF_USE_LEGACY_KERAS=1` before TensorFlow is first
imported in the process (`trainers/export.py` and `benchmarks/export_latency.py` do).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

try:
    import tensorflow_recommenders as tfrs
except ImportError as error:  # TFRS refuses to import under Keras 3
    raise ImportError(
        "mrdib_tf.export needs tensorflow-recommenders, which imports only with tf_keras: set "
        "TF_USE_LEGACY_KERAS=1 before TensorFlow is first imported in this process (as "
        f"`python -m trainers.export` does). TFRS said: {error}"
    ) from error

from data_pipeline.interactions import UserItems

METADATA_FILE = Path("assets.extra") / "metadata.json"
PADDING_ITEM = -1
logger = logging.getLogger(__name__)
_SENTINEL_KEY = np.iinfo(np.int64).max  # ends the sorted key table, so a lookup never runs off its end


@dataclass(frozen=True)
class ExportMetadata:
    """What the `metadata` signature and `assets.extra/metadata.json` tell about an export.

    Attributes:
        backbone: backbone name ("vbpr", ...).
        dataset: dataset name.
        mrdib: whether the model was trained with the MRdIB regularizer.
        alpha_kl, alpha_mi, alpha_unique: MRdIB's weights, as the regularizer names them; 0 when `mrdib` is false.
        run_dir: the run folder the export was made from ("" when not from a run).
        best_epoch: the epoch whose weights were exported (0 when not from a run).
        valid_metrics, test_metrics: `metrics.json`'s validation and test metrics.
        config_json: the run's full `config.json` text.
        note: free text (e.g. "random embeddings" for benchmark exports).
    """

    backbone: str = ""
    dataset: str = ""
    mrdib: bool = False
    alpha_kl: float = 0.0
    alpha_mi: float = 0.0
    alpha_unique: float = 0.0
    run_dir: str = ""
    best_epoch: int = 0
    valid_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    config_json: str = "{}"
    note: str = ""

    def metric_names(self) -> list[str]:
        """Every metric of either split, ordered by family then cutoff ("map@5", "map@10", ...)."""
        names = set(self.valid_metrics) | set(self.test_metrics)
        return sorted(names, key=lambda name: (name.split("@")[0], int(name.split("@")[1])))


def _popular_items(train: UserItems, k: int) -> np.ndarray:
    """The k items with the most training interactions, ties broken by lower id."""
    counts = np.bincount(train.indices, minlength=train.n_items)
    return np.argsort(-counts, kind="stable")[:k].astype(np.int64)


class RetrievalModule(tf.Module):
    """The exportable serving model (see the module docstring for its signatures and answers).

    Args:
        user_embeddings: float32 [n_users, D], the final user embeddings.
        item_embeddings: float32 [n_items, D], the final item embeddings; score = dot product.
        train: each user's training items (excluded from recommendations), over the same ids.
        top_k: K, the length of each recommendation list; clamped to n_items.
        metadata: what the `metadata` signature reports.
        light_items: users with at most this many training items are answered by the first index
            pass (top K + light_items candidates), heavier ones by a second pass of their own; default K.
            A latency knob only: answers are exact for any value >= 0.
    """

    def __init__(
        self,
        user_embeddings: np.ndarray,
        item_embeddings: np.ndarray,
        train: UserItems,
        top_k: int,
        metadata: ExportMetadata,
        light_items: int | None = None,
    ):
        super().__init__(name="retrieval")
        user_embeddings = np.asarray(user_embeddings, dtype=np.float32)
        item_embeddings = np.asarray(item_embeddings, dtype=np.float32)
        if user_embeddings.ndim != 2 or item_embeddings.ndim != 2 or (
            user_embeddings.shape[1] != item_embeddings.shape[1]
        ):
            raise ValueError(
                f"Embeddings must be [n_users, D] and [n_items, D]; got {user_embeddings.shape} and "
                f"{item_embeddings.shape}."
            )
        n_users, n_items = user_embeddings.shape[0], item_embeddings.shape[0]
        if min(n_users, n_items) < 1:
            raise ValueError(f"Need at least one user and one item; got {n_users} and {n_items}.")
        if (train.n_users, train.n_items) != (n_users, n_items):
            raise ValueError(
                f"train covers {train.n_users} users x {train.n_items} items; the embeddings "
                f"{n_users} x {n_items}."
            )
        if not np.all(np.isfinite(user_embeddings)) or not np.all(np.isfinite(item_embeddings)):
            raise ValueError("Embeddings must be finite (NaN and inf mark special answers in the export).")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1; got {top_k}.")
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.top_k = min(int(top_k), self.n_items)
        if self.top_k < top_k:
            logger.warning("top_k=%d is larger than the catalogue: recommendation lists hold all %d items.",
                           top_k, self.n_items)
        self.light_items = self.top_k if light_items is None else int(light_items)
        if self.light_items < 0:
            raise ValueError(f"light_items must be >= 0; got {light_items}.")
        counts = np.diff(train.indptr).astype(np.int64)
        self.export_metadata = metadata
        self.export_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        users, items = train.to_pairs()  # sorted by user then item, so the keys are sorted
        keys = np.append(users * self.n_items + items, _SENTINEL_KEY)
        self.user_embeddings = tf.Variable(user_embeddings, trainable=False, name="user_embeddings")
        self.item_embeddings = tf.Variable(item_embeddings, trainable=False, name="item_embeddings")
        self.train_item_counts = tf.Variable(counts, trainable=False, name="train_item_counts")
        self.train_keys = tf.Variable(keys, trainable=False, name="train_keys")
        self.popular_items = tf.Variable(
            _popular_items(train, self.top_k), trainable=False, name="popular_items"
        )
        self.index = tfrs.layers.factorized_top_k.BruteForce(k=self.top_k, name="item_index")
        self.index.index(tf.constant(item_embeddings), tf.range(self.n_items, dtype=tf.int64))

    def _known_users(self, user_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(known, safe id): known = in range with training items; safe = the id, or 0 when unknown."""
        in_range = (user_id >= 0) & (user_id < self.n_users)
        safe = tf.where(in_range, user_id, tf.zeros_like(user_id))
        return in_range & (tf.gather(self.train_item_counts, safe) > 0), safe

    def _top_untrained(self, users: tf.Tensor, trained_counts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Exact top-K of `users` without their training items, from one index lookup.

        The index is asked for K + max(trained_counts) candidates (at most n_items); dropping each
        user's training items from them leaves its K best untrained items, or all of them, padded.
        """
        most_trained = tf.maximum(tf.reduce_max(trained_counts), 0)  # an empty batch's max is int64's minimum
        n_candidates = tf.cast(tf.minimum(self.top_k + most_trained, self.n_items), tf.int32)
        scores, items = self.index(tf.gather(self.user_embeddings, users), k=n_candidates)
        keys = tf.reshape(users[:, None] * self.n_items + items, [-1])
        found = tf.gather(self.train_keys, tf.searchsorted(self.train_keys, keys, side="left"))
        trained = tf.reshape(tf.equal(found, keys), tf.shape(items))
        # top_k keeps equal values in index order, so this is a stable move of the kept candidates to the front.
        kept_scores, order = tf.math.top_k(tf.where(trained, -np.inf, scores), k=self.top_k)
        kept = tf.logical_not(tf.gather(trained, order, batch_dims=1))
        item_ids = tf.where(kept, tf.gather(items, order, batch_dims=1), tf.constant(PADDING_ITEM, tf.int64))
        return item_ids, tf.where(kept, kept_scores, -np.inf)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="user_id")])
    def recommend(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        """The top-K items of each user, training items excluded (`serving_default`).

        Two exact passes keep the index's top-k small: every user with room for `light_items` training
        items, then again, with room for their own counts, only the users who have more.
        """
        known, safe = self._known_users(user_id)
        trained_counts = tf.where(known, tf.gather(self.train_item_counts, safe), tf.zeros_like(safe))
        light_counts = tf.minimum(trained_counts, self.light_items)
        item_ids, scores = self._top_untrained(safe, light_counts)
        heavy = tf.where(trained_counts > self.light_items)  # [h, 1] row positions
        heavy_ids, heavy_scores = self._top_untrained(tf.gather_nd(safe, heavy), tf.gather_nd(trained_counts, heavy))
        item_ids = tf.tensor_scatter_nd_update(item_ids, heavy, heavy_ids)
        scores = tf.tensor_scatter_nd_update(scores, heavy, heavy_scores)
        popular = tf.broadcast_to(self.popular_items[None, :], tf.shape(item_ids))
        return {
            "item_ids": tf.where(known[:, None], item_ids, popular),
            "scores": tf.where(known[:, None], scores, np.nan),
            "known_user": known,
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int64, name="user_id"),
            tf.TensorSpec([None], tf.int64, name="item_id"),
        ]
    )
    def score(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        """The model's score of each (user, item) pair, training items included (`score`)."""
        known_user, safe_user = self._known_users(user_id)
        known_item = (item_id >= 0) & (item_id < self.n_items)
        safe_item = tf.where(known_item, item_id, tf.zeros_like(item_id))
        dot = tf.reduce_sum(
            tf.gather(self.user_embeddings, safe_user) * tf.gather(self.item_embeddings, safe_item), axis=-1
        )
        return {
            "score": tf.where(known_user & known_item, dot, np.nan),
            "known_user": known_user,
            "known_item": known_item,
        }

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="unused")])
    def metadata(self, unused: tf.Tensor) -> dict[str, tf.Tensor]:
        """Where the export comes from (`metadata`); the input only exists because REST needs one."""
        meta = self.export_metadata
        names = meta.metric_names()

        def metric_values(metrics: dict[str, float]) -> tf.Tensor:
            return tf.constant([metrics.get(n, np.nan) for n in names], tf.float64, shape=[len(names)])

        return {
            "backbone": tf.constant(meta.backbone),
            "dataset": tf.constant(meta.dataset),
            "mrdib": tf.constant(meta.mrdib),
            "alpha_kl": tf.constant(meta.alpha_kl, tf.float32),
            "alpha_mi": tf.constant(meta.alpha_mi, tf.float32),
            "alpha_unique": tf.constant(meta.alpha_unique, tf.float32),
            "run_dir": tf.constant(meta.run_dir),
            "best_epoch": tf.constant(meta.best_epoch, tf.int64),
            "metric_names": tf.constant(names, tf.string, shape=[len(names)]),
            "valid_metrics": metric_values(meta.valid_metrics),
            "test_metrics": metric_values(meta.test_metrics),
            "export_time": tf.constant(self.export_time),
            "top_k": tf.constant(self.top_k, tf.int64),
            "n_users": tf.constant(self.n_users, tf.int64),
            "n_items": tf.constant(self.n_items, tf.int64),
            "config_json": tf.constant(meta.config_json),
            "note": tf.constant(meta.note),
        }

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        return {
            "serving_default": self.recommend.get_concrete_function(),
            "score": self.score.get_concrete_function(),
            "metadata": self.metadata.get_concrete_function(),
        }

    def metadata_json(self) -> str:
        """The `metadata` signature's content as JSON, for `assets.extra/metadata.json`."""
        content = asdict(self.export_metadata)
        content.update(export_time=self.export_time, top_k=self.top_k, n_users=self.n_users, n_items=self.n_items)
        return json.dumps(content, indent=2, sort_keys=True)


def existing_versions(model_dir: str | Path) -> list[int]:
    """The version numbers under `model_dir`: the sub-folders whose names are integers (as TF Serving reads them)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isascii() and p.name.isdigit())


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or any(c in name for c in "/\\") or name.isdigit():
        raise ValueError(
            f"Export name {name!r}: must be a non-empty folder name without '/' or '\\', not starting "
            "with '.', and not all digits (TF Serving reads digit folders as versions)."
        )


def write_version(module: RetrievalModule, out_root: str | Path, name: str) -> Path:
    """Saves `module` as the next version of `out_root/name`; returns `out_root/name/<version>`.

    The SavedModel is written to a hidden temporary folder beside the versions and renamed into place,
    so TF Serving (which polls the folder) never sees a half-written version; a temporary folder left by
    a crash is not a number, so it is never taken for a version. Versions start at 1 and increase by one
    over the largest existing version; two exporters racing for a number both succeed with different
    numbers (the rename onto a taken, non-empty version folder fails and the next number is tried).
    """
    _check_name(name)
    model_dir = Path(out_root) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=model_dir))
    try:
        temporary.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
        tf.saved_model.save(module, str(temporary), signatures=module.signatures())
        (temporary / METADATA_FILE).parent.mkdir()
        (temporary / METADATA_FILE).write_text(module.metadata_json() + "\n", encoding="utf-8")
        while True:
            version = model_dir / str(max(existing_versions(model_dir), default=0) + 1)
            try:
                temporary.rename(version)
                return version
            except OSError:
                if not version.is_dir():
                    raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
