"""The TFRecord cache of a dataset: where it lives, when it can be used, how it is built and checked.

Layout: `<cache_root>/<name>-<key>/` (the key hashes the format version and the folders the dataset's
files come from, so other format versions never share a folder) holds
- `builds/<id>/`: one complete conversion: the TFRecord shards, `manifest.json` and `.lease`;
- `CURRENT`: the id of the build that loads use, replaced atomically.

The manifest records the format version, counts, dropped cold-start users, modalities and dims, every
shard's name, size in bytes and number of interactions or items, the size, mtime and sha256 of every
source file, and a sha256 of the manifest itself.

Freshness: a build is used when its format version is current, it lists the same source files, and
each file's sha256 matches. To avoid hashing big feature files on every load, a file whose size and
mtime_ns are unchanged since the manifest was written keeps its recorded sha256; only changed ones
are re-hashed (a touched but identical file keeps the build and refreshes the recorded stat).

Checking: opening a build checks the manifest's checksum (a manifest that does not parse or was
edited counts as absent) and every shard's size; reading it back checks every shard's count and the
CRC32C TFRecord keeps per record, which the read-back verifies anyway. A failure raises
`CacheCorruption` naming the file, and the loader rebuilds.

Concurrency: a build is written in `builds/.tmp-<pid>-<token>/`, renamed to a new id and only then
named in `CURRENT`; a published build's shards are never rewritten. A process holds a shared `flock`
on its build's `.lease` for as long as its dataset lives (training re-opens the train shards every
epoch), so a rebuild by another process switches `CURRENT` without touching them. After a switch,
builds that no process holds are deleted; held ones are left for a later rebuild to delete.
Temporaries of processes that no longer run are deleted too. (`flock` makes this POSIX-only.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import tensorflow as tf

from data_pipeline import tfrecords
from data_pipeline.mmrec_format import SPLITS, SourceDataset
from data_pipeline.registry import DatasetLocation

logger = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: builds/ + CURRENT, per-shard sizes and counts, manifest checksum
MANIFEST_NAME = "manifest.json"
CURRENT_NAME = "CURRENT"
BUILDS_NAME = "builds"
LEASE_NAME = ".lease"
CACHE_DIR_ENV = "MRDIB_CACHE_DIR"
_BUILD_ID = re.compile(r"[0-9a-f]{12}-[0-9a-f]{8}")
_TF_NOISE = re.compile(r"\{\{[^}]*\}\}|\[Op:.*$", re.DOTALL)  # op and device names around a TF error
_T = TypeVar("_T")


class CacheCorruption(Exception):
    """A cache build whose files do not match its manifest; the message names the file."""


@dataclass
class Build:
    """One published cache build, held open by this process.

    Attributes:
        folder: `builds/<id>/`, holding the shards and `manifest.json`.
        manifest: its parsed, checksum-verified manifest.
        lease: the open `.lease` file whose shared lock keeps other processes from deleting the build.
    """

    folder: Path
    manifest: dict[str, Any]
    lease: BinaryIO


def default_cache_root() -> Path:
    """`$MRDIB_CACHE_DIR` if set, else `~/.cache/mrdib_tf`."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "mrdib_tf")


def cache_dir_for(location: DatasetLocation, cache_root: str | Path | None = None) -> Path:
    """The cache folder of a dataset: keyed by the format version and its files' absolute folders."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    folders = (location.folder, location.feature_folder)
    key = "\0".join([str(FORMAT_VERSION), *(str(folder.resolve()) for folder in folders)])
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
        entry["sha256"] = previous["sha256"] if same_stat and "sha256" in previous else sha256_of(path)
        result[path.name] = entry
    return result


def open_current(cache_dir: Path) -> tuple[Build | None, str | None]:
    """The build `CURRENT` names, leased; or None and why it cannot be used (None: there is no cache).

    Raises:
        OSError: `CURRENT` exists but cannot be read (permissions, I/O).
    """
    pointer = cache_dir / CURRENT_NAME
    try:
        build_id = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None, None
    if not _BUILD_ID.fullmatch(build_id):
        return None, f"{pointer}: names no build ('{build_id[:40]}')"
    folder = cache_dir / BUILDS_NAME / build_id
    lease = _lease(folder)
    if lease is None:
        return None, f"{pointer}: names build {build_id}, which does not exist"
    manifest, problem = _read_manifest(folder)
    if manifest is None:
        lease.close()
        return None, problem
    return Build(folder, manifest, lease), None


def stale_reason(build: Build, sources: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why `build` was not made by this format version from exactly these source contents, or None."""
    manifest = build.manifest
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"{build.folder}: format version {manifest.get('format_version')}, expected {FORMAT_VERSION}"
    recorded = manifest.get("sources", {})
    if recorded.keys() != sources.keys():
        return f"the source files changed from {sorted(recorded)} to {sorted(sources)}"
    changed = [name for name, entry in sources.items() if recorded[name].get("sha256") != entry["sha256"]]
    return f"{', '.join(changed)} changed" if changed else None


