"""Dataset registry: turns `--dataset NAME` (or an explicit folder) into an MMRec dataset folder.

A name is looked up as `data/NAME/` under the project root (the folder holding `data_pipeline/`),
then as `$MRDIB_DATA_DIR/NAME/`. Any other folder is passed as `data_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

from data_pipeline.errors import DataValidationError

DEFAULT_DATASET = "tiktok"
DATA_DIR_ENV = "MRDIB_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def search_roots() -> list[Path]:
    """Where dataset names are looked up, in order."""
    roots = [PROJECT_ROOT / "data"]
    if os.environ.get(DATA_DIR_ENV):
        roots.append(Path(os.environ[DATA_DIR_ENV]))
    return roots


def available_datasets(root: Path) -> list[str]:
    """Names of the folders in `root` that hold a `<folder>/<folder>.inter` file."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / f"{p.name}.inter").is_file())


def resolve_dataset(name: str | None = None, data_dir: str | Path | None = None) -> tuple[str, Path]:
    """The dataset's name and folder.

    Args:
        name: dataset name; the `.inter` file is `<name>.inter`. Defaults to the folder name of
            `data_dir`, or to `DEFAULT_DATASET` when neither is given.
        data_dir: a dataset folder anywhere; skips the name lookup.

    Raises:
        DataValidationError: `data_dir` is not a folder, or no searched place has a folder `name`
            (the message lists the places searched and the datasets found there).
    """
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DataValidationError(f"{folder}: not a folder; expected an MMRec dataset folder.")
        return name or folder.resolve().name, folder
    name = name or DEFAULT_DATASET
    roots = search_roots()
    for root in roots:
        if (root / name).is_dir():
            return name, root / name
    found = "; ".join(f"{root}: {', '.join(available_datasets(root)) or 'none'}" for root in roots)
    raise DataValidationError(
        f"Unknown dataset '{name}': no folder '{name}' in {', '.join(str(r) for r in roots)}. "
        f"Datasets found: {found}. Put the MMRec-layout folder in one of those places "
        f"(set ${DATA_DIR_ENV} to add one) or pass its path as data_dir."
    )
