"""InfoNCE's written-out gradient against autodiff's, side by side: the loss alone, then training epochs.

`mrdib_tf.losses.unit_info_nce` gives its gradient by hand, so that the product S^T A (S the logits'
row softmax) reads a row-major S^T; autodiff contracts S's rows in place, which XLA's CPU backend runs
about 3x slower. This times, in one process and taking turns:

- the pair of InfoNCE terms MGCN takes each step (two batches of 2,048 rows of width 64), forward and
  backward under XLA, with each gradient;
- a training epoch of the backbones that use InfoNCE (MGCN, SOIL), each model traced with one form.

Ratios are autodiff's seconds over the library's: above 1 means the written-out gradient is faster.

    python benchmarks/info_nce.py --datasets tiktok --backbones mgcn,soil --repeats 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from training_speed import TimedModel, load  # noqa: E402

from mrdib_tf import losses  # noqa: E402
from mrdib_tf.experiments.config import RunConfig  # noqa: E402

LIBRARY_FORM = losses.unit_info_nce


def autodiff_info_nce(anchors: tf.Tensor, positives: tf.Tensor, temperature: float) -> tf.Tensor:
    """The same loss of unit rows, its gradient left to autodiff (the library's form before)."""
    logits = tf.matmul(anchors, positives, transpose_b=True) / temperature
    matching = tf.reduce_sum(anchors * positives, axis=-1) / temperature
    return tf.reduce_mean(tf.reduce_logsumexp(logits, axis=-1) - matching)


@contextmanager
def gradient_form(name: str):
    """Every InfoNCE traced inside uses the named form: "library" (the written-out gradient) or "autodiff"."""
    losses.unit_info_nce = LIBRARY_FORM if name == "library" else autodiff_info_nce
    try:
        yield
    finally:
        losses.unit_info_nce = LIBRARY_FORM


def loss_steps(rows: int, width: int) -> dict[str, tf.types.experimental.GenericFunction]:
    """Each form's XLA-compiled forward and backward of two InfoNCE terms over random batches."""
    rng = np.random.default_rng(0)
    tables = [tf.Variable(rng.standard_normal((rows, width)).astype(np.float32)) for _ in range(4)]

    def step():
        with tf.GradientTape() as tape:
            loss = losses.info_nce(tables[0], tables[1], 0.2) + losses.info_nce(tables[2], tables[3], 0.2)
        return tape.gradient(loss, tables)

    steps = {}
    for name in ("autodiff", "library"):
        with gradient_form(name):
            steps[name] = tf.function(step, jit_compile=True)
            steps[name]()  # trace and compile under this form
    reference, library = ([g.numpy() for g in steps[name]()] for name in ("autodiff", "library"))
    for want, got in zip(reference, library):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
    return steps


def report(label: str, seconds: dict[str, list[float]], unit: str = "s") -> None:
    """One line: each form's median (in `unit`, "s" or "ms") and autodiff's over the library's."""
    autodiff, library = (statistics.median(seconds[name]) for name in ("autodiff", "library"))
    scale = 1000.0 if unit == "ms" else 1.0
    print(f"{label:<34} {autodiff * scale:9.3f} {library * scale:9.3f} {unit:<3} {autodiff / library:6.2f}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="tiktok")
    parser.add_argument("--backbones", default="mgcn,soil")
    parser.add_argument("--rows", type=int, default=2048, help="rows per InfoNCE batch (the training batch)")
    parser.add_argument("--repeats", type=int, default=4, help="timed rounds (epochs, for the backbones)")
    args = parser.parse_args()
    print(f"{'what':<34} {'autodiff':>9} {'library':>9} {'':<3} {'ratio':>6}  (medians of {args.repeats})")
    steps = loss_steps(args.rows, 64)
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(10):
                [g.numpy() for g in step()]
            seconds[name].append((time.perf_counter() - start) / 10)
    report(f"two InfoNCE terms, {args.rows} x 64", seconds, "ms")
    for dataset_name in args.datasets.split(","):
        dataset = load(dataset_name)
        for backbone in args.backbones.split(","):
            models = {}
            for name in ("autodiff", "library"):
                with gradient_form(name):  # traced in TimedModel's warm-up epoch
                    models[name] = TimedModel(dataset, RunConfig(backbone=backbone, mrdib=False), "fit")
            seconds = {name: [] for name in models}
            for _ in range(args.repeats):
                for name, timed in models.items():
                    seconds[name].append(timed.epochs(2)[0][-1])  # the second epoch of each turn, as training_speed
            report(f"{dataset_name} {backbone} bare, s/epoch", seconds)


if __name__ == "__main__":
    main()
