"""What a trained bottleneck learned: its noise and its KL per code dimension, and where a dataset's known
nuisance columns go.

`noise_to_spread` is each dimension's posterior scale over the spread of its means across the items: 0.01
is noise at 1% of the signal, 1 drowns the dimension. `kl_per_dimension` is the KL of that dimension's
marginal posterior, in nats, averaged over the items; its mean is the rate the bottleneck holds.

Where a dataset records which feature columns are pure noise (`trainers.corrupt`'s `nuisance_columns`,
the synthetic generator's `noise` columns) and the backbone maps features to h linearly (VBPR), the
profile says what share of the served code's signal-to-noise weight those columns carry: sum over code
dimensions of (d code_d / d column_j)^2 / noise_d^2, in units of each dimension's spread, against the
same sum without the noise (every dimension weighed alike) and against their share of the columns. A
bottleneck that filters them gives them a smaller share with its noise than without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from data_pipeline.corruption import RECIPE_FILE
from data_pipeline.synthetic import STRUCTURE_FILE


def _summary(values: np.ndarray) -> dict[str, float]:
    quartiles = np.percentile(values, [0, 25, 50, 75, 100])
    return {"mean": float(values.mean()), **{k: float(q) for k, q in zip(("min", "q25", "median", "q75", "max"),
                                                                         quartiles)}}


def nuisance_columns(data_dir: str | Path | None) -> dict[str, list[int]]:
    """Modality -> the feature columns a dataset folder records as pure noise (empty when it records none)."""
    if data_dir is None:
        return {}
    folder = Path(data_dir)
    if (folder / RECIPE_FILE).is_file():
        measured = json.loads((folder / RECIPE_FILE).read_text(encoding="utf-8"))["measured"]
        return {m: list(range(*entry["nuisance_columns"])) for m, entry in measured.items()
                if isinstance(entry, dict) and "nuisance_columns" in entry}
    if (folder / STRUCTURE_FILE).is_file():
        columns = json.loads((folder / STRUCTURE_FILE).read_text(encoding="utf-8"))["feature_columns"]
        return {m: list(entry["noise"]) for m, entry in columns.items() if entry["noise"]}
    return {}


def _encoder_jacobian(bottleneck, width: int) -> np.ndarray:
    """[d, d] d mu / d h of the (affine) served map, at h = 0."""
    h = tf.zeros([1, width])
    with tf.GradientTape() as tape:
        tape.watch(h)
        mu = bottleneck(h)
    return tape.batch_jacobian(mu, h)[0].numpy().T  # [in, out]


def _column_shares(model, modality: str, h: tf.Tensor, noise_to_spread: np.ndarray, served: np.ndarray,
                   nuisance: list[int]) -> dict[str, float] | None:
    """None unless h is exactly the backbone's linear projection of the modality's features (VBPR's h;
    not a propagated view, whatever projections the backbone also has)."""
    projections = getattr(model.backbone, "projections", None)
    features = getattr(model.backbone, "features", None)
    if not projections or not features or modality not in projections or modality not in features:
        return None
    projected = projections[modality](features[modality]).numpy()
    if projected.shape != tuple(h.shape) or not np.allclose(projected, h.numpy(), rtol=1e-5, atol=1e-6):
        return None
    kernel = projections[modality].kernel.numpy()  # [columns, d]
    jacobian = kernel @ _encoder_jacobian(model.regularizer.bottlenecks[modality], kernel.shape[1])
    jacobian /= served.std(axis=0) + 1e-12  # each code dimension in units of its spread
    without_noise = (jacobian**2).sum(axis=1)
    with_noise = (jacobian**2 / noise_to_spread**2).sum(axis=1)
    return {"nuisance_columns": len(nuisance), "columns": kernel.shape[0],
            "share_of_columns": len(nuisance) / kernel.shape[0],
            "share_of_weight_without_noise": float(without_noise[nuisance].sum() / without_noise.sum()),
            "share_of_weight_with_noise": float(with_noise[nuisance].sum() / with_noise.sum())}


def _raw_column_noise(model, modality: str, h: tf.Tensor, noise_to_spread: np.ndarray,
                      nuisance: list[int]) -> dict[str, float] | None:
    """Where h is the raw feature rows themselves (VBPR's "raw" placement), each code dimension is a
    column: the noise over the spread on the nuisance columns against the rest. None otherwise."""
    features = getattr(model.backbone, "features", None)
    if not features or modality not in features or tuple(features[modality].shape) != tuple(h.shape):
        return None
    if not np.array_equal(np.asarray(features[modality]), h.numpy()):
        return None
    signal = np.setdiff1d(np.arange(noise_to_spread.size), nuisance)
    return {"noise_to_spread_on_nuisance_columns": float(np.median(noise_to_spread[nuisance])),
            "noise_to_spread_on_other_columns": float(np.median(noise_to_spread[signal]))}


def bottleneck_profile(model, data_dir: str | Path | None = None) -> dict | None:
    """Per modality: the form, noise_to_spread and kl_per_dimension (lists and summaries) over every item,
    at the model's current weights; the rate-targeted KL weights; nuisance-column shares where known.
    None for a bare model or a deterministic bottleneck."""
    regularizer = model.regularizer
    if regularizer is None or not regularizer.stochastic:
        return None
    representations = model.backbone.modality_representations(training=False)
    nuisance = nuisance_columns(data_dir)
    profile: dict = {"form": regularizer.bottleneck, "modalities": {}}
    for modality, h in representations.items():
        encoding = regularizer.bottlenecks[modality].encode(h, None, None)
        entry: dict = {}
        if encoding.has_kl:
            ratio = encoding.noise_to_spread().numpy()
            kl = encoding.kl_per_dimension().numpy()
            entry = {"rate": float(kl.mean()), "noise_to_spread_summary": _summary(ratio),
                     "kl_per_dimension_summary": _summary(kl), "noise_to_spread": ratio.tolist(),
                     "kl_per_dimension": kl.tolist()}
            if regularizer.kl_weights is not None:
                entry["kl_weight"] = float(regularizer.kl_weights[regularizer.modalities.index(modality)])
            if nuisance.get(modality):
                shares = (_column_shares(model, modality, h, ratio, encoding.codes.numpy(), nuisance[modality])
                          or _raw_column_noise(model, modality, h, ratio, nuisance[modality]))
                if shares is not None:
                    entry["nuisance"] = shares
        profile["modalities"][modality] = entry
    return profile
