"""cache/usage.py and cache/gc.py: what du reports, what prune removes, and what it never touches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder.errors import CacheError
from cache.gc import PruneOptions, collect_after_build, prune
from cache.gcpolicy import load_keep_storage, parse_size
from cache.keylocks import KeyLocks
from cache.leased_index import LeasedIndex
from cache.leases import Leases
from cache.mounts import CacheMounts
from cache.usage import CACHE, DANGLING, KEPT, Item, take_inventory
from tests.cache.storefix import Store, key
from tests.conftest import REPO


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "root")


def _item(store: Store, name: str) -> Item:
    matches = [item for item in take_inventory(store.root).items if item.name == name]
    assert len(matches) == 1, [item.name for item in take_inventory(store.root).items]
    return matches[0]


def _names(items: object) -> set[str]:
    return {item.name for item, _ in items}  # type: ignore[attr-defined]


def _populated(store: Store) -> dict[str, str]:
    """A tagged image, a cached step layer, an untagged image, an orphan layer."""
    base = store.layer({"bin/sh": b"shell"})
    step = store.layer({"app": b"built"})
    store.cache_entry(key("step"), step)
    tagged = store.image([base, step], "app:1")
    extra = store.layer({"extra": b"x" * 5000})
    store.cache_entry(key("extra"), extra)
    untagged = store.image([base, extra], label="untagged")
    orphan = store.layer({"orphan": b"o" * 3000})
    for digest in (base, step, extra, orphan):
        store.age(digest, 3600)
    for digest in (tagged, untagged):
        store.age_path(store.blob_path(digest), 3600)
    return {"base": base, "step": step, "tagged": tagged, "extra": extra,
            "untagged": untagged, "orphan": orphan}


def test_inventory_classifies_every_item_and_says_why(store: Store) -> None:
    made = _populated(store)
    base = _item(store, made["base"])
    assert (base.status, base.reason) == (KEPT, "layer of tagged image app:1")
    assert {part.category for part in base.parts} == {"layers", "snapshots"}
    assert _item(store, made["step"]).status == KEPT  # cached, but the tag needs it too
    extra = _item(store, made["extra"])
    assert (extra.status, extra.reason) == (CACHE, "build cache")
    assert [part.category for part in extra.parts] == ["cache index", "snapshots", "layers"]
    untagged = _item(store, made["untagged"])
    assert (untagged.kind, untagged.status, untagged.reason) == ("image", DANGLING,
                                                                 "untagged image")
    assert {part.category for part in untagged.parts} == {"manifests", "configs"}
    orphan = _item(store, made["orphan"])
    assert orphan.status == DANGLING
    assert orphan.reason == "layer no tag and no cache entry refers to"
    assert _item(store, made["tagged"]).reason == "tagged image app:1"
    records = _item(store, "cache.db")
    assert (records.kind, records.status) == ("records", KEPT)
    # Sizes are what the files use on disk.
    blob = store.blob_path(made["orphan"])
    assert any(part.size == blob.stat().st_blocks * 512 for part in orphan.parts)


def test_default_prune_removes_only_what_nothing_refers_to(store: Store) -> None:
    made = _populated(store)
    result = prune(store.root, PruneOptions())
    assert _names(result.removed) == {made["untagged"], made["orphan"]}
    assert not store.blob_path(made["untagged"]).exists()
    assert not store.blob_path(made["orphan"]).exists()
    assert not store.snapshot_path(made["orphan"]).exists()
    # Build cache stays (prune --all takes it), the tagged image is whole.
    assert store.blob_path(made["extra"]).exists()
    assert store.index.lookup(key("extra")) is not None
    for name in ("base", "step", "tagged"):
        assert store.blob_path(made[name]).exists()
    assert result.reclaimed > 3000
    assert os.listdir(store.root / "tmp") == []  # snapshots went through tmp, and are gone


def test_prune_all_removes_unused_cache_but_nothing_a_tag_needs(store: Store) -> None:
    made = _populated(store)
    result = prune(store.root, PruneOptions(all=True))
    assert _names(result.removed) == {made["untagged"], made["orphan"], made["extra"]}
    assert store.index.lookup(key("extra")) is None  # its row went with its layer
    assert not store.snapshot_path(made["extra"]).exists()
    assert store.index.lookup(key("step")) is not None
    for name in ("base", "step", "tagged"):
        assert store.blob_path(made[name]).exists()
    assert store.images.resolve("app:1").digest == made["tagged"]
    assert prune(store.root, PruneOptions(all=True)).removed == ()


def test_dry_run_lists_what_would_go_and_why_and_removes_nothing(store: Store) -> None:
    made = _populated(store)
    before = sorted(os.listdir(store.root / "blobs" / "sha256"))
    result = prune(store.root, PruneOptions(all=True, dry_run=True))
    assert result.dry_run
    reasons = {item.name: why for item, why in result.removed}
    assert reasons[made["extra"]] == "build cache"
    assert reasons[made["untagged"]] == "untagged image"
    assert sorted(os.listdir(store.root / "blobs" / "sha256")) == before
    assert store.index.lookup(key("extra")) is not None


def test_keep_storage_removes_least_recently_used_cache_first(store: Store) -> None:
    layers = []
    for number, age in enumerate((300, 100, 200)):
        digest = store.layer({f"f{number}": os.urandom(20000)})
        store.cache_entry(key(f"k{number}"), digest)
        store.age(digest, age)
        layers.append(digest)
    total = take_inventory(store.root).total()
    one = _item(store, layers[0]).size
    # Room for everything but one layer: the least recently used one goes.
    result = prune(store.root, PruneOptions(all=True, keep_storage=total - one // 2))
    assert _names(result.removed) == {layers[0]}
    total = take_inventory(store.root).total()
    result = prune(store.root, PruneOptions(all=True, keep_storage=total - one // 2))
    assert _names(result.removed) == {layers[2]}
    assert store.blob_path(layers[1]).exists()


def test_until_filter_keeps_what_was_used_recently(store: Store) -> None:
    old = store.layer({"old": b"o"})
    new = store.layer({"new": b"n"})
    for name, digest, age in (("old", old, 7200), ("new", new, 60)):
        store.cache_entry(key(name), digest)
        store.age(digest, age)
    result = prune(store.root, PruneOptions(all=True, until=3600))
    assert _names(result.removed) == {old}
    assert store.blob_path(new).exists()


def test_hits_update_last_used_and_a_leased_index_leases_what_it_finds(store: Store) -> None:
    digest = store.layer({"f": b"data"})
    store.cache_entry(key("a"), digest)
    store.age(digest, 5000)
    before = {entry.cache_key: used for entry, used in store.index.rows()}[key("a")]
    store.index.touch(key("a"))
    after = {entry.cache_key: used for entry, used in store.index.rows()}[key("a")]
    assert after > before + 4000
    lease = Leases(store.root).acquire("build")
    try:
        assert LeasedIndex(store.root / "cache.db", lease).lookup(key("a")) is not None
        (live,) = Leases(store.root).live()
        assert f"layer {digest}" in live.uses
        assert live.pid == os.getpid()
    finally:
        lease.release()
    assert Leases(store.root).live() == []
    assert not lease.path.exists()


def test_a_running_build_keeps_what_it_leased_and_all_it_made_since_it_started(
    store: Store,
) -> None:
    leased = store.layer({"leased": b"l" * 4000})
    unleased = store.layer({"unleased": b"u" * 4000})
    for digest in (leased, unleased):
        store.age(digest, 3600)
    lease = Leases(store.root).acquire("build")
    try:
        with lease.guard():
            lease.use("layer", [leased])
        fresh = store.layer({"fresh": b"f" * 4000})  # made by the running build
        item = _item(store, leased)
        assert item.status == KEPT
        assert item.reason == f"in use by a running build (pid {os.getpid()})"
        assert _item(store, fresh).reason == "in use by a running build (used since it started)"
        result = prune(store.root, PruneOptions(all=True))
        assert _names(result.removed) == {unleased}
        assert store.blob_path(leased).exists() and store.blob_path(fresh).exists()
    finally:
        lease.release()
    assert _names(prune(store.root, PruneOptions(all=True)).removed) == {leased, fresh}


def test_a_lease_blocks_nothing_once_its_build_is_killed(store: Store) -> None:
    digest = store.layer({"x": b"x" * 4000})
    store.age(digest, 3600)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from cache.leases import Leases\n"
        "lease = Leases(Path(sys.argv[1])).acquire('build')\n"
        "with lease.guard():\n"
        f"    lease.use('layer', ['{digest}'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(store.root)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert _item(store, digest).status == KEPT
        assert prune(store.root, PruneOptions()).removed == ()
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert Leases(store.root).live() == []
    assert len(Leases(store.root).dead()) == 1
    result = prune(store.root, PruneOptions())
    assert _names(result.removed) == {digest}
    assert Leases(store.root).dead() == []  # prune swept the dead lease


def test_a_layer_stays_while_an_image_that_cannot_outlive_it_must_stay(store: Store) -> None:
    cached = store.layer({"c": b"c" * 3000})
    store.cache_entry(key("c"), cached)
    store.age(cached, 3600)
    image = store.image([cached], label="new")  # untagged, just made: kept by until
    result = prune(store.root, PruneOptions(all=True, until=600))
    assert result.removed == ()
    store.age_path(store.blob_path(image), 3600)
    config = [part.target for part in _item(store, image).parts if part.category == "configs"]
    store.age_path(store.blob_path(config[0]), 3600)
    # Once the image may go too, the layer goes with it (and the image with the layer).
    result = prune(store.root, PruneOptions(all=True, until=600))
    assert _names(result.removed) == {cached, image}
    kinds = [item.kind for item, _ in result.removed]
    assert kinds.index("image") < kinds.index("layer")  # what refers goes first


def test_cache_mounts_are_cache_and_in_use_ones_stay(store: Store) -> None:
    mounts = CacheMounts(store.root)
    (mounts.directory("go-build") / "data" / "obj").write_bytes(b"o" * 9000)
    mounts.directory("npm")
    for mount_id in ("go-build", "npm"):
        store.age_path(mounts.path(mount_id), 3600)
    item = _item(store, "go-build")
    assert (item.kind, item.status) == ("cachemount", CACHE)
    assert item.size >= 9000
    assert prune(store.root, PruneOptions()).removed == ()  # not dangling
    with mounts.use("npm", "shared"):
        assert _item(store, "npm").reason == "in use by a running step"
        result = prune(store.root, PruneOptions(all=True))
    assert _names(result.removed) == {"go-build"}
    assert not mounts.path("go-build").exists()
    assert mounts.path("npm").exists()


def test_tmp_leftovers_of_dead_builds_go_and_fresh_ones_stay(store: Store) -> None:
    dead = store.root / "tmp" / "tmpdead"
    (dead / "upper").mkdir(parents=True)
    (dead / "upper" / "big").write_bytes(b"b" * 10000)
    store.age_path(dead, 3600)
    fresh = store.root / "tmp" / "tmpfresh"
    fresh.mkdir()
    assert _item(store, "tmpdead").status == DANGLING
    assert _item(store, "tmpfresh").status == KEPT
    result = prune(store.root, PruneOptions())
    assert _names(result.removed) == {"tmpdead"}
    assert not dead.exists() and fresh.exists()


def test_journal_entries_go_with_their_image(store: Store) -> None:
    base = store.layer({"b": b"b"})
    store.age(base, 3600)
    image = store.image([base], label="j")
    store.age_path(store.blob_path(image), 3600)
    journal = store.root / "journal"
    journal.mkdir()
    (journal / "k1").write_text(json.dumps({"manifest": image}))
    (journal / "k2").write_text(json.dumps({"manifest": "sha256:" + "0" * 64}))
    for name in ("k1", "k2"):
        store.age_path(journal / name, 3600)
    assert _item(store, "k2").reason == "its image is gone"
    result = prune(store.root, PruneOptions())
    assert {"k1", "k2", image} <= _names(result.removed)
    assert not (journal / "k1").exists()


def test_collect_after_build_prunes_only_over_the_limit(store: Store) -> None:
    digests = []
    for number in range(3):
        digest = store.layer({f"f{number}": os.urandom(30000)})
        store.cache_entry(key(f"c{number}"), digest)
        store.age(digest, 1000 - number)
        digests.append(digest)
    total = take_inventory(store.root, exact=False).total()
    assert collect_after_build(store.root, total) is None
    result = collect_after_build(store.root, total - 1)
    assert result is not None
    assert _names(result.removed) == {digests[0]}


@pytest.mark.parametrize(("text", "size"), [
    ("1000", 1000), ("10b", 10), ("1k", 1024), ("2KB", 2048), ("1.5MiB", 3 << 19),
    ("10GB", 10 << 30), ("1 g", 1 << 30), ("3T", 3 << 40),
])
def test_parse_size_reads_docker_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10XB", "-5", "1.2.3G"])
def test_parse_size_refuses_what_is_no_size(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_keep_storage_policy_comes_from_the_root_config(tmp_path: Path) -> None:
    assert load_keep_storage(tmp_path) is None
    (tmp_path / "config.json").write_text('{"gc": {"keepStorage": "512MB"}}')
    assert load_keep_storage(tmp_path) == 512 << 20
    (tmp_path / "config.json").write_text('{"gc": {"keepStorage": 4096}}')
    assert load_keep_storage(tmp_path) == 4096
    (tmp_path / "config.json").write_text('{"gc": {"keepStorage": "lots"}}')
    with pytest.raises(CacheError, match=r"config.json: gc.keepStorage: invalid size"):
        load_keep_storage(tmp_path)
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(CacheError, match="not valid JSON"):
        load_keep_storage(tmp_path)


def test_key_locks_serialise_holders_and_leave_no_files(tmp_path: Path) -> None:
    locks = KeyLocks(tmp_path)
    inside: list[int] = []
    overlaps: list[int] = []

    def hold(number: int) -> None:
        with locks.hold(key("same")):
            inside.append(number)
            if len(inside) > 1:
                overlaps.append(number)
            time.sleep(0.02)
            inside.remove(number)

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert os.listdir(tmp_path / "locks") == []


def test_a_key_lock_left_by_a_killed_holder_is_taken_and_swept(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from cache.keylocks import KeyLocks\n"
        "with KeyLocks(Path(sys.argv[1])).hold(sys.argv[2]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), key("k")], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert os.listdir(tmp_path / "locks") == [key("k")]  # left behind, unlocked
    with KeyLocks(tmp_path).hold(key("k")):
        pass
    assert os.listdir(tmp_path / "locks") == []
    (tmp_path / "locks" / key("other")).touch()
    assert KeyLocks(tmp_path).sweep() == 1
