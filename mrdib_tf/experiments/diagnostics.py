"""What a trained MRdIB run did to each modality: projections, mutual information, projector export.

The paper's Figure 4 shows modality representations before and after the bottleneck; `diagnose`
reproduces it for any run (h_m: the backbone's projection of modality m; mu_m: the bottleneck mean the
model actually serves), estimates the mutual information between modalities with a freshly trained InfoNCE
critic on both, exports the item representations for TensorBoard's embedding projector, and profiles what
the bottleneck learned (`bottleneck_profile`: noise and KL per code dimension at the loaded weights).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import combinations
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mrdib_tf.experiments.bottleneck_profile import bottleneck_profile
from mrdib_tf.mine import CRITIC_LEARNING_RATE, Critic, mutual_information


def item_representations(model) -> dict[str, dict[str, np.ndarray]]:
    """`{"h": {m: h_m}, "mu": {m: mu_m}}` for all items (`"mu"` only under MRdIB), as numpy."""
    representations = model.backbone.modality_representations(training=False)
    views = {"h": {m: t.numpy() for m, t in representations.items()}}
    if model.regularizer is not None:
        views["mu"] = {m: t.numpy() for m, t in model.regularizer(representations, training=False).items()}
    return views


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Projects rows of `x` on their first two principal components (centred; sign fixed by the largest loading)."""
    centred = x - x.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    top = components[:2]
    signs = np.sign(top[np.arange(2), np.abs(top).argmax(axis=1)])
    return centred @ (top * signs[:, None]).T


def estimate_mutual_information(
    a: np.ndarray,
    b: np.ndarray,
    steps: int = 300,
    batch_size: int = 512,
    evaluate_every: int = 10,
    seed: int = 0,
) -> float:
    """A held-out InfoNCE estimate of I(a; b) in nats from paired rows, with a freshly trained critic.

    The estimator of MRdIB's redundancy term (`mrdib_tf.mine`), measured on rows the critic never saw:
    the rows are shuffled and split 60/20/20. The critic trains on the first part (its own Adam at
    `CRITIC_LEARNING_RATE`, random minibatches of `batch_size` rows), its bound is computed on the second
    part every `evaluate_every` steps, and the estimate is the bound on the third part at the checkpoint
    with the best second-part bound. The untrained critic, whose scores are all 0 (a bound of exactly 0),
    is a checkpoint too. Early stopping is what makes this work on a few thousand rows: there the critic
    starts to memorise its training pairs within tens of steps, and its held-out bound then falls. The
    estimate is a lower bound up to sampling noise; on a few thousand rows of 64-d codes whose
    dependence is spread thinly over many dimensions it falls well short of the truth
    (`benchmarks/mi_estimator.py --diagnostics`).

    The critic is smaller than the training one (16 hidden units): fewer parameters to fit to a few
    thousand rows.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must pair rows as [n, d] arrays: got shapes {a.shape} and {b.shape}.")
    n = a.shape[0]
    if n < 10:
        raise ValueError(f"estimate_mutual_information needs at least 10 rows to hold some out, got {n}.")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("evaluate_every", evaluate_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    held_out = n // 5
    test, validation, train = np.split(order, [held_out, 2 * held_out])
    a_train, b_train = tf.constant(a[train], tf.float32), tf.constant(b[train], tf.float32)
    critic = Critic(units=16, seed=seed)
    critic.build(a_train.shape, b_train.shape)
    optimizer = keras.optimizers.Adam(CRITIC_LEARNING_RATE)

    @tf.function(jit_compile=True)
    def training_step(rows: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            loss = -mutual_information(critic, tf.gather(a_train, rows), tf.gather(b_train, rows))
        optimizer.apply_gradients(zip(tape.gradient(loss, critic.trainable_variables), critic.trainable_variables))

    bound = tf.function(lambda x, y: mutual_information(critic, x, y), jit_compile=True)
    parts = {name: (tf.constant(a[rows], tf.float32), tf.constant(b[rows], tf.float32))
             for name, rows in (("validation", validation), ("test", test))}
    best_validation, estimate = 0.0, 0.0  # the untrained critic's bound, on any rows
    for step in range(1, steps + 1):
        training_step(tf.constant(rng.choice(len(train), size=min(batch_size, len(train)), replace=False)))
        if step % evaluate_every == 0:
            validation_bound = float(bound(*parts["validation"]))
            if validation_bound > best_validation:
                best_validation, estimate = validation_bound, float(bound(*parts["test"]))
    return estimate


def plot_projections(views: Mapping[str, Mapping[str, np.ndarray]], path: Path, title: str) -> None:
    """One panel per view (h, mu): every modality's items projected jointly by PCA, coloured by modality
    (each modality by its own PCA where their widths differ, as on VBPR's raw feature columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"h": "before the bottleneck (h_m)", "mu": "bottleneck means (mu_m, served)"}
    figure, axes = plt.subplots(1, len(views), figsize=(6 * len(views), 5), squeeze=False)
    for axis, (view, modalities) in zip(axes[0], views.items()):
        names = sorted(modalities)
        if len({modalities[m].shape[1] for m in names}) == 1:
            points = pca_2d(np.concatenate([modalities[m] for m in names]))
        else:
            points = np.concatenate([pca_2d(modalities[m]) for m in names])
        start = 0
        for name in names:
            count = modalities[name].shape[0]
            axis.scatter(*points[start : start + count].T, s=3, alpha=0.5, label=name)
            start += count
        axis.set_title(labels[view])
        axis.set_xlabel("PC 1")
        axis.set_ylabel("PC 2")
        axis.legend(markerscale=4)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def export_projector(views: Mapping[str, Mapping[str, np.ndarray]], item_embeddings: np.ndarray,
                     folder: Path) -> list[str]:
    """Writes a TensorBoard projector log (checkpoint, `metadata.tsv`, `projector_config.pbtxt`) to `folder`.

    Returns the tensor names exported: the final item embeddings and every view of every modality.
    """
    from tensorboard.plugins import projector

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"items/final": item_embeddings}
    for view, modalities in views.items():
        tensors.update({f"items/{view}_{m}": x for m, x in modalities.items()})
    n_items = item_embeddings.shape[0]
    (folder / "metadata.tsv").write_text("".join(f"item {i}\n" for i in range(n_items)))
    variables = {name.replace("/", "_"): tf.Variable(x, name=name) for name, x in tensors.items()}
    tf.train.Checkpoint(**variables).save(str(folder / "embeddings.ckpt"))
    config = projector.ProjectorConfig()
    for key in variables:
        embedding = config.embeddings.add()
        embedding.tensor_name = f"{key}/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(str(folder), config)
    return list(tensors)


