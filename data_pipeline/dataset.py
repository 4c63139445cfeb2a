"""`load_dataset`: an MMRec folder in, a `PreparedDataset` (arrays + tf.data input) out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import tensorflow as tf

from data_pipeline import cache, tfrecords
from data_pipeline.interactions import UserItems
from data_pipeline.errors import DataValidationError
from data_pipeline.mmrec_format import check_features_present, read_mmrec_dataset, source_files
from data_pipeline.registry import resolve_dataset
from data_pipeline.sampling import candidate_items, derive_seed, positive_keys, sample_negatives

logger = logging.getLogger(__name__)

_SHUFFLE, _NEGATIVES = 0, 1  # purposes mixed into derived seeds
_T = TypeVar("_T")


@dataclass
class PreparedDataset:
    """A validated dataset, read back from its TFRecord cache.

    Attributes:
        name: dataset name.
        n_users: max(userID) + 1 over every row of the `.inter` file.
        n_items: max(itemID) + 1 over every row of the `.inter` file.
        features: modality -> float32 [n_items, dim] (row i = item i), keys sorted; {} when the
            dataset was loaded without features.
        train, valid, test: each user's items per split (cold-start valid/test users dropped).
        cache_dir: the cache build folder the dataset was read from (its shards and manifest.json).
        manifest: the cache's manifest ({} for a dataset built in memory).

    `train_batches` streams the cache's train TFRecords when the dataset comes from `load_dataset`;
    a dataset built in memory, or a copy made with `dataclasses.replace` (which may have a different
    `train`), batches its `train` pairs from memory instead. A dataset from `load_dataset` holds a
    lease on its cache build while it lives, so no other process deletes the shards it streams.
    """

    name: str
    n_users: int
    n_items: int
    features: dict[str, np.ndarray]
    train: UserItems
    valid: UserItems
    test: UserItems
    cache_dir: Path
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    _train_shards: tuple[Path, ...] = field(default=(), init=False, repr=False, compare=False)
    _lease: BinaryIO | None = field(default=None, init=False, repr=False, compare=False)
    _sampler: tuple[UserItems, str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The (users, items) int64 arrays of every training pair, sorted by user then item."""
        return self.train.to_pairs()

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per epoch of `train_batches(batch_size, ...)` (the last one may be partial)."""
        return -(-self.train.nnz // batch_size)

    def train_batches(
        self, batch_size: int, seed: int, epoch: int, negative_pool: str = "all"
    ) -> tf.data.Dataset:
        """One epoch of shuffled training batches with one sampled negative per positive.

        Exactly the batches `train_epochs(batch_size, seed, epoch, negative_pool)` yields first; see there.
        """
        epochs = self.train_epochs(batch_size, seed, epoch, negative_pool)
        return epochs.take(self.steps_per_epoch(batch_size))

    def train_epochs(
        self, batch_size: int, seed: int, first_epoch: int = 0, negative_pool: str = "all"
    ) -> tf.data.Dataset:
        """Every epoch from `first_epoch` on, back to back, as one endless pipeline.

        Per epoch, the pairs are streamed from the train TFRecords, shuffled over the full epoch (a
        stateless permutation, equivalent to a shuffle buffer of the dataset's size, seeded from
        (seed, epoch) and independent of TensorFlow's global seed), batched (last partial batch
        kept), given negatives drawn exactly uniformly from the items of `negative_pool` (see
        `sampling.NEGATIVE_POOLS`) the user has no train pair with (seeded from (seed, epoch, batch
        index)), and prefetched. One pipeline for a whole run means nothing is rebuilt or retraced
        between epochs, and prefetching runs across epoch boundaries; take
        `steps_per_epoch(batch_size)` batches per epoch.

        Returns:
            A dataset of {"user", "pos_item", "neg_item"}: int64 [b] each; the same elements for the
            same (seed, epoch), in the same order.

        Raises:
            ValueError: `batch_size` < 1, no train pair, an unknown `negative_pool`, or some user has
                every item of the pool in train (no negative exists).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if self.train.nnz == 0:
            raise ValueError(f"Dataset '{self.name}' has no train pairs to batch.")
        candidates = candidate_items(self.train, negative_pool)
        pool_size = self.n_items if candidates is None else candidates.size
        saturated = np.flatnonzero(np.diff(self.train.indptr) >= pool_size)
        if saturated.size:
            raise ValueError(
                f"User {saturated[0]} has all {pool_size} items of the '{negative_pool}' negative pool "
                "in train, so no negative can be sampled for it; remove such users from the dataset."
            )
        n_pairs = self.train.nnz
        sampler = self._negative_sampler(negative_pool, candidates)
        run_seed = tf.constant(derive_seed(seed))
        fold_in = tf.random.experimental.stateless_fold_in

        @tf.autograph.experimental.do_not_convert
        def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
            shuffle_seed = fold_in(fold_in(run_seed, epoch), _SHUFFLE)
            negative_seed = fold_in(fold_in(run_seed, epoch), _NEGATIVES)

            def shuffle(pairs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(n_pairs, dtype=tf.int64), shuffle_seed
                )
                return {key: tf.gather(value, order) for key, value in pairs.items()}

            def add_negatives(index: tf.Tensor, pairs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
                negatives = sampler(pairs["user"], fold_in(negative_seed, index))
                return {"user": pairs["user"], "pos_item": pairs["item"], "neg_item": negatives}

            return (
                self._train_pair_blocks()
                .rebatch(n_pairs)  # the whole epoch as one element, to permute it at once
                .map(shuffle)
                .rebatch(batch_size)
                .enumerate()
                .map(add_negatives, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            )

        epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
        return epochs.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)

    def _negative_sampler(
        self, pool: str, candidates: np.ndarray | None
    ) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
        """`sample_negatives` over this train set and pool, traced once and reused by every epoch's pipeline."""
        if self._sampler is None or self._sampler[0] is not self.train or self._sampler[1] != pool:
            keys = tf.constant(positive_keys(self.train))
            pool_items = None if candidates is None else tf.constant(candidates)
            function = tf.function(
                lambda users, seed: sample_negatives(users, keys, self.n_items, seed, pool_items),
                input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([2], tf.int64)],
                autograph=False,
            )
            self._sampler = (self.train, pool, function)
        return self._sampler[2]

    def _train_pair_blocks(self) -> tf.data.Dataset:
        """The training pairs as {"user", "item"} blocks: from the TFRecords when cached."""
        if self._train_shards:
            return tfrecords.interaction_blocks(self._train_shards)
        users, items = self.train_pairs()
        return tf.data.Dataset.from_tensors({"user": users, "item": items})


