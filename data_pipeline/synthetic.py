"""Synthetic MMRec datasets whose information structure is known, for testing MRdIB's claims.

Each item has latent factors of four kinds, mapped to two modalities (A, B = `modalities`):

- unique: `unique_A` is seen only by A's features, `unique_B` only by B's;
- redundant: `redundant` is seen by both;
- synergistic: A sees `synergy_A`, B sees `synergy_B`, and users care about their product
  `synergistic = synergy_A * synergy_B`, which neither modality predicts alone (given one factor,
  the product has mean zero whatever its value);
- noise: `noise_dims` feature columns per modality of pure noise, unrelated to anything.

A modality's signal columns are a random linear mix of the factors it sees (`signal_dims` columns,
so they are recoverable by least squares but not readable off single columns); its noise columns
are shuffled in among them. Users score items by `weights_u . [unique_A, unique_B, redundant,
synergistic]` with standard normal weights, and each user's interactions are sampled without
replacement from softmax(score / temperature) (Gumbel top-k), then split about 8:1:1 with at least
one valid and one test row. Items that nobody interacts with are dropped (ids stay contiguous).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.feature_files import FEATURE_SUFFIX

STRUCTURE_FILE = "synthetic_structure.json"
_USER_CHUNK = 1024  # users scored at once: bounds memory to chunk x n_items floats


@dataclass(frozen=True)
class SyntheticStructure:
    """The ground truth behind a synthetic dataset.

    Attributes:
        modalities: the two modality names (A, B).
        factors: name -> float64 [n_items, k] item factors: "unique_<A>", "unique_<B>",
            "redundant", "synergy_<A>", "synergy_<B>" and "synergistic" (their product).
        predictive: the factor names users score by, in the column order of `user_weights`.
        user_weights: float64 [n_users, total k of `predictive`] preference weights.
        feature_columns: modality -> {"signal": [...], "noise": [...]} column indices.
        description: the JSON-able summary written to `synthetic_structure.json`.
    """

    modalities: tuple[str, str]
    factors: dict[str, np.ndarray]
    predictive: tuple[str, ...]
    user_weights: np.ndarray
    feature_columns: dict[str, dict[str, list[int]]]
    description: dict[str, Any]

    def scores(self) -> np.ndarray:
        """True preference scores, float64 [n_users, n_items] (before the softmax temperature)."""
        return self.user_weights @ _preference_matrix(self.factors, self.predictive).T


def _preference_matrix(factors: dict[str, np.ndarray], predictive: tuple[str, ...]) -> np.ndarray:
    """Items' predictive factors side by side, scaled so that scores have unit variance."""
    matrix = np.concatenate([factors[name] for name in predictive], axis=1)
    return matrix / np.sqrt(matrix.shape[1])


def write_synthetic_dataset(
    folder: str | Path,
    n_users: int = 2000,
    n_items: int = 1000,
    *,
    name: str | None = None,
    modalities: tuple[str, str] = ("image", "text"),
    n_unique: int = 4,
    n_redundant: int = 4,
    n_synergistic: int = 2,
    signal_dims: int = 32,
    noise_dims: int = 32,
    interactions_per_user: int = 20,
    temperature: float = 0.25,
    seed: int = 0,
) -> SyntheticStructure:
    """Writes an MMRec-layout folder with a known structure and returns that structure.

    Args:
        folder: created if needed; receives `<name>.inter`, `<modality>_feat.npy` for both
            modalities and `synthetic_structure.json`.
        n_users, n_items: requested sizes (items no user picked are dropped, so a few fewer may remain).
        name: dataset name, default the folder's name.
        modalities: names of modality A and B.
        n_unique, n_redundant, n_synergistic: factors of each kind (n_unique per modality).
        signal_dims: mixed signal columns per modality (at least the factors that modality sees).
        noise_dims: pure-noise columns per modality.
        interactions_per_user: mean interactions per user (Poisson, at least 3).
        temperature: softmax temperature of the choice; lower = choices follow scores more closely.
        seed: everything is a function of it.

    Example:
        >>> truth = write_synthetic_dataset("/tmp/syn", n_users=500, n_items=300, noise_dims=256)
        >>> load_dataset(data_dir="/tmp/syn").features["image"].shape[1]  # 32 signal + 256 noise
        288
    """
    folder = Path(folder)
    name = name or folder.resolve().name
    a, b = modalities
    seen = n_unique + n_redundant + n_synergistic
    if signal_dims < seen:
        raise ValueError(f"signal_dims={signal_dims} must be >= the {seen} factors a modality sees.")
    if a == b:
        raise ValueError(f"modalities must be two distinct names, got {modalities}.")
    if n_users < 1 or n_items < 2 * interactions_per_user:
        raise ValueError(
            f"Need n_users >= 1 and n_items >= 2 * interactions_per_user ({2 * interactions_per_user}); "
            f"got n_users={n_users}, n_items={n_items}."
        )
    rng = np.random.default_rng(seed)
    factors = {
        f"unique_{a}": rng.standard_normal((n_items, n_unique)),
        f"unique_{b}": rng.standard_normal((n_items, n_unique)),
        "redundant": rng.standard_normal((n_items, n_redundant)),
        f"synergy_{a}": rng.standard_normal((n_items, n_synergistic)),
        f"synergy_{b}": rng.standard_normal((n_items, n_synergistic)),
    }
    factors["synergistic"] = factors[f"synergy_{a}"] * factors[f"synergy_{b}"]
    predictive = (f"unique_{a}", f"unique_{b}", "redundant", "synergistic")
    weights = rng.standard_normal((n_users, 2 * n_unique + n_redundant + n_synergistic))
    preferences = _preference_matrix(factors, predictive)
    users, items, labels = _sample_interactions(weights, preferences, interactions_per_user, temperature, rng)
    kept, items = np.unique(items, return_inverse=True)  # drop items nobody picked
    factors = {key: value[kept] for key, value in factors.items()}

    seen_by = {m: [f"unique_{m}", "redundant", f"synergy_{m}"] for m in modalities}
    features, columns = {}, {}
    for modality, seen_factors in seen_by.items():
        features[modality], columns[modality] = _mix(
            np.concatenate([factors[f] for f in seen_factors], axis=1), signal_dims, noise_dims, rng
        )
    description = {
        "name": name,
        "seed": seed,
        "n_users": n_users,
        "n_items": int(kept.size),
        "modalities": list(modalities),
        "factor_dims": {key: int(value.shape[1]) for key, value in factors.items()},
        "factors_seen_by": seen_by,
        "synergistic": f"elementwise product of synergy_{a} and synergy_{b}",
        "predictive_factors": list(predictive),
        "feature_columns": columns,
        "interactions_per_user": interactions_per_user,
        "temperature": temperature,
    }
    _write_folder(folder, name, users, items, labels, features, description)
    return SyntheticStructure(modalities, factors, predictive, weights, columns, description)


