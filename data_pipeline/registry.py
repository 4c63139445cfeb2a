"""Dataset registry: turns `--dataset NAME` (or an explicit folder) into the files of an MMRec dataset.

A name is looked up as `data/NAME/` under the project root (the folder holding `data_pipeline/`),
then as `$MRDIB_DATA_DIR/NAME/`. Any other folder is passed as `data_dir`.

The project ships the interaction files of MMRec's three Amazon datasets (baby, sports, clothing) but
not their feature files, so a name's files may come from two places: the interactions from
`data/NAME/` and the features from `$MRDIB_DATA_DIR/NAME/`, where a user puts MMRec's download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.errors import DataValidationError
from data_pipeline.feature_files import FEATURE_SUFFIX, find_feature_files
from data_pipeline.inter_file import find_inter_file

DEFAULT_DATASET = "tiktok"
DATA_DIR_ENV = "MRDIB_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Where MMRec publishes its preprocessed datasets: its README's "Data" section says
#: "Download from Google Drive: [Baby/Sports/Elec](<this link>)" and "The data already contains text
#: and image features extracted from Sentence-Transformers and CNN."
MMREC_DATA_LINK = "https://drive.google.com/drive/folders/13cBy1EA_saTUuXxVllKgtfci2A09jyaG?usp=sharing"


@dataclass(frozen=True)
class MMRecDataset:
    """A dataset of the MMRec benchmark whose feature files users download from MMRec.

    Attributes:
        n_items: rows each feature file must have (max(itemID) + 1 of the shipped `.inter` file).
        feature_dims: feature file modality -> its columns, as MMRec extracts them.
    """

    n_items: int
    feature_dims: dict[str, int]


_AMAZON_FEATURES = {"image": 4096, "text": 384}  # VGG/CNN image features, all-MiniLM-L6-v2 text
MMREC_DATASETS = {
    "baby": MMRecDataset(7050, _AMAZON_FEATURES),
    "sports": MMRecDataset(18357, _AMAZON_FEATURES),
    "clothing": MMRecDataset(23033, _AMAZON_FEATURES),
}


@dataclass(frozen=True)
class DatasetLocation:
    """Where a dataset's files are.

    Attributes:
        name: dataset name; its interaction file is `<name>.inter` or `<name>.inter.gz`.
        folder: the folder holding (or expected to hold) the interaction file.
        feature_folder: the folder whose `<modality>_feat.npy` files are the dataset's features:
            `folder` itself unless a name lookup found them only in another searched folder.
        searched: every folder this dataset may live in: `data_dir` alone, or `<root>/<name>` for
            each search root.
        by_name: found by name lookup (so `$MRDIB_DATA_DIR/<name>/` is also a place for its files).
    """

    name: str
    folder: Path
    feature_folder: Path
    searched: tuple[Path, ...]
    by_name: bool

    @property
    def inter_file(self) -> Path | None:
        """The interaction file, or None when `folder` has none."""
        return find_inter_file(self.folder, self.name)


def search_roots() -> list[Path]:
    """Where dataset names are looked up, in order."""
    roots = [PROJECT_ROOT / "data"]
    if os.environ.get(DATA_DIR_ENV):
        roots.append(Path(os.environ[DATA_DIR_ENV]))
    return roots


def available_datasets(root: Path) -> list[str]:
    """Names of the folders in `root` that hold a `<folder>/<folder>.inter[.gz]` file."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and find_inter_file(p, p.name))


def resolve_dataset(name: str | None = None, data_dir: str | Path | None = None) -> DatasetLocation:
    """The dataset's name and the folders of its files.

    Args:
        name: dataset name. Defaults to the folder name of `data_dir`, or to `DEFAULT_DATASET` when
            neither is given.
        data_dir: a dataset folder anywhere; skips the name lookup, and features are read from it only.

    For a name, the first searched folder holding both an interaction file and feature files is the
    dataset; failing that, the interactions come from the first folder holding an interaction file
    and the features from the first holding feature files (so features are never paired with another
    folder's own interaction file).

    Raises:
        DataValidationError: `data_dir` is not a folder, or no searched place has a folder `name`
            (the message lists the places searched and the datasets found there).
    """
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DataValidationError(f"{folder}: not a folder; expected an MMRec dataset folder.")
        name = name or folder.resolve().name
        return DatasetLocation(name, folder, folder, (folder,), by_name=False)
    name = name or DEFAULT_DATASET
    roots = search_roots()
    searched = tuple(root / name for root in roots)
    folders = [folder for folder in searched if folder.is_dir()]
    if not folders:
        found = "; ".join(f"{root}: {', '.join(available_datasets(root)) or 'none'}" for root in roots)
        raise DataValidationError(
            f"Unknown dataset '{name}': no folder '{name}' in {', '.join(str(r) for r in roots)}. "
            f"Datasets found: {found}. Put the MMRec-layout folder in one of those places "
            f"(set ${DATA_DIR_ENV} to add one) or pass its path as data_dir."
        )
    with_inter = [f for f in folders if find_inter_file(f, name)]
    with_features = [f for f in folders if find_feature_files(f)]
    complete = [f for f in with_inter if f in with_features]
    if complete:
        return DatasetLocation(name, complete[0], complete[0], searched, by_name=True)
    folder = (with_inter or folders)[0]
    return DatasetLocation(name, folder, (with_features or [folder])[0], searched, by_name=True)


def missing_features_message(location: DatasetLocation) -> str:
    """Which feature files the dataset needs, where MMRec publishes them and where to put them."""
    searched = " or ".join(f"{folder}/" for folder in location.searched)
    places = [f"{folder}/" for folder in location.searched]
    if location.by_name and not os.environ.get(DATA_DIR_ENV):
        places.append(f"${DATA_DIR_ENV}/{location.name}/")
    known = MMREC_DATASETS.get(location.name)
    if known is None:
        needed = (
            f"one <modality>{FEATURE_SUFFIX} per modality: a float16/32/64 array [n_items, dim], row i = "
            "itemID i, n_items = max(itemID) + 1 of the interaction file (MMRec's are image_feat.npy, "
            "4096-d CNN image features, and text_feat.npy, 384-d all-MiniLM-L6-v2 sentence embeddings)"
        )
    else:
        needed = " and ".join(
            f"{modality}{FEATURE_SUFFIX} (float32 [{known.n_items}, {dim}], row i = itemID i)"
            for modality, dim in known.feature_dims.items()
        )
    return (
        f"dataset '{location.name}': no feature files (<modality>{FEATURE_SUFFIX}) in {searched}. "
        f"A multimodal backbone needs {needed}. MMRec publishes its preprocessed datasets with these "
        f'features: its README says "Download from Google Drive: Baby/Sports/Elec", {MMREC_DATA_LINK}. '
        f"Put the files in {' or '.join(places)}. ID-only backbones (lightgcn) train without features."
    )