def load_dataset(
    name: str | None = None,
    data_dir: str | Path | None = None,
    cache_root: str | Path | None = None,
    require_features: bool = True,
) -> PreparedDataset:
    """Finds, validates, converts (once, cached) and reads back an MMRec-layout dataset.

    A cache that is missing, stale, or fails its checks (see `cache`) is rebuilt from the source files,
    and the reason logged.

    Args:
        name: a registered dataset name (see `registry`), or the `.inter` stem inside `data_dir`.
            Defaults to `DEFAULT_DATASET` ("tiktok").
        data_dir: a dataset folder anywhere; overrides the name lookup.
        cache_root: where cache folders go; defaults to `$MRDIB_CACHE_DIR` or `~/.cache/mrdib_tf`.
        require_features: raise when the dataset has no `<modality>_feat.npy`; pass False to load
            interactions only (ID-only backbones, or benchmarks that add their own features).

    Raises:
        DataValidationError: any problem with the folder or its files, with a message naming the
            file, row or column and what was expected; or a cache that cannot be written, or does not
            read back even when freshly built (naming the file).

    Example:
        >>> data = load_dataset("tiktok")
        >>> data.n_users, data.n_items, sorted(data.features)
        (9308, 6710, ['audio', 'image'])
    """
    location = resolve_dataset(name, data_dir)
    files = source_files(location)
    if require_features:
        check_features_present(location)
    cache_dir = cache.cache_dir_for(location, cache_root)
    build, damage = _guarded(cache_dir, lambda: cache.open_current(cache_dir))
    sources = cache.fingerprint(files, build.manifest.get("sources", {}) if build else {})
    if build is not None:
        stale = cache.stale_reason(build, sources)
        if stale is None:
            try:
                dataset = _read_back(build)
            except cache.CacheCorruption as error:
                damage = str(error)
            else:
                if build.manifest["sources"] != sources:
                    _guarded(cache_dir, lambda: cache.refresh_sources(build, sources))
                return _logged(dataset)
        else:
            logger.info("%s: rebuilding the dataset cache: %s.", location.name, stale)
        build.lease.close()
    if damage is not None:
        logger.warning("%s: the dataset cache is damaged, rebuilding it: %s.", location.name, damage)
    source = read_mmrec_dataset(location)
    fresh = _guarded(cache_dir, lambda: cache.build(cache_dir, source, sources, location))
    try:
        return _logged(_read_back(fresh))
    except cache.CacheCorruption as error:
        raise DataValidationError(
            f"{error}: the cache was just rebuilt from {location.folder} and does not read back; "
            f"check the disk holding {cache_dir}, or set ${cache.CACHE_DIR_ENV} to another folder."
        ) from error


def _guarded(cache_dir: Path, operation: Callable[[], _T]) -> _T:
    """`operation()`, with a failure to read or write the cache folder turned into DataValidationError."""
    try:
        return operation()
    except (OSError, tf.errors.OpError) as error:
        raise DataValidationError(
            f"{cache_dir}: cannot read or write the dataset cache ({error}); expected a writable folder "
            f"with room for it (set ${cache.CACHE_DIR_ENV} to choose another)."
        ) from error


def _logged(dataset: PreparedDataset) -> PreparedDataset:
    """Logs the cold-start users the conversion dropped, as MMRec does; returns `dataset`."""
    dropped = dataset.manifest["dropped_cold_start"]
    if dropped["users"]:
        logger.warning(
            "%s: dropped %d cold-start users (no train row): %d valid and %d test rows, as MMRec does.",
            dataset.name,
            dropped["users"],
            dropped["valid_rows"],
            dropped["test_rows"],
        )
    return dataset


def _read_back(build: cache.Build) -> PreparedDataset:
    """Builds the in-memory dataset from a cache build, checking its files against its manifest.

    Raises:
        cache.CacheCorruption: a shard is missing, of another size, unreadable or holds other counts.
    """
    manifest = build.manifest
    n_users, n_items = manifest["n_users"], manifest["n_items"]
    cache.check_shard_sizes(build)
    splits = {
        split: UserItems.from_pairs(*cache.read_split(build, split), n_users, n_items)
        for split in manifest["splits"]
    }
    dataset = PreparedDataset(
        name=manifest["dataset"],
        n_users=n_users,
        n_items=n_items,
        features=cache.read_features(build),
        train=splits["train"],
        valid=splits["valid"],
        test=splits["test"],
        cache_dir=build.folder,
        manifest=manifest,
    )
    train_shards = manifest["splits"]["train"]["shards"]
    dataset._train_shards = tuple(build.folder / shard["name"] for shard in train_shards)
    dataset._lease = build.lease
    return dataset
