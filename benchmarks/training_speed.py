"""Seconds per training epoch and per full-ranking evaluation, every variant timed side by side.

Variants are timed round-robin (variant A's epochs, variant B's, ..., repeated), after one warm-up epoch
each that absorbs tracing and XLA compilation, so the ratios compare like with like on a noisy, shared
machine. Ratios are against the first variant of the same dataset and backbone. Each variant trains
with Keras' `Model.fit` as the project does (`fit`: several steps per compiled call, the largest divisor
of the epoch's steps up to `RunConfig.steps_per_execution`), or `fit1`: one step per call, or `loop`: the
same compiled train step driven by a hand-written loop that reads every step's loss back, as the project
trained before it moved to `Model.fit`, or `fit2`: `fit` with MRdIB's critics stepping in a second pass after
the model's (as under loss scaling) instead of from the model's own backward pass, or `fitn`: `fit` with the
bottleneck's noise drawn inline, where XLA fuses a copy of the draw into each of its consumers, instead of
once behind a conditional (`mrdib_tf.bottleneck.reparameterization_noise`). `dense` runs MRdIB's
dense d x d encoder instead of the per-dimension one, `rows=2048` its critics on every positive of the
batch instead of an even sample of 1,024 (both together: MRdIB as it was before those defaults),
`off main path` keeps the backbone on its clean representations, so the bottleneck encodes only the
batch's rows. The `alpha_*=0` variants drop one MRdIB branch each (the sampled
bottleneck and its KL; the critic and its step; the unique decoders), which shows what each branch costs.

    python benchmarks/training_speed.py                       # tiktok and sports: VBPR, LightGCN, MGCN, FREEDOM
    python benchmarks/training_speed.py --datasets tiktok --backbones dualgnn,soil,mmgcn
    python benchmarks/training_speed.py --datasets tiktok --repeats 5
    python benchmarks/training_speed.py --datasets tiktok --backbones mgcn,freedom --variants 'fit2? +(bare|mrdib)$'

`sports` is the real MMRec interaction graph shipped in data/sports/ with RANDOM features of the real
shapes (image 18357x4096, text 18357x384), because its feature files are not available here: accuracy
on it means nothing, speed does.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from data_pipeline import load_dataset  # noqa: E402
from data_pipeline.registry import MMREC_DATASETS  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrdib_tf import bottleneck  # noqa: E402
from mrdib_tf.callbacks import EpochStart, FullRankingValidation  # noqa: E402
from mrdib_tf.experiments.config import RunConfig  # noqa: E402
from mrdib_tf.experiments.models import build_recommender  # noqa: E402
from mrdib_tf.experiments.training import EpochReport, compile_for_training  # noqa: E402
from mrdib_tf.metrics import FullRankingEvaluator  # noqa: E402
from mrdib_tf.sampling import standard_normal  # noqa: E402


def _mrdib_branches(backbone: str) -> list[tuple[str, str, str, dict]]:
    """The backbone with MRdIB (its default encoder and critic rows), one pass against two for the critics,
    the noise drawn inline, with the dense encoder, with critics on every positive, with the codes off the
    main path, then without each branch in turn (alpha 0)."""
    label = f"{backbone:<5} fit  mrdib"
    return [(label, backbone, "fit", {"mrdib": True}),
            (f"{backbone:<5} fit2 mrdib", backbone, "fit2", {"mrdib": True}),
            (f"{backbone:<5} fitn mrdib inline noise", backbone, "fitn", {"mrdib": True}),
            (f"{label} dense", backbone, "fit", {"mrdib": True, "encoder": "dense"}),
            (f"{label} rows=2048", backbone, "fit", {"mrdib": True, "critic_rows": 2048}),
            (f"{label} dense rows=2048", backbone, "fit", {"mrdib": True, "encoder": "dense", "critic_rows": 2048}),
            (f"{label} off main path", backbone, "fit", {"mrdib": True, "codes_on_main_path": False})] + [
        (f"{label} {alpha}=0", backbone, "fit", {"mrdib": True, alpha: 0.0})
        for alpha in ("alpha_kl", "alpha_mi", "alpha_unique")
    ]


#: (label, backbone, driver, settings) per variant; the first of each backbone is the reference for its ratios.
VARIANTS = [
    ("vbpr  fit  bare", "vbpr", "fit", {"mrdib": False}),
    ("vbpr  fit1 bare", "vbpr", "fit", {"mrdib": False, "steps_per_execution": 1}),
    ("vbpr  loop bare", "vbpr", "loop", {"mrdib": False}),
    *_mrdib_branches("vbpr"),
    ("vbpr  fit1 mrdib", "vbpr", "fit", {"mrdib": True, "steps_per_execution": 1}),
    ("vbpr  loop mrdib", "vbpr", "loop", {"mrdib": True}),
    ("lightgcn fit", "lightgcn", "fit", {"mrdib": False}),
    ("lightgcn fit1", "lightgcn", "fit", {"mrdib": False, "steps_per_execution": 1}),
    ("lightgcn loop", "lightgcn", "loop", {"mrdib": False}),
    ("mgcn  fit  bare", "mgcn", "fit", {"mrdib": False}),
    ("mgcn  fit1 bare", "mgcn", "fit", {"mrdib": False, "steps_per_execution": 1}),
    ("mgcn  loop bare", "mgcn", "loop", {"mrdib": False}),
    ("mgcn  fit  bare frozen", "mgcn", "fit", {"mrdib": False, "fine_tune_features": False}),
    *_mrdib_branches("mgcn"),
    ("freedom fit bare", "freedom", "fit", {"mrdib": False}),
    ("freedom fit bare frozen", "freedom", "fit", {"mrdib": False, "fine_tune_features": False}),
    *_mrdib_branches("freedom"),
    ("dualgnn fit bare", "dualgnn", "fit", {"mrdib": False}),
    *_mrdib_branches("dualgnn"),
    ("soil  fit  bare", "soil", "fit", {"mrdib": False}),
    *_mrdib_branches("soil"),
    ("mmgcn fit  bare", "mmgcn", "fit", {"mrdib": False}),
    *_mrdib_branches("mmgcn"),
]


def load(name: str):
    """A dataset by name; MMRec's Amazon datasets (shipped as interactions only) get RANDOM features of
    the real shapes (`MMREC_DATASETS`), since speed and memory depend on the shapes, not the values."""
    if name not in MMREC_DATASETS:
        return load_dataset(name=name)
    dataset = load_dataset(name=name, require_features=False)
    rng = np.random.default_rng(0)
    features = {
        m: rng.standard_normal((dataset.n_items, dim), dtype=np.float32)
        for m, dim in MMREC_DATASETS[name].feature_dims.items()
    }
    return dataclasses.replace(dataset, features=features)


NOISE_ONCE = bottleneck.reparameterization_noise


class TimedModel:
    """A compiled model of one variant and its data; `epochs(k)` trains k more epochs and times them."""

    def __init__(self, dataset, config: RunConfig, driver: str) -> None:
        keras.utils.set_random_seed(config.seed)
        self.dataset, self.config, self.driver = dataset, config, driver
        if driver == "fitn":  # traced (in the warm-up epoch below) with the draw inline
            bottleneck.reparameterization_noise = standard_normal
        self.model = build_recommender(dataset, config)
        if driver == "fit2":  # the step `Recommender` takes under loss scaling, here without it
            self.model._critic_step_from_model_gradient = lambda: False
        self.steps = dataset.steps_per_epoch(config.batch_size)
        compile_for_training(self.model, config, self.steps)
        self.validation = FullRankingValidation(FullRankingEvaluator(dataset.train, dataset.valid),
                                                jit_compile=config.jit_compile)
        self.validation.set_model(self.model)
        self.batches = dataset.train_epochs(config.batch_size, config.seed, negative_pool=config.negative_pool)
        self.iterator = iter(self.batches)
        self.step = tf.function(self._step, jit_compile=config.jit_compile)
        self.epochs_done = 0
        self.epochs(1)  # warm-up: tracing and XLA compilation
        bottleneck.reparameterization_noise = NOISE_ONCE

    def _step(self, batch):
        with tf.GradientTape() as tape:
            loss = self.model.compute_loss(y_pred=self.model(batch, training=True))
        variables = self.model.trainable_variables
        self.model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def epochs(self, count: int) -> tuple[list[float], list[float]]:
        """(seconds of each training epoch, seconds of each validation evaluation after it)."""
        if self.driver in ("fit", "fit2", "fitn"):
            report = EpochReport(self.config.valid_metric, verbose=False)
            self.model.fit(self.batches, initial_epoch=self.epochs_done, epochs=self.epochs_done + count,
                           steps_per_epoch=self.steps, verbose=0, shuffle=False,
                           callbacks=[EpochStart(), self.validation, report])
            self.epochs_done += count
            return report.epoch_seconds, [row["valid_seconds"] for row in report.history]
        training, evaluating = [], []
        for _ in range(count):
            start = time.perf_counter()
            self.model.backbone.begin_epoch(self.epochs_done)
            self.epochs_done += 1
            for _ in range(self.steps):
                float(self.step(next(self.iterator)))  # the loss read back every step, as the old loop did
            trained = time.perf_counter()
            self.validation.evaluate()
            training.append(trained - start)
            evaluating.append(time.perf_counter() - trained)
        return training, evaluating


def time_variants(dataset, backbones: list[str], pattern: str,
                  repeats: int) -> list[tuple[str, list, list]]:
    """Each chosen variant's training and evaluation seconds, the variants taking turns epoch by epoch."""
    models = [
        (label, TimedModel(dataset, RunConfig(backbone=backbone, **settings), driver), [], [])
        for label, backbone, driver, settings in VARIANTS
        if backbone in backbones and re.search(pattern, label)
    ]
    for _ in range(repeats):
        for _, timed, epochs, evals in models:
            # two epochs a turn, the second timed: a fit call's set-up (its data iterator) is not an epoch's
            training, evaluating = timed.epochs(2)
            epochs.append(training[-1])
            evals.append(evaluating[-1])
    return [(label, epochs, evals) for label, _, epochs, evals in models]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="tiktok,sports")
    parser.add_argument("--backbones", default="vbpr,lightgcn,mgcn,freedom")
    parser.add_argument("--variants", default="",
                        help="only the variants whose label this regular expression finds (the first variant "
                             "kept of each backbone is its ratios' reference)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per variant")
    args = parser.parse_args()
    backbones = args.backbones.split(",")
    print(f"{'dataset':<8} {'variant':<32} {'s/epoch':>8} {'ratio':>6} {'s/eval':>7} {'ratio':>6}  (median of {args.repeats})")
    for name in args.datasets.split(","):
        dataset = load(name)
        if name == "sports":
            print("# sports: real interaction graph, RANDOM features of the real shapes (image 4096-d, text 384-d)")
        reference: dict[str, tuple[float, float]] = {}
        for label, epochs, evals in time_variants(dataset, backbones, args.variants, args.repeats):
            epoch, evaluation = statistics.median(epochs), statistics.median(evals)
            base_epoch, base_eval = reference.setdefault(label.split()[0], (epoch, evaluation))
            print(f"{name:<8} {label:<32} {epoch:8.3f} {epoch / base_epoch:6.2f} "
                  f"{evaluation:7.3f} {evaluation / base_eval:6.2f}", flush=True)


if __name__ == "__main__":
    main()
