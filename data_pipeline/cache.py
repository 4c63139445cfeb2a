"""The TFRecord cache of a dataset folder: where it lives, when it is stale, how it is built.

Layout: `<cache_root>/<name>-<hash of the source folders' absolute paths>/` holds the TFRecord shards
and `manifest.json` (format version, counts, dropped cold-start users, modalities and dims, shard
names, and the size, mtime and sha256 of every source file).

Freshness: a cache is used when its format version is current, it lists the same source files, and
each file's sha256 matches. To avoid hashing big feature files on every load, a file whose size and
mtime_ns are unchanged since the manifest was written keeps its recorded sha256; only changed ones
are re-hashed (a touched but identical file keeps the cache and refreshes the recorded stat).

Atomicity: a cache is built in a temporary sibling folder `.<folder>.tmp-<pid>-<token>` and renamed
into place only when complete, so an interrupted conversion never leaves a folder that a later load
would read; temporaries whose process is gone are deleted by the next build.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline import tfrecords
from data_pipeline.mmrec_format import SPLITS, SourceDataset
from data_pipeline.registry import DatasetLocation

FORMAT_VERSION = 2  # 2: uncompressed feature store
MANIFEST_NAME = "manifest.json"
CACHE_DIR_ENV = "MRDIB_CACHE_DIR"


def default_cache_root() -> Path:
    """`$MRDIB_CACHE_DIR` if set, else `~/.cache/mrdib_tf`."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "mrdib_tf")


def cache_dir_for(location: DatasetLocation, cache_root: str | Path | None = None) -> Path:
    """The cache folder of a dataset: keyed by the absolute folders of its interaction and feature files."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    key = "\0".join(str(folder.resolve()) for folder in (location.folder, location.feature_folder))
    return root / f"{location.name}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}"


def fingerprint(files: Sequence[Path], known: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Size, mtime_ns and sha256 of each file, keyed by file name.

    A file whose size and mtime_ns equal its entry in `known` (a previous manifest's `sources`)
    keeps that entry's sha256 instead of being hashed again.
    """
    result = {}
    for path in files:
        stat = path.stat()
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        previous = known.get(path.name, {})
        same_stat = all(previous.get(key) == value for key, value in entry.items())
        entry["sha256"] = previous["sha256"] if same_stat and "sha256" in previous else _sha256(path)
        result[path.name] = entry
    return result


def read_manifest(cache_dir: Path) -> dict[str, Any] | None:
    """The cache's manifest, or None when the cache is absent or its manifest unreadable."""
    try:
        return json.loads((cache_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_current(
    cache_dir: Path, manifest: Mapping[str, Any], sources: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Whether the cache was built by this format version from exactly these source contents."""
    recorded = manifest.get("sources", {})
    if manifest.get("format_version") != FORMAT_VERSION or recorded.keys() != sources.keys():
        return False
    if any(recorded[name].get("sha256") != entry["sha256"] for name, entry in sources.items()):
        return False
    return all((cache_dir / shard).is_file() for shard in shard_names(manifest))


def shard_names(manifest: Mapping[str, Any]) -> list[str]:
    """Every TFRecord file the manifest lists."""
    names = [name for split in SPLITS for name in manifest["splits"][split]["shards"]]
    return names + list(manifest["feature_shards"])


def refresh_sources(cache_dir: Path, manifest: dict[str, Any], sources: dict[str, dict[str, Any]]) -> None:
    """Records new source stats (same contents) in the manifest, replacing it atomically."""
    manifest["sources"] = sources
    _write_manifest(cache_dir, manifest)


def build(
    cache_dir: Path, source: SourceDataset, sources: dict[str, dict[str, Any]], location: DatasetLocation
) -> dict[str, Any]:
    """Converts `source` into a complete cache at `cache_dir`, atomically; returns its manifest."""
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(cache_dir)
    temporary = _temporary_sibling(cache_dir)
    temporary.mkdir()
    try:
        manifest = _write_contents(temporary, source, sources, location)
        if cache_dir.exists():
            stale = _temporary_sibling(cache_dir)
            os.rename(cache_dir, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(temporary, cache_dir)
        except OSError:
            # Another process converted the same sources and renamed its cache in first.
            if read_manifest(cache_dir) is None:
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return manifest


def _write_contents(
    folder: Path, source: SourceDataset, sources: dict[str, dict[str, Any]], location: DatasetLocation
) -> dict[str, Any]:
    splits = {}
    for split, (users, items) in source.splits.items():
        splits[split] = {
            "interactions": int(users.size),
            "users": int(np.unique(users).size),
            "source_rows": source.source_rows[split],
            "shards": tfrecords.write_interactions(folder, split, users, items),
        }
    manifest = {
        "format_version": FORMAT_VERSION,
        "dataset": source.name,
        "source_dir": str(location.folder.resolve()),
        "feature_dir": str(location.feature_folder.resolve()),
        "n_users": source.n_users,
        "n_items": source.n_items,
        "splits": splits,
        "dropped_cold_start": source.dropped_cold_start,
        "modalities": {m: {"dim": int(f.shape[1])} for m, f in source.features.items()},
        "feature_shards": tfrecords.write_features(folder, source.features),
        "interactions_per_record": tfrecords.INTERACTIONS_PER_RECORD,
        "sources": sources,
    }
    _write_manifest(folder, manifest)
    return manifest


def _write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    partial = folder / f".{MANIFEST_NAME}.{os.getpid()}.partial"
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, folder / MANIFEST_NAME)


def _temporary_sibling(cache_dir: Path) -> Path:
    return cache_dir.with_name(f".{cache_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _remove_orphans(cache_dir: Path) -> None:
    """Deletes temporaries of `cache_dir` left by processes that no longer run."""
    for path in cache_dir.parent.glob(f".{cache_dir.name}.tmp-*"):
        pid = path.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
