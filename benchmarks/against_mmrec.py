"""mrdib-tf against MMRec (the PyTorch reference) on this machine: seconds per training epoch and per evaluation.

MMRec is not part of this project. Point the script at your own checkout of enoche/MMRec, the Python
that runs it, and its data folder; the script calls MMRec's public entry point
(`utils.quick_start.quick_start`) in that Python and reads the per-epoch times MMRec logs
("epoch N training [time: ...]", "epoch N evaluating [time: ...]").

The two take turns on the same machine: each round times ours for --epochs epochs, then runs MMRec for
--epochs + 1 epochs (its first epoch dropped, as ours drops its compiling warm-up epoch). Both use the
bare backbones at the same settings (64-d, batch 2048, Adam 1e-3, reg_weight 1e-4, LightGCN 2 layers,
FREEDOM's edge dropout 0.8, MGCN's and SOIL's contrastive weights 0.01);
ours compiles its steps with XLA. Ratios are MMRec's median seconds over ours: above 1 means we are
faster.

    python benchmarks/against_mmrec.py --mmrec-src ~/MMRec/src --mmrec-python ~/mmrec-venv/bin/python \\
        --mmrec-data ~/mmrec-data --datasets tiktok=tiktok,sports=sports_rand

Each --datasets entry is OURS=MMREC: our dataset name and the name MMRec knows it by (a folder of
--mmrec-data with a YAML of the same name in MMRec's src/configs/dataset/). Our `sports` is the real
interaction graph with RANDOM features of the real shapes (see training_speed.py); give MMRec the same
graph with random features of those shapes. MMRec's DualGNN also reads `user_graph_dict.npy` from the
dataset's folder, which MMRec's `preprocessing/dualgnn-gen-u-u-matrix.py` writes.

SOIL is not in MMRec: its reference is its authors' code (github.com/TL-UESTC/SOIL), laid out as MMRec
is; give its checkout as --soil-src (with a dataset YAML per MMRec name, its knn_i and knn_a as ours:
10 and 2 on tiktok). Their code calls `.cuda()` on its graphs, which the runner makes a no-op on a
machine without CUDA; their Python needs `torch_scatter` (`scatter_add` only).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

from training_speed import TimedModel, load  # the same datasets and timing

from mrdib_tf.experiments.config import RunConfig  # noqa: E402

#: our backbone name -> (the reference's model name, its overrides; ours runs at the same loss weights, see
#: `_ours_config`, and at its defaults otherwise)
BACKBONES = {
    "vbpr": ("VBPR", {"reg_weight": [1e-4]}),
    "lightgcn": ("LightGCN", {"reg_weight": [1e-4], "n_layers": [2]}),
    "mmgcn": ("MMGCN", {"reg_weight": [1e-4], "learning_rate": [1e-3]}),
    "freedom": ("FREEDOM", {"reg_weight": [1e-4], "dropout": [0.8]}),
    "dualgnn": ("DualGNN", {"reg_weight": [1e-4], "learning_rate": [1e-3], "aggr_mode": ["add"]}),
    "mgcn": ("MGCN", {"cl_loss": [0.01]}),
    "soil": ("SOIL", {"cl_loss": [0.01], "cl_loss2": [0.01]}),
}
#: backbones whose reference is not MMRec but their authors' code (--soil-src)
AUTHORS_CODE = {"soil"}
EPOCH_LINE = re.compile(r"epoch (\d+) (training|evaluating) \[time: ([0-9.]+)s")


#: the reference's loss weights -> ours
_LOSS_WEIGHTS = {"reg_weight": "reg_weight", "cl_loss": "cl_weight", "cl_loss2": "user_item_cl_weight"}


def _ours_config(backbone: str, overrides: dict[str, list]) -> RunConfig:
    """Our bare backbone at the reference's loss weights where it sets them (our defaults may be validated ones)."""
    weights = {ours: overrides[theirs][0] for theirs, ours in _LOSS_WEIGHTS.items() if theirs in overrides}
    return RunConfig(backbone=backbone, mrdib=False, jit_compile=True, **weights)


MMREC_RUNNER = """
import ast, os, sys
import torch
if not torch.cuda.is_available():  # SOIL's authors move their graphs with an unconditional .cuda()
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
sys.path.insert(0, os.getcwd())
from utils.quick_start import quick_start
quick_start(model=sys.argv[1], dataset=sys.argv[2], config_dict=ast.literal_eval(sys.argv[3]), save_model=False)
"""


