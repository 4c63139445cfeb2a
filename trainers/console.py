"""What every command-line entry point shares: quiet TensorFlow start-up and readable metric tables."""

from __future__ import annotations

import logging
import os


def configure_runtime() -> None:
    """Hides TensorFlow's C++ start-up noise (before TensorFlow is imported) and sets up logging."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def format_metrics(metrics: dict[str, float]) -> str:
    """A table with one row per metric family and one column per cutoff K."""
    families = sorted({name.split("@")[0] for name in metrics})
    cutoffs = sorted({int(name.split("@")[1]) for name in metrics})
    lines = ["metric     " + "".join(f"{'@' + str(k):>9}" for k in cutoffs)]
    for family in families:
        cells = "".join(f"{metrics.get(f'{family}@{k}', float('nan')):9.4f}" for k in cutoffs)
        lines.append(f"{family:<11}{cells}")
    return "\n".join(lines)
