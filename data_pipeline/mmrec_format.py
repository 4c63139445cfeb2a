"""A whole MMRec dataset: `<name>.inter[.gz]` plus `<modality>_feat.npy` files, validated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_pipeline.errors import DataValidationError
from data_pipeline.feature_files import find_feature_files, read_feature_file
from data_pipeline.inter_file import (
    INTER_SUFFIXES,
    ITEM_COLUMN,
    SPLIT_LABELS,
    USER_COLUMN,
    InterTable,
    read_inter_file,
)
from data_pipeline.registry import DatasetLocation, missing_features_message

SPLITS = tuple(SPLIT_LABELS)


@dataclass(frozen=True)
class SourceDataset:
    """A validated MMRec folder held in memory.

    Attributes:
        name: dataset name (the interaction file's name without `.inter[.gz]`).
        n_users: max(userID) + 1 over all rows, dropped ones included.
        n_items: max(itemID) + 1 over all rows.
        splits: "train"/"valid"/"test" -> (users, items) int64 arrays, in file order, without the
            valid/test rows of users that have no train row (MMRec drops those cold-start users).
        source_rows: rows per split in the file, before that drop.
        dropped_cold_start: {"users": ..., "valid_rows": ..., "test_rows": ...} that were dropped.
        features: modality -> float32 [n_items, dim], sorted by modality.
    """

    name: str
    n_users: int
    n_items: int
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    source_rows: dict[str, int]
    dropped_cold_start: dict[str, int]
    features: dict[str, np.ndarray]


def check_inter_present(location: DatasetLocation) -> Path:
    """The dataset's interaction file; raises if its folder lacks one, naming the ones it holds."""
    path = location.inter_file
    if path is None:
        folder, name = location.folder, location.name
        found = sorted(p.name for suffix in INTER_SUFFIXES for p in folder.glob(f"*{suffix}")) or "none"
        raise DataValidationError(
            f"{folder / (name + INTER_SUFFIXES[0])}: interaction file not found (interaction files in "
            f"{folder}: {found}); expected a tab-separated file with header userID, itemID, x_label "
            f"(or it gzipped, {name}{INTER_SUFFIXES[1]})."
        )
    return path


def source_files(location: DatasetLocation) -> list[Path]:
    """The files a dataset is built from: its interaction file, then its feature files by modality."""
    return [check_inter_present(location), *find_feature_files(location.feature_folder).values()]


def check_features_present(location: DatasetLocation) -> None:
    """Raises the actionable missing-features error if the dataset has no `*_feat.npy` file."""
    if not find_feature_files(location.feature_folder):
        raise DataValidationError(missing_features_message(location))


def read_mmrec_dataset(location: DatasetLocation) -> SourceDataset:
    """Reads and validates every file of an MMRec dataset.

    Feature files are optional here (interaction-only datasets are valid); callers that need them
    use `check_features_present` first.

    Raises:
        DataValidationError: for any problem in the `.inter` or feature files (see their readers),
            an ID not below the number of rows, no train row, or a (userID, itemID) pair listed twice.
    """
    table = read_inter_file(check_inter_present(location))
    _check_id_bounds(table)
    train = table.labels == SPLIT_LABELS["train"]
    if not train.any():
        raise DataValidationError(
            f"{table.path}: no train rows (x_label 0) among {table.labels.size} rows; expected most "
            "rows to be train rows (MMRec splits about 8:1:1)."
        )
    _check_unique_pairs(table)
    n_users, n_items = int(table.users.max()) + 1, int(table.items.max()) + 1
    has_train = np.zeros(n_users, dtype=bool)
    has_train[table.users[train]] = True
    cold = ~has_train[table.users]  # only valid/test rows can be cold
    splits, source_rows = {}, {}
    for split, label in SPLIT_LABELS.items():
        rows = table.labels == label
        source_rows[split] = int(rows.sum())
        rows &= ~cold
        splits[split] = (table.users[rows], table.items[rows])
    dropped = {
        "users": int(np.unique(table.users[cold]).size),
        "valid_rows": source_rows["valid"] - splits["valid"][0].size,
        "test_rows": source_rows["test"] - splits["test"][0].size,
    }
    features = {
        modality: read_feature_file(path, n_items)
        for modality, path in find_feature_files(location.feature_folder).items()
    }
    return SourceDataset(location.name, n_users, n_items, splits, source_rows, dropped, features)


def _check_id_bounds(table: InterTable) -> None:
    """Rejects an ID not below the file's row count, before anything is sized by the IDs.

    MMRec IDs are 0-based and contiguous and every ID has a row, so max(ID) < rows in any valid file
    (5-core data has at least 5 rows per ID). A larger ID means IDs that were never re-indexed, or a
    typo; it would size the user or item tables (userID 10**12 asked numpy for 931 GiB).
    """
    rows = table.labels.size
    for column, values in ((USER_COLUMN, table.users), (ITEM_COLUMN, table.items)):
        bad = np.flatnonzero(values >= rows)
        if bad.size:
            raise DataValidationError(
                f"{table.path}, line {table.lines[bad[0]]}, column '{column}': got {values[bad[0]]}, "
                f"expected an ID below {rows}, the file's number of data rows: MMRec IDs are 0-based "
                f"and contiguous with at least one row each, so max({column}) + 1 <= rows. "
                "Re-index the IDs to 0..n-1."
            )


def _check_unique_pairs(table: InterTable) -> None:
    """Rejects a (user, item) pair listed twice: it would be trained on twice or leak into test."""
    keys = table.users * (int(table.items.max()) + 1) + table.items
    order = np.argsort(keys, kind="stable")
    repeats = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if repeats.size:
        first, second = table.lines[order[repeats[0]]], table.lines[order[repeats[0] + 1]]
        raise DataValidationError(
            f"{table.path}, lines {first} and {second}: the pair (userID {table.users[order[repeats[0]]]}, "
            f"itemID {table.items[order[repeats[0]]]}) appears twice; expected each pair once."
        )
