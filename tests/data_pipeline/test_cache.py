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
    monkeypatch.setattr(cache, "FORMAT_VERSION", cache.FORMAT_VERSION + 1)  # never shares old folders
    assert at(tmp_path / "a" / "toy") != first


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


def test_build_publishes_a_new_build_with_a_complete_checksummed_manifest(toy):
    location, source, sources, cache_dir = toy
    build = cache.build(cache_dir, source, sources, location)
    manifest = build.manifest
    assert build.folder.parent == cache_dir / cache.BUILDS_NAME
    assert (cache_dir / cache.CURRENT_NAME).read_text() == build.folder.name + "\n"
    on_disk = json.loads((build.folder / cache.MANIFEST_NAME).read_text())
    assert on_disk == manifest
    body = json.dumps({k: v for k, v in on_disk.items() if k != "checksum"}, sort_keys=True)
    assert manifest["checksum"] == hashlib.sha256(body.encode()).hexdigest()
    assert manifest["format_version"] == cache.FORMAT_VERSION
    assert (manifest["dataset"], manifest["n_users"], manifest["n_items"]) == ("toy", 4, 5)
    assert manifest["source_dir"] == manifest["feature_dir"] == str(location.folder.resolve())
    counts = {s: (e["interactions"], e["users"], e["source_rows"]) for s, e in manifest["splits"].items()}
    assert counts == {"train": (7, 3, 7), "valid": (3, 3, 4), "test": (3, 3, 4)}
    assert manifest["dropped_cold_start"] == {"users": 1, "valid_rows": 1, "test_rows": 1}
    assert manifest["modalities"] == {"image": {"dim": 6}, "text": {"dim": 3}}
    for entry in manifest["splits"]["train"]["shards"] + manifest["feature_shards"]:
        assert entry["bytes"] == (build.folder / entry["name"]).stat().st_size
    assert [e["count"] for e in manifest["splits"]["train"]["shards"]] == [7]
    assert [e["count"] for e in manifest["feature_shards"]] == [5]
    assert set(manifest["sources"]) == {"toy.inter", "image_feat.npy", "text_feat.npy"}
    inter_sha = hashlib.sha256((location.folder / "toy.inter").read_bytes()).hexdigest()
    assert manifest["sources"]["toy.inter"]["sha256"] == inter_sha
    assert sorted(p.name for p in build.folder.iterdir()) == sorted(
        [*cache.shard_names(manifest), cache.MANIFEST_NAME, cache.LEASE_NAME]
    )
    assert [p.name for p in (cache_dir / cache.BUILDS_NAME).iterdir()] == [build.folder.name]  # no temporaries
    assert cache.stale_reason(build, sources) is None


def test_the_current_build_reopens_with_its_manifest(toy):
    location, source, sources, cache_dir = toy
    assert cache.open_current(cache_dir) == (None, None)  # no cache yet: nothing is damaged
    built = cache.build(cache_dir, source, sources, location)
    opened, problem = cache.open_current(cache_dir)
    assert problem is None and (opened.folder, opened.manifest) == (built.folder, built.manifest)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda m: m.write_text(m.read_text().replace('"n_users": 4', '"n_users": 40')), "checksum does not match"),
        (lambda m: m.write_text("{ not json"), "does not parse"),
        (lambda m: m.unlink(), "missing"),
    ],
)
def test_an_edited_unparseable_or_missing_manifest_counts_as_absent(toy, damage, problem):
    location, source, sources, cache_dir = toy
    build = cache.build(cache_dir, source, sources, location)
    damage(build.folder / cache.MANIFEST_NAME)
    opened, reason = cache.open_current(cache_dir)
    assert opened is None
    assert reason.startswith(str(build.folder / cache.MANIFEST_NAME)) and problem in reason


@pytest.mark.parametrize("content", ["../../elsewhere", "0123456789ab-00000000"])
def test_a_current_pointer_to_no_build_counts_as_absent(toy, content):
    location, source, sources, cache_dir = toy
    cache.build(cache_dir, source, sources, location)
    (cache_dir / cache.CURRENT_NAME).write_text(content)
    opened, reason = cache.open_current(cache_dir)
    assert opened is None and reason.startswith(str(cache_dir / cache.CURRENT_NAME))


def test_stale_reason_names_other_contents_versions_or_sources(toy):
    location, source, sources, cache_dir = toy
    build = cache.build(cache_dir, source, sources, location)
    changed = {**sources, "toy.inter": dict(sources["toy.inter"], sha256="0" * 64)}
    assert cache.stale_reason(build, changed) == "toy.inter changed"
    fewer = {k: v for k, v in sources.items() if k != "text_feat.npy"}
    assert "source files changed" in cache.stale_reason(build, fewer)
    build.manifest["format_version"] = cache.FORMAT_VERSION + 1
    assert "format version" in cache.stale_reason(build, sources)


