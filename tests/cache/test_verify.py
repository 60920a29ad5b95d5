"""cache/verify.py: a consistent store verifies clean; each kind of damage is found and mended."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cache.leases import Leases
from cache.mounts import CacheMounts
from cache.verify import Finding, verify
from tests.cache.storefix import Store, key


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "root")
    base = store.layer({"bin/sh": b"shell", "etc/passwd": b"root:x:0:0\n"})
    step = store.layer({"app/main": b"print()\n" * 100})
    store.cache_entry(key("step"), step)
    store.cache_entry(key("empty"), "")
    store.image([base, step], "app:1")
    CacheMounts(store.root).directory("go-build")
    store.base, store.step = base, step  # type: ignore[attr-defined]
    return store


def _broken(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(finding.kind, finding.name) for finding in findings if not finding.harmless]


def test_a_consistent_store_verifies_clean(store: Store) -> None:
    assert verify(store.root) == []
    assert verify(store.root, repair=True) == []


def test_a_corrupt_blob_is_found_and_repair_drops_everything_that_needed_it(
    store: Store,
) -> None:
    step = store.step  # type: ignore[attr-defined]
    path = store.blob_path(step)
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF
    path.write_bytes(bytes(data))
    findings = verify(store.root)
    assert ("blob", step) in _broken(findings)
    (blob,) = [f for f in findings if f.kind == "blob"]
    assert "its content hashes to sha256:" in blob.problem
    repaired = verify(store.root, repair=True)
    assert all(finding.repaired for finding in repaired)
    # The blob went, so did the cache entry naming it and the tag whose image needed it.
    assert {(f.kind, f.name) for f in repaired} >= {("blob", step), ("index", key("step")),
                                                   ("tag", "app:1")}
    assert not path.exists()
    assert store.index.lookup(key("step")) is None
    assert json.loads((store.root / "index.json").read_bytes())["manifests"] == []
    assert verify(store.root) == []


def test_a_cache_entry_whose_layer_is_gone_is_broken(store: Store) -> None:
    lonely = store.layer({"x": b"x"}, snapshot=False)
    store.cache_entry(key("lonely"), lonely)
    os.unlink(store.blob_path(lonely))
    findings = verify(store.root)
    assert _broken(findings) == [("index", key("lonely"))]
    assert "is missing" in findings[0].problem
    verify(store.root, repair=True)
    assert store.index.lookup(key("lonely")) is None
    assert verify(store.root) == []


def test_snapshots_must_be_complete_and_match_their_layer(store: Store) -> None:
    base = store.base  # type: ignore[attr-defined]
    step = store.step  # type: ignore[attr-defined]
    (store.snapshot_path(base) / "fs" / "etc" / "passwd").write_bytes(b"tampered, longer\n")
    half = store.root / "snapshots" / ("ab" * 32)
    half.mkdir()  # an fs-less dir: never landed whole
    (store.snapshot_path(step) / "fs" / "app" / "extra").write_bytes(b"new")
    findings = verify(store.root)
    assert sorted(_broken(findings)) == sorted([
        ("snapshot", base.removeprefix("sha256:")),
        ("snapshot", "ab" * 32),
        ("snapshot", step.removeprefix("sha256:")),
    ])
    problems = {f.name: f.problem for f in findings}
    assert "does not match its layer" in problems[step.removeprefix("sha256:")]
    assert problems["ab" * 32].startswith("incomplete")
    verify(store.root, repair=True)
    assert not store.snapshot_path(base).exists()  # re-extracted from its blob when next needed
    assert verify(store.root) == []


def test_a_broken_cache_mount_dir_is_found(store: Store) -> None:
    directory = CacheMounts(store.root).path("go-build")
    (directory / "id").write_text("someone-else")
    assert _broken(verify(store.root)) == [("cachemount", directory.name)]
    verify(store.root, repair=True)
    assert not directory.exists()


def test_leftovers_of_dead_builds_are_harmless_and_repair_clears_them(store: Store) -> None:
    leftover = store.root / "tmp" / "tmpxyz"
    (leftover / "upper").mkdir(parents=True)
    store.age_path(leftover, 600)
    stale_blob = store.root / "tmp" / "blob-abc"
    stale_blob.write_bytes(b"half")
    store.age_path(stale_blob, 600)
    (store.root / "leases").mkdir(exist_ok=True)
    (store.root / "leases" / "123-dead.lease").write_text('{"pid": 123, "started": 1, '
                                                          '"command": "build"}\n')
    (store.root / "journal").mkdir()
    (store.root / "journal" / "k").write_text(json.dumps({"manifest": "sha256:" + "1" * 64}))
    findings = verify(store.root)
    assert findings and all(finding.harmless for finding in findings)
    assert {(f.kind, f.name) for f in findings} == {
        ("tmp", "tmpxyz"), ("tmp", "blob-abc"), ("lease", "123-dead.lease"), ("journal", "k")}
    verify(store.root, repair=True)
    assert os.listdir(store.root / "tmp") == []
    assert Leases(store.root).dead() == []
    assert verify(store.root) == []


def test_a_running_builds_scratch_dirs_are_no_leftovers(store: Store) -> None:
    lease = Leases(store.root).acquire("build")
    try:
        scratch = store.root / "tmp" / "tmp-live"
        scratch.mkdir()
        store.age_path(scratch, 1)  # older than the grace, younger than the build
        assert verify(store.root) == []
        verify(store.root, repair=True)
        assert scratch.exists()
    finally:
        lease.release()


def test_a_damaged_database_is_reported(store: Store) -> None:
    path = store.root / "cache.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # a b-tree page turned to garbage
    path.write_bytes(bytes(data))
    findings = verify(store.root)
    assert ("records", "cache.db") in _broken(findings)
    verify(store.root, repair=True)
    assert any(name.startswith("cache.db.corrupt-") for name in os.listdir(store.root))
    assert not path.exists()
