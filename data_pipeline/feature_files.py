"""Item feature files of the MMRec layout: `<modality>_feat.npy`, row i = item i."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_pipeline.errors import DataValidationError

FEATURE_SUFFIX = "_feat.npy"


def find_feature_files(folder: Path) -> dict[str, Path]:
    """Every `<modality>_feat.npy` in `folder`, keyed by modality name, sorted by name."""
    found = {
        path.name[: -len(FEATURE_SUFFIX)]: path
        for path in folder.glob(f"*{FEATURE_SUFFIX}")
        if path.is_file()
    }
    if "" in found:
        raise DataValidationError(
            f"{found['']}: a feature file needs a modality name before '{FEATURE_SUFFIX}', "
            "e.g. image_feat.npy."
        )
    return dict(sorted(found.items()))


def read_feature_file(path: Path, n_items: int) -> np.ndarray:
    """Loads one feature matrix as float32 [n_items, dim] and checks it.

    Raises:
        DataValidationError: unreadable file, not a 2-D float array, a row count other than
            `n_items`, or a NaN/Inf value (the first offending row is named).
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataValidationError(f"{path}: not a readable .npy array ({error}).") from error
    if array.ndim != 2 or array.dtype.kind != "f":
        raise DataValidationError(
            f"{path}: got a {array.ndim}-D {array.dtype} array, expected a 2-D float16/32/64 array "
            "[n_items, dim] with row i holding the features of itemID i."
        )
    if array.shape[0] != n_items:
        raise DataValidationError(
            f"{path}: {array.shape[0]} rows, expected {n_items} (one per itemID, n_items = "
            "max(itemID) + 1 over the .inter file)."
        )
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported below
        features = array.astype(np.float32, copy=False)
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad_rows.size:
        raise DataValidationError(
            f"{path}, row {bad_rows[0]} (itemID {bad_rows[0]}, 0-based): NaN or infinite value "
            f"(checked as float32; {bad_rows.size} such rows in all); expected finite features."
        )
    return features

