"""Item feature files of the MMRec layout: `<modality>_feat.npy`, row i = item i."""

from __future__ import annotations

import math
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

    The `.npy` header is checked before any data is read, so a file of the wrong shape, or one cut
    short by an interrupted copy, is reported without allocating what its header declares.

    Raises:
        DataValidationError: an empty or unreadable file, not a 2-D float array, a row count other
            than `n_items`, fewer bytes than the header declares, or a NaN/Inf value (the first
            offending row is named).
    """
    shape, dtype, data_bytes = _read_header(path)
    if len(shape) != 2 or dtype.kind != "f":
        raise DataValidationError(
            f"{path}: got a {len(shape)}-D {dtype} array, expected a 2-D float16/32/64 array "
            "[n_items, dim] with row i holding the features of itemID i."
        )
    if shape[0] != n_items:
        raise DataValidationError(
            f"{path}: {shape[0]} rows, expected {n_items} (one per itemID, n_items = "
            "max(itemID) + 1 over the .inter file)."
        )
    size = path.stat().st_size
    if size < data_bytes:
        raise DataValidationError(
            f"{path}: truncated: {size} bytes, but its header declares a {dtype} array of shape "
            f"{shape}, which takes {data_bytes} bytes; expected the complete file (copy it again)."
        )
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataValidationError(f"{path}: not a readable .npy array ({error}).") from error
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported below
        features = array.astype(np.float32, copy=False)
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad_rows.size:
        raise DataValidationError(
            f"{path}, row {bad_rows[0]} (itemID {bad_rows[0]}, 0-based): NaN or infinite value "
            f"(checked as float32; {bad_rows.size} such rows in all); expected finite features."
        )
    return features


def _read_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and total size in bytes (header included) that the `.npy` file's header declares."""
    if path.stat().st_size == 0:
        raise DataValidationError(
            f"{path}: the file is empty (0 bytes); expected a .npy array [n_items, dim]."
        )
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with path.open("rb") as stream:
            version = np.lib.format.read_magic(stream)
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = readers[version](stream)
            offset = stream.tell()
    except (OSError, ValueError) as error:
        raise DataValidationError(
            f"{path}: not a readable .npy file ({error}); expected an array saved with numpy.save."
        ) from error
    return shape, dtype, offset + math.prod(shape) * dtype.itemsize
