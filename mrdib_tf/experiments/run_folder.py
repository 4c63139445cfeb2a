"""A run folder's life: one training at a time, never two runs mixed in one folder, a finished run never
overwritten, an interrupted run resumed by running the same command again.

A run folder holds `config.json` (the `RunConfig`, written first), `resume/` (the state after the last
finished epoch, while training), `checkpoints/best.weights.h5` (the best validation epoch's weights),
`tensorboard/` and, once the run has finished, `metrics.json`. `claim_run_folder` decides what a new
training may do with a folder:

- absent or empty: a new run;
- `config.json` and no `metrics.json`: an interrupted run of the same settings resumes; of other settings
  it is refused;
- `metrics.json`: a finished run, refused (choose another folder, or delete it);
- anything else: refused, since it is not a run folder.

While a training holds a folder it keeps an exclusive `flock` on its `.lock` file, released by the
operating system when the process ends however it ends (SIGKILL too), so a second training on the same
folder is refused instead of writing beside the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mrdib_tf.experiments.config import RunConfig, setting_differences

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = Path("checkpoints") / "best.weights.h5"
LOCK_FILE = ".lock"
#: Settings a resumed run may change: they do not change what it learns (`steps_per_execution` is
#: exact by construction, see `training.whole_epoch_execution`).
RESUMABLE_CHANGES = ("run_dir", "eval_batch_users", "steps_per_execution")


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` (same suffixes) to write in the block; renamed over `path` after it,
    so a reader never sees half a file."""
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    yield temporary
    temporary.replace(path)


def write_atomically(path: Path, data: bytes) -> None:
    """Writes `data` to `path` through `atomic_target`."""
    with atomic_target(path) as temporary:
        temporary.write_bytes(data)


@dataclasses.dataclass
class RunFolder:
    """A run folder claimed by this process until `release()` (or the process's end).

    Attributes:
        path: the folder.
        resuming: True when the folder held an interrupted run of the same settings.
    """

    path: Path
    resuming: bool
    _lock: IO[str]

    def release(self) -> None:
        self._lock.close()


def claim_run_folder(config: RunConfig) -> RunFolder:
    """Claims `config.run_dir` (or a new folder under `runs/`) for a training of `config`.

    Returns:
        The claimed folder; its `config.json` is written (a new run) or checked (a resumed one).

    Raises:
        ValueError: the folder holds a finished run, a run of other settings, something that is not a
            run, or is held by another training.
    """
    path = Path(config.run_dir) if config.run_dir else _new_default_folder(config)
    path.mkdir(parents=True, exist_ok=True)
    lock = _lock(path)
    try:
        resuming = _check_contents(path, config)
        if not resuming:
            write_atomically(path / CONFIG_FILE, config.to_json().encode())
    except BaseException:
        lock.close()
        raise
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")  # for the message another training gets
    lock.flush()
    return RunFolder(path, resuming, lock)


def _new_default_folder(config: RunConfig) -> Path:
    """`runs/<dataset>-<backbone>-<mrdib|bare>-<UTC time>[-N]`, created here: `mkdir` fails if another run
    took the name first, so two runs started in the same second get two folders."""
    variant = "mrdib" if config.mrdib else "bare"
    stem = f"{config.dataset_name}-{config.backbone}-{variant}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    Path("runs").mkdir(exist_ok=True)
    for suffix in ["", *(f"-{n}" for n in range(2, 10_000))]:
        candidate = Path("runs") / (stem + suffix)
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise OSError(f"runs/{stem}: no free folder name")


def _lock(path: Path) -> IO[str]:
    handle = open(path / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ValueError(f"{path}: another training (process {holder}) is using this run folder; "
                         "wait for it to end or choose another `run_dir`.") from None
    return handle


def _check_contents(path: Path, config: RunConfig) -> bool:
    """True for an interrupted run of `config`'s settings, False for an empty folder; else raises."""
    if (path / METRICS_FILE).exists():
        raise ValueError(f"{path}: holds a finished run ({METRICS_FILE}); a finished run is never retrained "
                         "or overwritten. Choose another `run_dir`, or delete that folder.")
    if not (path / CONFIG_FILE).exists():
        others = sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)
        if others:
            raise ValueError(f"{path}: is not empty ({', '.join(others[:5])}) and holds no run ({CONFIG_FILE}); "
                             "choose an empty or new `run_dir`.")
        return False
    differences = setting_differences(RunConfig.from_json_file(path / CONFIG_FILE), config, ignore=RESUMABLE_CHANGES)
    if differences:
        described = ", ".join(f"`{k}` {old!r} there, {new!r} now" for k, (old, new) in differences.items())
        raise ValueError(f"{path}: holds an interrupted run with other settings ({described}); resume it "
                         "with its own settings, or choose another `run_dir`.")
    return True