def mmrec_epoch_seconds(args, model: str, dataset: str, overrides: dict, epochs: int, source: Path) -> tuple[list, list]:
    """(training seconds, evaluation seconds) of the reference's epochs 1..epochs, as it logs them;
    `source`: MMRec's src/ or the authors' checkout."""
    config = {"use_gpu": False, "gpu_id": 0, "data_path": f"{args.mmrec_data.resolve()}/",
              "epochs": epochs + 1, **overrides}
    completed = subprocess.run(
        [str(args.mmrec_python), "-c", MMREC_RUNNER, model, dataset, repr(config)],
        cwd=source, capture_output=True, text=True,
    )
    times: dict[str, list[float]] = {"training": [], "evaluating": []}
    for epoch, kind, seconds in EPOCH_LINE.findall(completed.stdout + completed.stderr):
        if int(epoch) > 0:
            times[kind].append(float(seconds))
    if completed.returncode != 0 or len(times["training"]) < epochs:
        raise RuntimeError(
            f"MMRec {model} on {dataset} failed (exit {completed.returncode}); its output ends:\n"
            + (completed.stdout + completed.stderr)[-3000:]
        )
    return times["training"], times["evaluating"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mmrec-src", type=Path, required=True, help="MMRec's src/ folder")
    parser.add_argument("--mmrec-python", type=Path, required=True, help="the Python that runs MMRec")
    parser.add_argument("--mmrec-data", type=Path, required=True, help="MMRec's data folder")
    parser.add_argument("--soil-src", type=Path, help="SOIL's authors' checkout (for --backbones soil)")
    parser.add_argument("--datasets", default="tiktok=tiktok", help="OURS=MMREC,... (see above)")
    parser.add_argument("--backbones", default="vbpr,lightgcn,mmgcn,freedom,dualgnn,mgcn")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per round and framework")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    unknown = sorted(set(args.backbones.split(",")) - set(BACKBONES))
    if unknown:
        parser.error(f"unknown backbone(s) {unknown}; choose from {sorted(BACKBONES)}")
    if AUTHORS_CODE & set(args.backbones.split(",")) and args.soil_src is None:
        parser.error("--backbones soil needs --soil-src, the authors' checkout")
    print(f"{'dataset':<8} {'backbone':<9} {'ours s/ep':>9} {'MMRec s/ep':>10} {'MMRec/ours':>10} "
          f"{'ours s/eval':>11} {'MMRec s/eval':>12} {'MMRec/ours':>10}  (medians, {args.rounds} rounds "
          f"x {args.epochs} epochs each)")
    for entry in args.datasets.split(","):
        ours_name, mmrec_name = entry.split("=")
        dataset = load(ours_name)
        if ours_name == "sports":
            print("# sports: real interaction graph, RANDOM features of the real shapes (image 4096-d, text 384-d)")
        for backbone in args.backbones.split(","):
            model, overrides = BACKBONES[backbone]
            ours = TimedModel(dataset, _ours_config(backbone, overrides), "fit")
            times = {"ours": ([], []), "mmrec": ([], [])}
            source = args.soil_src if backbone in AUTHORS_CODE else args.mmrec_src
            for _ in range(args.rounds):
                for framework in ("ours", "mmrec"):
                    if framework == "ours":
                        training, evaluating = ours.epochs(args.epochs)
                    else:
                        training, evaluating = mmrec_epoch_seconds(
                            args, model, mmrec_name, overrides, args.epochs, source
                        )
                    times[framework][0].extend(training)
                    times[framework][1].extend(evaluating)
            ours_epoch, mmrec_epoch = (statistics.median(times[f][0]) for f in ("ours", "mmrec"))
            ours_eval, mmrec_eval = (statistics.median(times[f][1]) for f in ("ours", "mmrec"))
            print(f"{ours_name:<8} {backbone:<9} {ours_epoch:9.2f} {mmrec_epoch:10.2f} "
                  f"{mmrec_epoch / ours_epoch:10.2f} {ours_eval:11.2f} {mmrec_eval:12.2f} "
                  f"{mmrec_eval / ours_eval:10.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