def shard_names(manifest: Mapping[str, Any]) -> list[str]:
    """Every TFRecord file the manifest lists."""
    return [shard["name"] for shard in _shards(manifest)]


def refresh_sources(build: Build, sources: dict[str, dict[str, Any]]) -> None:
    """Records new source stats (same contents) in the build's manifest, replacing it atomically."""
    build.manifest["sources"] = sources
    _write_manifest(build.folder, build.manifest)


def check_shard_sizes(build: Build) -> None:
    """Raises `CacheCorruption` unless every shard exists with the size the manifest records."""
    for shard in _shards(build.manifest):
        path = build.folder / shard["name"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CacheCorruption(f"{path}: missing; the manifest lists it") from None
        if size != shard["bytes"]:
            raise CacheCorruption(
                f"{path}: {size} bytes, the manifest records {shard['bytes']} (truncated or overwritten)"
            )


def read_split(build: Build, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's (users, items), checking each shard's records and interaction count."""
    users, items = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for shard in build.manifest["splits"][split]["shards"]:
        path = build.folder / shard["name"]
        shard_users, shard_items = _read_checked(path, lambda: tfrecords.read_interactions([path]))
        if shard_users.size != shard["count"]:
            raise CacheCorruption(
                f"{path}: {shard_users.size} interactions, the manifest records {shard['count']}"
            )
        users.append(shard_users)
        items.append(shard_items)
    return np.concatenate(users), np.concatenate(items)


def read_features(build: Build) -> dict[str, np.ndarray]:
    """The feature store as modality -> float32 [n_items, dim], checking every shard's item ids."""
    dims = {m: spec["dim"] for m, spec in build.manifest["modalities"].items()}
    if not dims:
        return {}
    parts, start = [], 0
    for shard in build.manifest["feature_shards"]:
        path = build.folder / shard["name"]
        item_ids, features = _read_checked(path, lambda: tfrecords.read_features([path], dims))
        if not np.array_equal(item_ids, np.arange(start, start + shard["count"])):
            raise CacheCorruption(
                f"{path}: expected items {start}..{start + shard['count'] - 1} in order, found "
                f"{item_ids.size} items starting at {item_ids[:1].tolist()}"
            )
        parts.append(features)
        start += shard["count"]
    if start != build.manifest["n_items"]:
        raise CacheCorruption(
            f"{build.folder / MANIFEST_NAME}: feature shards hold {start} items, n_items is "
            f"{build.manifest['n_items']}"
        )
    return {m: np.concatenate([part[m] for part in parts]) for m in dims}


def build(
    cache_dir: Path, source: SourceDataset, sources: dict[str, dict[str, Any]], location: DatasetLocation
) -> Build:
    """Converts `source` into a new build, publishes it in `CURRENT` and deletes builds nobody holds."""
    builds = cache_dir / BUILDS_NAME
    builds.mkdir(parents=True, exist_ok=True)
    _remove_orphans(builds)
    token = secrets.token_hex(4)
    temporary = builds / f".tmp-{os.getpid()}-{token}"
    temporary.mkdir()
    lease = None
    try:
        (temporary / LEASE_NAME).touch()
        lease = _lease(temporary)  # held before publishing, so no other process's cleanup takes it
        manifest = _write_contents(temporary, source, sources, location)
        build_id = f"{_sources_digest(sources)[:12]}-{token}"
        os.rename(temporary, builds / build_id)
    except BaseException:
        if lease is not None:
            lease.close()
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    _write_atomically(cache_dir / CURRENT_NAME, build_id + "\n")
    _remove_unused_builds(cache_dir, keep=build_id)
    return Build(builds / build_id, manifest, lease)


def _shards(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [shard for split in SPLITS for shard in manifest["splits"][split]["shards"]] + list(
        manifest["feature_shards"]
    )


def _read_checked(path: Path, read: Callable[[], _T]) -> _T:
    """`read()`, with TensorFlow's errors for damaged TFRecord data turned into `CacheCorruption`."""
    try:
        return read()
    except tf.errors.OpError as error:
        detail = _TF_NOISE.sub("", error.message).strip()  # keep e.g. "corrupted record at 123"
        raise CacheCorruption(f"{path}: unreadable ({detail})") from error


def _read_manifest(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The build's manifest if it parses and matches its checksum; else None and what is wrong."""
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path}: missing"
    except ValueError as error:
        return None, f"{path}: does not parse ({error})"
    if not isinstance(manifest, dict) or manifest.get("checksum") != _checksum(manifest):
        return None, f"{path}: its checksum does not match its contents (edited or damaged)"
    return manifest, None


def _write_contents(
    folder: Path, source: SourceDataset, sources: dict[str, dict[str, Any]], location: DatasetLocation
) -> dict[str, Any]:
    splits = {}
    for split, (users, items) in source.splits.items():
        splits[split] = {
            "interactions": int(users.size),
            "users": int(np.unique(users).size),
            "source_rows": source.source_rows[split],
            "shards": _describe(folder, tfrecords.write_interactions(folder, split, users, items)),
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
        "feature_shards": _describe(folder, tfrecords.write_features(folder, source.features)),
        "interactions_per_record": tfrecords.INTERACTIONS_PER_RECORD,
        "sources": sources,
    }
    _write_manifest(folder, manifest)
    return manifest


def _describe(folder: Path, shards: Sequence[tfrecords.Shard]) -> list[dict[str, Any]]:
    """Manifest entries of written shards: name, size in bytes, and count."""
    return [{"name": s.name, "bytes": (folder / s.name).stat().st_size, "count": s.count} for s in shards]


def _checksum(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own `checksum` entry."""
    body = {key: value for key, value in manifest.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    manifest["checksum"] = _checksum(manifest)
    _write_atomically(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _sources_digest(sources: Mapping[str, Mapping[str, Any]]) -> str:
    """A hash of the source contents (names and sha256s), so a build's id tells what it was made from."""
    text = "\0".join(f"{name}\0{entry['sha256']}" for name, entry in sorted(sources.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _lease(folder: Path) -> BinaryIO | None:
    """`folder/.lease` opened and share-locked, or None when the build is gone or being deleted.

    The lock is taken on the open file, then the path is checked to still be that file: a cleanup
    renames a build away while holding the exclusive lock, so a lease on a renamed file is refused.
    """
    path = folder / LEASE_NAME
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        return None
    fcntl.flock(stream, fcntl.LOCK_SH)
    try:
        same = os.path.samestat(os.fstat(stream.fileno()), path.stat())
    except FileNotFoundError:
        same = False
    if not same:
        stream.close()
        return None
    return stream


def _remove_unused_builds(cache_dir: Path, keep: str) -> None:
    """Deletes the builds other than `keep` and the one `CURRENT` names that no process holds."""
    try:
        keep_too = (cache_dir / CURRENT_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        keep_too = keep
    for folder in (cache_dir / BUILDS_NAME).iterdir():
        if folder.name in (keep, keep_too) or folder.name.startswith("."):
            continue
        trash = folder.with_name(f".trash-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            with (folder / LEASE_NAME).open("rb") as stream:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(folder, trash)
        except BlockingIOError:
            continue  # some process is using this build
        except FileNotFoundError:
            if not folder.exists():
                continue  # another process removed it first
            os.rename(folder, trash)  # no lease file: not a build any process can hold
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("removed the unused cache build %s", folder)


def _remove_orphans(builds: Path) -> None:
    """Deletes temporaries and half-deleted builds left by processes that no longer run."""
    for path in builds.glob(".*-*-*"):
        pid = path.name.split("-")[1]
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


def sha256_of(path: Path) -> str:
    """The file's SHA-256 as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
