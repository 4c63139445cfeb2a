"""What every command-line entry point shares: quiet TensorFlow start-up, one-line errors, metric tables."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import sys
from collections.abc import Callable

#: The exit code of an error the user can fix (bad data, flags or paths), as argparse uses for bad flags.
USAGE_ERROR = 2

_Main = Callable[[list[str] | None], int]


def configure_runtime() -> None:
    """Hides TensorFlow's C++ start-up noise (before TensorFlow is imported) and sets up logging."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def run_command(main: _Main) -> _Main:
    """Decorates a command's `main(argv)` so an error the user can fix is one line, not a traceback.

    ValueError (which includes the data pipeline's DataValidationError and every argument check),
    OSError (a path that cannot be read or written) and FloatingPointError (a training loss that
    diverged) print `error: <message>` on stderr and exit with code 2. Every message already names the
    file, setting or training step at fault.
    """

    @functools.wraps(main)
    def guarded(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except (ValueError, OSError, FloatingPointError) as error:
            print(f"error: {_one_line(error)}", file=sys.stderr)
            return USAGE_ERROR

    return guarded


def _one_line(error: BaseException) -> str:
    """The error's message on one line; an OSError as `<file>: <reason>`; settings named as flags."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        files = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
        text = f"{files}: {error.strerror}"
    else:
        text = as_flags(str(error) or type(error).__name__)
    return " ".join(text.split())


def as_flags(message: str) -> str:
    """Rewrites the run settings a library message names in backticks as the flags that set them.

    `mrdib=False` becomes `--no-mrdib`, `alpha_kl=0.1` becomes `--alpha-kl 0.1` and `alpha_kl` becomes
    `--alpha-kl`; other backticked text is left as it is.
    """
    from mrdib_tf.experiments.config import RunConfig

    settings = {f.name: f for f in dataclasses.fields(RunConfig)}

    def flag(match: re.Match) -> str:
        name, _, value = match[1].partition("=")
        if name not in settings:
            return match[0]
        dashed = name.replace("_", "-")
        if value in ("True", "False") and settings[name].type == "bool":
            return f"--{dashed}" if value == "True" else f"--no-{dashed}"
        return f"--{dashed} {value}".rstrip()

    return re.sub(r"`([a-z_0-9]+(?:=[^`\s]+)?)`", flag, message)


def format_metrics(metrics: dict[str, float]) -> str:
    """A table with one row per metric family and one column per cutoff K."""
    families = sorted({name.split("@")[0] for name in metrics})
    cutoffs = sorted({int(name.split("@")[1]) for name in metrics})
    lines = ["metric     " + "".join(f"{'@' + str(k):>9}" for k in cutoffs)]
    for family in families:
        cells = "".join(f"{metrics.get(f'{family}@{k}', float('nan')):9.4f}" for k in cutoffs)
        lines.append(f"{family:<11}{cells}")
    return "\n".join(lines)