def test_read_back_checks_every_shard_against_the_manifest(toy, monkeypatch):
    monkeypatch.setattr(tfrecords, "ITEMS_PER_SHARD", 2)  # toy's 5 items in 3 feature shards
    location, source, sources, cache_dir = toy
    build = cache.build(cache_dir, source, sources, location)
    cache.check_shard_sizes(build)
    assert cache.read_split(build, "valid")[0].tolist() == [0, 1, 2]
    assert cache.read_features(build)["image"].shape == (5, 6)

    first, second = (build.folder / e["name"] for e in build.manifest["feature_shards"][:2])
    first_bytes, second_bytes = first.read_bytes(), second.read_bytes()
    first.write_bytes(second_bytes)  # same size, other items
    second.write_bytes(first_bytes)
    with pytest.raises(cache.CacheCorruption, match=rf"^{first}: expected items 0\.\.1 in order"):
        cache.read_features(build)
    first.write_bytes(first_bytes)
    second.write_bytes(second_bytes[:-1] + bytes([second_bytes[-1] ^ 1]))  # one bit flipped
    cache.check_shard_sizes(build)  # the size still matches ...
    with pytest.raises(cache.CacheCorruption, match=rf"^{second}: unreadable \(corrupted record"):
        cache.read_features(build)  # ... TFRecord's checksum does not

    train = build.folder / build.manifest["splits"]["train"]["shards"][0]["name"]
    train.write_bytes(train.read_bytes()[:-40])
    with pytest.raises(cache.CacheCorruption, match=rf"^{train}: \d+ bytes, the manifest records \d+"):
        cache.check_shard_sizes(build)
    with pytest.raises(cache.CacheCorruption, match=rf"^{train}: unreadable"):
        cache.read_split(build, "train")
    train.unlink()
    with pytest.raises(cache.CacheCorruption, match=rf"^{train}: missing"):
        cache.check_shard_sizes(build)


def test_a_shard_with_another_count_is_named(toy):
    location, source, sources, cache_dir = toy
    build = cache.build(cache_dir, source, sources, location)
    valid, test = (build.folder / build.manifest["splits"][s]["shards"][0]["name"] for s in ("valid", "test"))
    build.manifest["splits"]["valid"]["shards"][0]["count"] = 4
    with pytest.raises(cache.CacheCorruption, match=rf"^{valid}: 3 interactions, the manifest records 4"):
        cache.read_split(build, "valid")


def test_interrupted_conversion_leaves_the_previous_build_current_and_no_temporary(toy, monkeypatch):
    location, source, sources, cache_dir = toy
    before = cache.build(cache_dir, source, sources, location)

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tfrecords, "write_features", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.build(cache_dir, source, sources, location)
    assert [p.name for p in (cache_dir / cache.BUILDS_NAME).iterdir()] == [before.folder.name]
    assert cache.open_current(cache_dir)[0].manifest == before.manifest


def test_orphaned_temporaries_are_removed_and_live_ones_kept(toy):
    location, source, sources, cache_dir = toy
    builds = cache_dir / cache.BUILDS_NAME
    orphans = [builds / f".tmp-{_finished_pid()}-abcd", builds / f".trash-{_finished_pid()}-abcd"]
    live = builds / f".tmp-{os.getppid()}-abcd"
    for path in (*orphans, live):
        path.mkdir(parents=True)
        (path / cache.MANIFEST_NAME).write_text("{}")
    cache.build(cache_dir, source, sources, location)
    assert not any(path.exists() for path in orphans) and live.exists()


def _finished_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_rebuild_leaves_builds_in_use_and_deletes_the_others(toy):
    location, source, sources, cache_dir = toy
    held = cache.build(cache_dir, source, sources, location)
    released = cache.build(cache_dir, source, sources, location)
    assert held.folder.is_dir()  # still leased by `held`
    assert (cache_dir / cache.CURRENT_NAME).read_text().strip() == released.folder.name
    released.lease.close()
    newest = cache.build(cache_dir, source, sources, location)
    assert not released.folder.exists()  # nobody held it
    assert held.folder.is_dir() and sorted(cache.shard_names(held.manifest)) == sorted(
        p.name for p in held.folder.iterdir() if p.suffix in (".tfrecord", ".gz")
    )
    held.lease.close()
    last = cache.build(cache_dir, source, sources, location)
    assert not held.folder.exists() and newest.folder.is_dir()  # `newest` is still held
    newest.lease.close()
    last.lease.close()
    cache.build(cache_dir, source, sources, location).lease.close()
    assert not newest.folder.exists() and not last.folder.exists()
    assert len(list((cache_dir / cache.BUILDS_NAME).iterdir())) == 1


def test_a_lease_in_another_process_keeps_its_build(toy, tmp_path):
    location, source, sources, cache_dir = toy
    build = cache.build(cache_dir, source, sources, location)
    build.lease.close()
    holder = subprocess.Popen(
        ["python", "-c", f"import fcntl, sys, time; f = open({str(build.folder / cache.LEASE_NAME)!r}, 'rb'); "
         "fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        cache.build(cache_dir, source, sources, location).lease.close()
        assert build.folder.is_dir()
    finally:
        holder.kill()
        holder.wait()
    cache.build(cache_dir, source, sources, location).lease.close()
    assert not build.folder.exists()


def test_a_build_being_deleted_cannot_be_leased(toy):
    location, source, sources, cache_dir = toy
    build = cache.build(cache_dir, source, sources, location)
    build.lease.close()
    os.rename(build.folder, build.folder.with_name(".trash-1-gone"))
    assert cache.open_current(cache_dir)[0] is None


def test_refresh_sources_rewrites_only_the_manifest(toy):
    location, source, sources, cache_dir = toy
    build = cache.build(cache_dir, source, sources, location)
    shard = build.folder / cache.shard_names(build.manifest)[0]
    stamp = shard.stat().st_mtime_ns
    newer = {k: dict(v, mtime_ns=v["mtime_ns"] + 1) for k, v in sources.items()}
    cache.refresh_sources(build, newer)
    assert cache.open_current(cache_dir)[0].manifest["sources"] == newer  # checksum still matches
    assert shard.stat().st_mtime_ns == stamp
    assert not [p for p in build.folder.iterdir() if p.name.endswith(".partial")]
