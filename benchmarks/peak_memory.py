"""Peak resident memory of training and of evaluation on the Amazon-scale graphs, and where it goes.

Each (dataset, backbone, MRdIB on/off, phase) runs in a fresh Python process, which reports its
high-water mark of resident memory (`ru_maxrss`) after each stage: TensorFlow imported, data loaded,
model built and compiled, then the phase itself (`train`: one training epoch with `Model.fit`, as
`trainers.fit` runs it; `eval`: one full-ranking evaluation of every validation user over every item).
The increments say where the memory goes.

    python benchmarks/peak_memory.py                                   # sports and clothing, VBPR and MGCN
    python benchmarks/peak_memory.py --datasets sports --backbones vbpr --mrdib off
    python benchmarks/peak_memory.py --datasets sports --backbones mgcn --mrdib off --features both  # fine-tuned vs frozen

The Amazon datasets are the real MMRec interaction graphs shipped in data/ with RANDOM features of the
real shapes (image 4096-d, text 384-d, float32), because their feature files are not available here:
memory depends on the shapes, not the values.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def child(dataset_name: str, backbone: str, mrdib: bool, phase: str, fine_tune: bool | None) -> None:
    """Runs one measurement and prints `{stage: peak MiB}` as JSON on the last line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    peaks = {}
    import tensorflow  # noqa: F401
    import keras

    peaks["tensorflow"] = peak_mib()
    from training_speed import load

    from mrdib_tf.callbacks import FullRankingValidation
    from mrdib_tf.experiments.config import RunConfig
    from mrdib_tf.experiments.models import build_recommender
    from mrdib_tf.experiments.training import compile_for_training
    from mrdib_tf.metrics import FullRankingEvaluator

    dataset = load(dataset_name)
    peaks["data"] = peak_mib()
    config = RunConfig(backbone=backbone, mrdib=mrdib, fine_tune_features=fine_tune)
    keras.utils.set_random_seed(config.seed)
    model = build_recommender(dataset, config)
    steps = dataset.steps_per_epoch(config.batch_size)
    compile_for_training(model, config, steps)
    peaks["model"] = peak_mib()
    if phase == "train":
        batches = dataset.train_epochs(config.batch_size, config.seed, negative_pool=config.negative_pool)
        model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    else:
        validation = FullRankingValidation(FullRankingEvaluator(dataset.train, dataset.valid))
        validation.set_model(model)
        validation.evaluate()
    peaks["phase"] = peak_mib()
    feature_mib = sum(f.nbytes for f in dataset.features.values()) / 2**20
    print(json.dumps({"peaks": peaks, "features_mib": feature_mib}))


def measure(dataset: str, backbone: str, mrdib: bool, phase: str, features: str) -> dict:
    command = [sys.executable, __file__, "--child", dataset, backbone, "on" if mrdib else "off", phase, features]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sports,clothing")
    parser.add_argument("--backbones", default="vbpr,mgcn")
    parser.add_argument("--mrdib", choices=("off", "on", "both"), default="both")
    parser.add_argument("--phases", default="train,eval")
    parser.add_argument("--features", choices=("default", "tuned", "frozen", "both"), default="default",
                        help="feature tables fine-tuned or frozen (default: each backbone's own; both: one row each)")
    parser.add_argument("--child", nargs=5, metavar=("DATASET", "BACKBONE", "MRDIB", "PHASE", "FEATURES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dataset, backbone, mrdib, phase, features = args.child
        child(dataset, backbone, mrdib == "on", phase, {"default": None, "tuned": True, "frozen": False}[features])
        return
    switches = {"off": [False], "on": [True], "both": [False, True]}[args.mrdib]
    feature_modes = ["tuned", "frozen"] if args.features == "both" else [args.features]
    print("peak resident memory (MiB), a fresh process per row; each column is the high-water mark after that stage")
    print(f"{'dataset':<9} {'backbone':<23} {'phase':<6} {'TF':>6} {'+data':>7} {'+model':>7} {'peak':>7}  features")
    for dataset in args.datasets.split(","):
        for backbone in args.backbones.split(","):
            for mrdib, features, phase in itertools.product(switches, feature_modes, args.phases.split(",")):
                result = measure(dataset, backbone, mrdib, phase, features)
                p = result["peaks"]
                label = backbone + (" + MRdIB" if mrdib else " bare") + ("" if features == "default" else f" {features}")
                print(f"{dataset:<9} {label:<23} {phase:<6} {p['tensorflow']:6.0f} {p['data']:7.0f} "
                      f"{p['model']:7.0f} {p['phase']:7.0f}  {result['features_mib']:.0f} MiB "
                      f"(RANDOM, real shapes)", flush=True)


if __name__ == "__main__":
    main()
