"""Corrupted copies of an MMRec dataset: a positive control for a noise filter such as MRdIB.

Each transform damages one modality's feature matrix in a way whose size is known, so that a model
that filters noise has something measurable to recover:

- `nuisance_dims`: K appended Gaussian columns at the modality's mean column spread (pure noise);
- `snr`: Gaussian noise added to every column so that signal variance / noise variance is X;
- `shuffle_rows`: a fraction P of items take another chosen item's row (a cycle over them, so none
  keeps its own);
- `missing_rows`: a fraction P of rows set to the column means, as Amazon's data does for items
  without an image.

and one transform thins the interactions: `keep_train`, each user keeps a fraction P (at least one) of
its training rows, validation and test unchanged. Per modality the transforms apply in that order
(row transforms, then noise on the original columns, then the appended columns). Every draw comes from
its own stream, derived from (seed, transform, modality), so adding one transform changes no other.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data_pipeline.cache import sha256_of
from data_pipeline.feature_files import FEATURE_SUFFIX, find_feature_files, read_feature_file
from data_pipeline.inter_file import ITEM_COLUMN, LABEL_COLUMN, SPLIT_LABELS, USER_COLUMN, read_inter_file
from data_pipeline.mmrec_format import check_inter_present
from data_pipeline.registry import resolve_dataset

#: The file a corrupted dataset records its recipe, its source's checksums and what was measured in.
RECIPE_FILE = "corruption.json"
#: Per-modality transforms, in the order they apply.
FEATURE_TRANSFORMS = ("shuffle_rows", "missing_rows", "snr", "nuisance_dims")
_STREAMS = {name: index for index, name in enumerate((*FEATURE_TRANSFORMS, "keep_train"))}


@dataclass(frozen=True)
class CorruptionRecipe:
    """What to do to a dataset. Each mapping is modality -> amount; an absent modality is untouched.

    Attributes:
        nuisance_dims: columns of pure noise to append (an integer >= 1).
        snr: signal variance over added noise variance, per column (> 0; inf adds nothing).
        shuffle_rows: fraction of items whose row is taken from another item, in [0, 1].
        missing_rows: fraction of rows set to the column means, in [0, 1].
        keep_train: fraction of each user's training rows kept, in (0, 1]; None keeps them all.
        seed: fixes every draw.
    """

    nuisance_dims: Mapping[str, int] = field(default_factory=dict)
    snr: Mapping[str, float] = field(default_factory=dict)
    shuffle_rows: Mapping[str, float] = field(default_factory=dict)
    missing_rows: Mapping[str, float] = field(default_factory=dict)
    keep_train: float | None = None
    seed: int = 0

    def check(self, modalities: tuple[str, ...]) -> None:
        """Raises a one-line ValueError naming the setting, modality and value at fault."""
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed: expected an integer >= 0, got {self.seed!r}.")
        for name in FEATURE_TRANSFORMS:
            for modality, amount in getattr(self, name).items():
                flag = f"--{name.replace('_', '-')} {modality}={amount}"
                if modality not in modalities:
                    raise ValueError(f"{flag}: the dataset has no modality '{modality}'; it has {list(modalities)}.")
                if name == "nuisance_dims" and not (isinstance(amount, int) and amount >= 1):
                    raise ValueError(f"{flag}: expected an integer number of columns >= 1.")
                if name == "snr" and not (amount > 0):
                    raise ValueError(f"{flag}: expected a signal-to-noise ratio > 0 (inf adds no noise).")
                if name in ("shuffle_rows", "missing_rows") and not 0 <= amount <= 1:
                    raise ValueError(f"{flag}: expected a fraction of rows in [0, 1].")
        if self.keep_train is not None and not 0 < self.keep_train <= 1:
            raise ValueError(f"--keep-train {self.keep_train}: expected a fraction of training rows in (0, 1].")

    def to_json(self) -> dict:
        return {**asdict(self), **{name: dict(getattr(self, name)) for name in FEATURE_TRANSFORMS}}


def _stream(seed: int, transform: str, modality: str = "") -> np.random.Generator:
    """The draws of one transform on one modality, independent of every other transform's."""
    entropy = [seed, _STREAMS[transform], *modality.encode("utf-8")]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def append_nuisance_columns(features: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """`features` with k columns of N(mean column mean, (mean column spread)^2) appended."""
    spread = float(features.std(axis=0, dtype=np.float64).mean())
    center = float(features.mean(axis=0, dtype=np.float64).mean())
    noise = rng.normal(center, spread, size=(features.shape[0], k))
    return np.concatenate([features, noise.astype(features.dtype)], axis=1)


def add_noise_at_snr(features: np.ndarray, snr: float, rng: np.random.Generator) -> np.ndarray:
    """`features` plus Gaussian noise of variance var(column) / snr in each column."""
    if math.isinf(snr):
        return features.copy()
    scale = features.std(axis=0, dtype=np.float64) / math.sqrt(snr)
    return (features + rng.normal(size=features.shape) * scale).astype(features.dtype)


def chosen_rows(n_rows: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """round(fraction x n_rows) distinct rows, in random order."""
    return rng.permutation(n_rows)[: round(fraction * n_rows)]


def shuffle_rows(features: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A fraction of items take the next chosen item's row, in a cycle over them: none keeps its own."""
    rows = chosen_rows(features.shape[0], fraction, rng)
    out = features.copy()
    if rows.size >= 2:
        out[rows] = features[np.roll(rows, -1)]
    return out


def blank_rows(features: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A fraction of rows set to the column means (of the whole matrix, before the change)."""
    rows = chosen_rows(features.shape[0], fraction, rng)
    out = features.copy()
    out[rows] = features.mean(axis=0, dtype=np.float64).astype(features.dtype)
    return out


def thin_training_rows(users: np.ndarray, items: np.ndarray, labels: np.ndarray, keep: float,
                       rng: np.random.Generator) -> np.ndarray:
    """A boolean mask over rows: each user keeps max(1, round(keep x its train rows)); other rows all kept.

    The catalogue is sized by the highest itemID (MMRec's rule), so if that item would lose every row,
    one of its training rows stays, and the feature files keep their row count.
    """
    mask = np.ones(users.size, dtype=bool)
    train = np.flatnonzero(labels == SPLIT_LABELS["train"])
    order = train[np.lexsort((rng.random(train.size), users[train]))]  # by user, random within a user
    starts = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1]])
    counts = np.diff(np.r_[starts, order.size])
    position = np.arange(order.size) - np.repeat(starts, counts)
    kept = np.maximum(1, np.round(keep * counts).astype(np.int64))
    mask[order[position >= np.repeat(kept, counts)]] = False
    last_item = items == items.max()
    if not mask[last_item].any():
        mask[np.flatnonzero(last_item)[0]] = True
    return mask


def corrupt_features(features: np.ndarray, modality: str, recipe: CorruptionRecipe) -> tuple[np.ndarray, dict]:
    """One modality's matrix after its transforms, and what was measured of each."""
    measured: dict = {}
    out = features
    if modality in recipe.shuffle_rows:
        out = shuffle_rows(out, recipe.shuffle_rows[modality], _stream(recipe.seed, "shuffle_rows", modality))
        measured["rows_moved"] = int((out != features).any(axis=1).sum())
    if modality in recipe.missing_rows:
        before = out
        out = blank_rows(out, recipe.missing_rows[modality], _stream(recipe.seed, "missing_rows", modality))
        measured["rows_blanked"] = int((out != before).any(axis=1).sum())
    if modality in recipe.snr:
        signal = out
        out = add_noise_at_snr(out, recipe.snr[modality], _stream(recipe.seed, "snr", modality))
        noise_variance = (out.astype(np.float64) - signal).var(axis=0)
        varying = noise_variance > 0  # a constant column gets no noise and has no ratio
        measured["snr_mean_over_columns"] = (
            float(np.mean(signal.var(axis=0, dtype=np.float64)[varying] / noise_variance[varying]))
            if varying.any() else None)
    if modality in recipe.nuisance_dims:
        width = out.shape[1]
        out = append_nuisance_columns(out, recipe.nuisance_dims[modality], _stream(recipe.seed, "nuisance_dims", modality))
        measured["nuisance_columns"] = [width, out.shape[1]]
    return out, measured


def corrupt_dataset(source: str | Path, destination: str | Path, recipe: CorruptionRecipe) -> dict:
    """Writes `destination`: `source` (an MMRec folder) with `recipe` applied, and its `corruption.json`.

    The dataset takes the destination folder's name (`<name>.inter`, `<modality>_feat.npy`), so
    `--data-dir DESTINATION` trains on it as on any dataset. Everything is checked before anything is
    written, and the folder appears whole or not at all (built beside it, then renamed).

    Returns:
        The recipe record written to `corruption.json`.
    """
    source, destination = Path(source), Path(destination)
    location = resolve_dataset(data_dir=source)
    inter_path = check_inter_present(location)
    if destination.exists():
        raise ValueError(f"--out {destination}: already exists; a corrupted dataset is written to a new folder.")
    if source.resolve() in (destination.resolve(), *destination.resolve().parents):
        raise ValueError(f"--out {destination}: must lie outside the source folder {source}.")
    table = read_inter_file(inter_path)
    n_items = int(table.items.max()) + 1
    feature_paths = find_feature_files(location.feature_folder)
    recipe.check(tuple(feature_paths))
    features = {m: read_feature_file(path, n_items) for m, path in feature_paths.items()}

    keep = np.ones(table.users.size, dtype=bool)
    if recipe.keep_train is not None:
        keep = thin_training_rows(table.users, table.items, table.labels, recipe.keep_train, _stream(recipe.seed, "keep_train"))
    record = {
        "source": str(source.resolve()),
        "source_sha256": {p.name: sha256_of(p) for p in [inter_path, *feature_paths.values()]},
        "recipe": recipe.to_json(),
        "order": list(FEATURE_TRANSFORMS),
        "measured": {"train_rows": {"before": int((table.labels == SPLIT_LABELS["train"]).sum()),
                                    "after": int((table.labels[keep] == SPLIT_LABELS["train"]).sum())}},
    }
    name = destination.resolve().name
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=destination.parent))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the dataset is for everyone who may read DST
    try:
        for modality, matrix in features.items():
            corrupted, measured = corrupt_features(matrix, modality, recipe)
            np.save(staging / f"{modality}{FEATURE_SUFFIX}", corrupted.astype(np.float32))
            record["measured"][modality] = measured
        rows = np.stack([table.users[keep], table.items[keep], table.labels[keep]], axis=1)
        header = f"{USER_COLUMN}\t{ITEM_COLUMN}\t{LABEL_COLUMN}"
        np.savetxt(staging / f"{name}.inter", rows, fmt="%d", delimiter="\t", header=header, comments="")
        (staging / RECIPE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if destination.exists():  # appeared while this was written: never replace it
            raise ValueError(f"--out {destination}: appeared while the corrupted dataset was written; not replaced.")
        os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


def parse_amounts(pairs: list[str] | None, flag: str, kind: type) -> dict:
    """`["image=512", "audio=3"]` -> {"image": 512, "audio": 3}; a malformed pair is a one-line error."""
    amounts: dict = {}
    for pair in pairs or []:
        modality, sep, text = pair.partition("=")
        if modality in amounts:
            raise ValueError(f"{flag}: modality '{modality}' given twice.")
        try:
            if not sep or not modality:
                raise ValueError
            amounts[modality] = kind(text)
        except ValueError:
            raise ValueError(f"{flag} {pair}: expected MODALITY={kind.__name__.upper()}, e.g. image=2.") from None
    return amounts
