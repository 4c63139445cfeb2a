"""`python -m trainers.diagnose --run-dir DIR`: what MRdIB did to each modality in a trained run.

Writes into DIR/diagnostics/ (or --out): projections.png (PCA of every modality's item representations
before the bottleneck and of the bottleneck means the model serves: the paper's Figure 4),
diagnostics.json (estimates of the mutual information between modalities, in nats, for both, from a
critic trained afresh on part of the items and evaluated on the rest), and projector/ (open with
`tensorboard --logdir DIR/diagnostics/projector`, tab "Projector"). Under a stochastic bottleneck it also
holds, and prints, what the bottleneck learned: per modality and code dimension its noise over the
spread of the means and its KL, and where the dataset records pure-noise columns (`trainers.corrupt
--nuisance-dims`, the synthetic data) what share of the code's weight they carry. With --probes,
diagnostics.json also holds, per modality, the metrics of a linear probe trained on that modality's
served codes alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainers.console import configure_runtime, run_command


@run_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.diagnose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished trainers.fit run folder")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/diagnostics)")
    parser.add_argument("--mine-steps", type=int, default=300, help="training steps of each fresh InfoNCE critic")
    parser.add_argument("--probes", action="store_true",
                        help="train a linear probe on each modality's codes alone and report its metrics")
    args = parser.parse_args(argv)
    configure_runtime()
    from mrdib_tf.experiments.diagnostics import diagnose
    from mrdib_tf.experiments.runs import load_trained_run

    report = diagnose(load_trained_run(args.run_dir), args.out or args.run_dir / "diagnostics",
                      mine_steps=args.mine_steps, probes=args.probes)
    print(json.dumps({k: report[k] for k in ("mutual_information_nats", "probes") if k in report}, indent=2))
    for line in bottleneck_lines(report.get("bottleneck")):
        print(line)
    print(f"written to {args.out or args.run_dir / 'diagnostics'}")
    return 0


def bottleneck_lines(profile: dict | None) -> list[str]:
    """One line per modality: the rate, the noise over the spread across dimensions, nuisance shares."""
    if profile is None:
        return []
    lines = [f"bottleneck ({profile['form']}), at the best epoch's weights:"]
    for modality, entry in profile["modalities"].items():
        if not entry:
            lines.append(f"  {modality}: no KL (a control)")
            continue
        ratio = entry["noise_to_spread_summary"]
        text = (f"  {modality}: rate {entry['rate']:.3f} nats/dim; noise/spread median {ratio['median']:.3f} "
                f"(min {ratio['min']:.3f}, max {ratio['max']:.3f})")
        if "kl_weight" in entry:
            text += f"; KL weight {entry['kl_weight']:.3g}"
        n = entry.get("nuisance", {})
        if "share_of_columns" in n:
            text += (f"; nuisance columns {n['share_of_columns']:.0%} of columns, {n['share_of_weight_without_noise']:.1%} "
                     f"of the code's weight before the noise, {n['share_of_weight_with_noise']:.1%} after")
        if "noise_to_spread_on_nuisance_columns" in n:
            text += (f"; noise/spread on the nuisance columns {n['noise_to_spread_on_nuisance_columns']:.3f}, "
                     f"on the others {n['noise_to_spread_on_other_columns']:.3f} (medians)")
        lines.append(text)
    return lines


if __name__ == "__main__":
    sys.exit(main())