def _sample_interactions(
    weights: np.ndarray,
    preferences: np.ndarray,
    mean_count: int,
    temperature: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user: Poisson count, Gumbel top-k items by score, random 8:1:1 split (>= 1 valid, test)."""
    n_users, n_items = weights.shape[0], preferences.shape[0]
    counts = np.clip(rng.poisson(mean_count, n_users), 3, n_items // 2)
    top = int(counts.max())
    chosen = np.empty((n_users, top), dtype=np.int64)
    for start in range(0, n_users, _USER_CHUNK):
        chunk = weights[start : start + _USER_CHUNK]
        logits = chunk @ preferences.T / temperature + rng.gumbel(size=(chunk.shape[0], n_items))
        # The `top` best perturbed logits are a softmax sample without replacement (Gumbel top-k);
        # their order does not matter below.
        chosen[start : start + _USER_CHUNK] = np.argpartition(-logits, top - 1, axis=1)[:, :top]
    # Randomly order each user's first `count` choices; position -> split.
    valid_mask = np.arange(top) < counts[:, None]
    order = np.argsort(np.where(valid_mask, rng.random((n_users, top)), np.inf), axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    position = np.broadcast_to(np.arange(top), chosen.shape)
    n_held = np.maximum(1, np.rint(0.1 * counts)).astype(np.int64)[:, None]
    labels = np.where(position < n_held, 1, np.where(position < 2 * n_held, 2, 0))
    users = np.broadcast_to(np.arange(n_users)[:, None], chosen.shape)
    return users[valid_mask], chosen[valid_mask], labels[valid_mask]


def _mix(
    latent: np.ndarray, signal_dims: int, noise_dims: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Unit-variance signal columns (a random mix of `latent`) and noise columns, shuffled together."""
    mixing = rng.standard_normal((latent.shape[1], signal_dims)) / np.sqrt(latent.shape[1])
    stacked = np.concatenate([latent @ mixing, rng.standard_normal((latent.shape[0], noise_dims))], axis=1)
    permutation = rng.permutation(stacked.shape[1])  # column j of the output is stacked[:, permutation[j]]
    columns = {
        "signal": sorted(np.flatnonzero(permutation < signal_dims).tolist()),
        "noise": sorted(np.flatnonzero(permutation >= signal_dims).tolist()),
    }
    return stacked[:, permutation].astype(np.float32), columns


def _write_folder(
    folder: Path,
    name: str,
    users: np.ndarray,
    items: np.ndarray,
    labels: np.ndarray,
    features: dict[str, np.ndarray],
    description: dict[str, Any],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.column_stack([users, items, labels])
    np.savetxt(
        folder / f"{name}.inter",
        rows,
        fmt="%d",
        delimiter="\t",
        header="userID\titemID\tx_label",
        comments="",
    )
    for modality, matrix in features.items():
        np.save(folder / f"{modality}{FEATURE_SUFFIX}", matrix)
    (folder / STRUCTURE_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
