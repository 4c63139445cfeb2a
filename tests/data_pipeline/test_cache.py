import hashlib
import json
import os
import subprocess

import pytest

from data_pipeline import cache, tfrecords
from data_pipeline.mmrec_format import read_mmrec_dataset, source_files
from data_pipeline.registry import DatasetLocation, resolve_dataset


@pytest.fixture
def toy(make_folder, tmp_path):
    """(dataset location, its SourceDataset, its fingerprint, a cache dir under tmp_path)."""
    location = resolve_dataset(data_dir=make_folder())
    sources = cache.fingerprint(source_files(location), {})
    return (
        location,
        read_mmrec_dataset(location),
        sources,
        cache.cache_dir_for(location, tmp_path / "cache"),
    )


def test_default_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path))
    assert cache.default_cache_root() == tmp_path
    monkeypatch.delenv(cache.CACHE_DIR_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_cache_root() == tmp_path / "home" / ".cache" / "mrdib_tf"


def test_cache_dir_is_keyed_by_the_absolute_source_folders(tmp_path, monkeypatch):
    (tmp_path / "a" / "toy").mkdir(parents=True)
    (tmp_path / "b" / "toy").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)

    def at(folder, feature_folder=None):
        location = DatasetLocation("toy", folder, feature_folder or folder, (), by_name=False)
        return cache.cache_dir_for(location, "root")

    first = at(tmp_path / "a" / "toy")
    assert first.parent.name == "root" and first.name.startswith("toy-")
    assert at(cache.Path("a/toy")) == first
    assert at(tmp_path / "b" / "toy") != first
    assert at(tmp_path / "a" / "toy", tmp_path / "b" / "toy") not in (first, at(tmp_path / "b" / "toy"))


def test_fingerprint_hashes_changed_files_and_trusts_unchanged_stat(tmp_path):
    path = tmp_path / "x.inter"
    path.write_bytes(b"abc")
    fresh = cache.fingerprint([path], {})
    assert fresh["x.inter"]["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert fresh["x.inter"]["size"] == 3
    known = {"x.inter": dict(fresh["x.inter"], sha256="recorded")}
    assert cache.fingerprint([path], known)["x.inter"]["sha256"] == "recorded"  # not re-hashed
    os.utime(path, ns=(0, fresh["x.inter"]["mtime_ns"] + 10**9))
    assert cache.fingerprint([path], known)["x.inter"]["sha256"] == fresh["x.inter"]["sha256"]


def test_build_writes_shards_and_a_complete_manifest(toy):
    location, source, sources, cache_dir = toy
    manifest = cache.build(cache_dir, source, sources, location)
    assert json.loads((cache_dir / cache.MANIFEST_NAME).read_text()) == manifest
    assert manifest["format_version"] == cache.FORMAT_VERSION
    assert (manifest["dataset"], manifest["n_users"], manifest["n_items"]) == ("toy", 4, 5)
    assert manifest["source_dir"] == manifest["feature_dir"] == str(location.folder.resolve())
    counts = {s: (e["interactions"], e["users"], e["source_rows"]) for s, e in manifest["splits"].items()}
    assert counts == {"train": (7, 3, 7), "valid": (3, 3, 4), "test": (3, 3, 4)}
    assert manifest["dropped_cold_start"] == {"users": 1, "valid_rows": 1, "test_rows": 1}
    assert manifest["modalities"] == {"image": {"dim": 6}, "text": {"dim": 3}}
    assert set(manifest["sources"]) == {"toy.inter", "image_feat.npy", "text_feat.npy"}
    inter_sha = hashlib.sha256((location.folder / "toy.inter").read_bytes()).hexdigest()
    assert manifest["sources"]["toy.inter"]["sha256"] == inter_sha
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        [*cache.shard_names(manifest), "manifest.json"]
    )
    assert [p.name for p in cache_dir.parent.iterdir()] == [cache_dir.name]  # no temporaries left
    assert cache.is_current(cache_dir, manifest, sources)


def test_is_current_rejects_other_contents_versions_sources_or_missing_shards(toy):
    location, source, sources, cache_dir = toy
    manifest = cache.build(cache_dir, source, sources, location)
    changed = {**sources, "toy.inter": dict(sources["toy.inter"], sha256="0" * 64)}
    assert not cache.is_current(cache_dir, manifest, changed)
    assert not cache.is_current(cache_dir, dict(manifest, format_version=cache.FORMAT_VERSION + 1), sources)
    assert not cache.is_current(
        cache_dir, manifest, {k: v for k, v in sources.items() if k != "text_feat.npy"}
    )
    (cache_dir / manifest["splits"]["test"]["shards"][0]).unlink()
    assert not cache.is_current(cache_dir, manifest, sources)


def test_interrupted_conversion_leaves_the_previous_cache_and_no_temporary(toy, monkeypatch):
    location, source, sources, cache_dir = toy
    before = cache.build(cache_dir, source, sources, location)

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tfrecords, "write_features", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.build(cache_dir, source, sources, location)
    assert [p.name for p in cache_dir.parent.iterdir()] == [cache_dir.name]
    assert cache.read_manifest(cache_dir) == before


def test_orphaned_temporaries_are_removed_and_live_ones_kept(toy):
    location, source, sources, cache_dir = toy
    orphan = cache_dir.with_name(f".{cache_dir.name}.tmp-{_finished_pid()}-abcd")
    live = cache_dir.with_name(f".{cache_dir.name}.tmp-{os.getppid()}-abcd")
    for path in (orphan, live):
        path.mkdir(parents=True)
        (path / cache.MANIFEST_NAME).write_text("{}")
    cache.build(cache_dir, source, sources, location)
    assert not orphan.exists() and live.exists()


def _finished_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_refresh_sources_rewrites_only_the_manifest(toy):
    location, source, sources, cache_dir = toy
    manifest = cache.build(cache_dir, source, sources, location)
    shard = cache_dir / manifest["splits"]["train"]["shards"][0]
    stamp = shard.stat().st_mtime_ns
    newer = {k: dict(v, mtime_ns=v["mtime_ns"] + 1) for k, v in sources.items()}
    cache.refresh_sources(cache_dir, manifest, newer)
    assert cache.read_manifest(cache_dir)["sources"] == newer
    assert shard.stat().st_mtime_ns == stamp
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".partial")]