def served_codes(views: Mapping[str, Mapping[str, np.ndarray]]) -> tuple[str, Mapping[str, np.ndarray]]:
    """The item codes the model's heads read: the bottleneck means under MRdIB, else the representations."""
    view = "mu" if "mu" in views else "h"
    return view, views[view]


def diagnose(run, out_dir: Path, mine_steps: int = 300, seed: int = 0, probes: bool = False) -> dict:
    """Writes `projections.png`, `diagnostics.json` and a `projector/` log for a `TrainedRun`; returns the JSON.

    With `probes`, also trains a linear probe on each modality's served codes (`mrdib_tf.experiments.probes`) and
    reports its validation and test metrics: what that modality's code alone knows of the users' items.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    views = item_representations(run.model)
    if not views["h"]:
        raise ValueError(f"Backbone '{run.config.backbone}' has no modalities: there is nothing to diagnose.")
    variant = "MRdIB" if run.model.regularizer is not None else "bare"
    plot_projections(views, out_dir / "projections.png",
                     f"{run.config.backbone} ({variant}) on {run.config.dataset_name}: item representations (PCA)")
    mutual_information = {
        view: {f"{a}~{b}": estimate_mutual_information(x[a], x[b], steps=mine_steps, seed=seed)
               for a, b in combinations(sorted(x), 2)}
        for view, x in views.items()
    }
    _, item_embeddings = run.model.final_embeddings()
    exported = export_projector(views, item_embeddings.numpy(), out_dir / "projector")
    report = {"run": run.config.run_dir, "variant": variant,
              "mutual_information_nats": mutual_information, "projector_tensors": exported}
    profile = bottleneck_profile(run.model, run.config.data_dir)
    if profile is not None:
        report["bottleneck"] = profile
    if probes:
        from mrdib_tf.experiments.probes import probe_recall

        view, codes = served_codes(views)
        report["probes"] = {"codes": view, **{m: probe_recall(run.dataset, x, run.config) for m, x in codes.items()}}
    (out_dir / "diagnostics.json").write_text(json.dumps(report, indent=2))
    return report
