"""`python -m trainers.export --run-dir DIR`: a finished run as a TF Serving model, `saved_models/NAME/VERSION/`.

Exports the inference path only (final embeddings, MRdIB's posterior means, training-item exclusion,
top-K retrieval on a TFRS BruteForce index); see `mrdib_tf.export` for the signatures and the answers
to unknown ids, empty batches and K larger than the catalogue.
"""

from __future__ import annotations

import os

# TFRS imports only under tf_keras, and the switch is read when TensorFlow is first imported: set it
# before anything imports TensorFlow. Only this process is affected; training stays on Keras 3.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from trainers.console import configure_runtime, run_command  # noqa: E402

DEFAULT_OUT = "saved_models"
DEFAULT_TOP_K = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainers.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a finished run folder (written by trainers.fit)")
    parser.add_argument("--name", default=None, help="model name (default: <dataset>-<backbone>)")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                        help=f"items per recommendation list, clamped to the catalogue (default: {DEFAULT_TOP_K})")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"root folder of exports (default: {DEFAULT_OUT})")
    return parser.parse_args(argv)


def export_run(run_dir: str | Path, out: str | Path = DEFAULT_OUT, name: str | None = None,
               top_k: int = DEFAULT_TOP_K) -> Path:
    """Restores the run's best weights and writes the next version of `out/name`; returns its folder."""
    from mrdib_tf.export import ExportMetadata, RetrievalModule, write_version
    from mrdib_tf.experiments.runs import CONFIG_FILE, load_trained_run

    run = load_trained_run(run_dir)
    config = run.config
    user_embeddings, item_embeddings = run.model.final_embeddings()
    metadata = ExportMetadata(
        backbone=config.backbone,
        dataset=run.dataset.name,
        mrdib=config.mrdib,
        alpha_kl=config.alpha_kl if config.mrdib else 0.0,
        alpha_mi=config.alpha_mi if config.mrdib else 0.0,
        alpha_unique=config.alpha_unique if config.mrdib else 0.0,
        run_dir=str(Path(run_dir).resolve()),
        best_epoch=int(run.metrics["best_epoch"]),
        valid_metrics=run.metrics["valid"],
        test_metrics=run.metrics["test"],
        config_json=(Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"),
    )
    module = RetrievalModule(
        user_embeddings.numpy(), item_embeddings.numpy(), run.dataset.train, top_k, metadata
    )
    return write_version(module, out, name or f"{run.dataset.name}-{config.backbone}")


@run_command
def main(argv: list[str] | None = None) -> int:
    configure_runtime()
    for noisy in ("absl", "tensorflow"):  # SavedModel writing logs every renamed input and asset folder
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)
    version_dir = export_run(args.run_dir, args.out, args.name, args.top_k)
    print(f"exported {version_dir} (signatures: serving_default, score, metadata)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
