"""SnapshotStore: atomic landing, harmless races, adoption by rename, scratch mounts that clean up."""

from __future__ import annotations

import io
import os
import signal
import tarfile
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from builder.errors import StoreError
from builder.snapshot import mounts_under
from builder.snapshot.diff import write_layer
from builder.snapshot.store import SnapshotStore
from tests.snapshot.trees import needs_root


def _layer_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


class _Opener:
    """Counts how often the store asks for the tar, optionally meeting a second caller."""

    def __init__(self, data: bytes, barrier: threading.Barrier | None = None) -> None:
        self.data = data
        self.barrier = barrier
        self.calls = 0

    def __call__(self) -> BinaryIO:
        self.calls += 1
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        return io.BytesIO(self.data)


def test_ensure_from_tar_extracts_once_and_lands_whole(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    opener = _Opener(_layer_bytes({"etc/hostname": b"box\n"}))
    path = store.ensure_from_tar("abc123", opener)
    assert path == tmp_path / "snapshots" / "abc123" / "fs"
    assert (path / "etc" / "hostname").read_bytes() == b"box\n"
    assert store.ensure_from_tar("abc123", opener) == path
    assert opener.calls == 1
    assert store.exists("abc123") and store.path("abc123") == path
    assert os.listdir(tmp_path / "tmp") == []


def test_concurrent_creators_of_one_key_both_succeed(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    opener = _Opener(_layer_bytes({"f": b"same"}), threading.Barrier(2))
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.ensure_from_tar("k", opener)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opener.calls == 2  # both extracted; one rename won
    assert results == [store.path("k")] * 2
    assert (store.path("k") / "f").read_bytes() == b"same"
    assert os.listdir(tmp_path / "tmp") == []
    assert os.listdir(tmp_path / "snapshots") == ["k"]


def test_failed_extraction_leaves_no_snapshot_and_no_litter(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    with pytest.raises(StoreError):
        store.ensure_from_tar("bad", lambda: io.BytesIO(b"garbage" * 100))
    assert not store.exists("bad")
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize("key", ["", "../escape", "a/b", ".hidden", "x" * 200, "sha256:abc"])
def test_keys_must_be_plain_names(tmp_path: Path, key: str) -> None:
    with pytest.raises(StoreError, match="not a plain name"):
        SnapshotStore(tmp_path).path(key)


def test_adopt_moves_the_upper_without_copying(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    upper = tmp_path / "tmp" / "scratch" / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "f").write_text("x")
    os.setxattr(upper / "d", "user.overlay.opaque", b"y")
    os.setxattr(upper / "d" / "f", "user.overlay.origin", b"bookkeeping")
    os.setxattr(upper / "d" / "f", "user.kept", b"v")
    inode = os.stat(upper / "d" / "f").st_ino
    path = store.adopt("step1", upper)
    assert not upper.exists()
    assert os.stat(path / "d" / "f").st_ino == inode
    assert os.listxattr(path / "d" / "f") == ["user.kept"]
    assert os.getxattr(path / "d", "user.overlay.opaque") == b"y"
    other = tmp_path / "tmp" / "other"
    other.mkdir()
    assert store.adopt("step1", other) == path and not other.exists()


def test_remove_deletes_and_tolerates_absence(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.ensure_from_tar("k", _Opener(_layer_bytes({"f": b""})))
    store.remove("k")
    assert not store.exists("k")
    store.remove("k")
    assert os.listdir(tmp_path / "snapshots") == [] and os.listdir(tmp_path / "tmp") == []


def _two_layer_store(tmp_path: Path) -> SnapshotStore:
    store = SnapshotStore(tmp_path / "root")
    store.ensure_from_tar("base", _Opener(_layer_bytes({"a": b"base", "b": b"base"})))
    store.ensure_from_tar("top", _Opener(_layer_bytes({"b": b"top"})))
    return store


@needs_root
def test_prepare_mounts_lowers_top_first_and_cleans_up(tmp_path: Path) -> None:
    store = _two_layer_store(tmp_path)
    with store.prepare(["top", "base"]) as active:
        assert (active.rootfs / "a").read_bytes() == b"base"
        assert (active.rootfs / "b").read_bytes() == b"top"
        assert mounts_under(store.root) == [str(active.rootfs)]
        scratch = active.scratch
    assert mounts_under(store.root) == []
    assert not scratch.exists()
    assert os.listdir(store.root / "tmp") == []


@needs_root
def test_commit_inside_prepare_adopts_the_upper(tmp_path: Path) -> None:
    store = _two_layer_store(tmp_path)
    with store.prepare(["top", "base"]) as active:
        (active.rootfs / "c").write_text("new")
        os.remove(active.rootfs / "a")
        active.unmount()
        active.unmount()  # idempotent
        assert mounts_under(store.root) == []
        with open(tmp_path / "layer.tar", "wb") as out:
            stats = write_layer(active.upper, out)
        key = stats.diff_id.removeprefix("sha256:")
        store.adopt(key, active.upper)
    with store.prepare([key, "top", "base"]) as active:
        assert sorted(os.listdir(active.rootfs)) == ["b", "c"]
    assert os.listdir(store.root / "tmp") == []


@needs_root
def test_prepare_without_lowers_starts_empty(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    with store.prepare([]) as active:
        assert os.listdir(active.rootfs) == []
    assert mounts_under(tmp_path) == []


@needs_root
def test_failed_step_can_keep_its_upper_for_inspection(tmp_path: Path) -> None:
    store = _two_layer_store(tmp_path)
    with (
        pytest.raises(RuntimeError) as caught,
        store.prepare(["base"], keep_upper_on_error=True) as active,
    ):
        (active.rootfs / "evidence").write_text("why it failed")
        raise RuntimeError("step failed")
    assert mounts_under(store.root) == []
    assert (active.upper / "evidence").read_text() == "why it failed"
    assert os.listdir(active.scratch) == ["upper"]
    assert f"upper dir is kept at {active.upper}" in caught.value.__notes__[0]


@needs_root
def test_failed_step_without_keep_leaves_nothing(tmp_path: Path) -> None:
    store = _two_layer_store(tmp_path)
    with pytest.raises(RuntimeError), store.prepare(["base"]) as active:
        raise RuntimeError("step failed")
    assert mounts_under(store.root) == [] and not active.scratch.exists()


@needs_root
def test_keyboard_interrupt_unmounts_and_cleans(tmp_path: Path) -> None:
    store = _two_layer_store(tmp_path)
    with pytest.raises(KeyboardInterrupt), store.prepare(["top", "base"]) as active:
        signal.raise_signal(signal.SIGINT)
    assert mounts_under(store.root) == [] and not active.scratch.exists()


def test_prepare_refuses_missing_lower_snapshots(tmp_path: Path) -> None:
    with (
        pytest.raises(StoreError, match="no snapshot missing"),
        SnapshotStore(tmp_path).prepare(["missing"]),
    ):
        pass


@needs_root
def test_prepare_mounts_a_chain_of_120_snapshots(tmp_path: Path) -> None:
    # Real snapshot paths are ~100 bytes each, so 120 of them overflow one
    # page of mount options; the store must still mount them, in order.
    store = SnapshotStore(tmp_path / "root", durable=False)
    keys = []
    for index in range(120):
        key = f"{index:064x}"
        store.ensure_from_tar(key, _Opener(_layer_bytes({f"f{index}": b"", "top": b"%d" % index})))
        keys.append(key)
    with store.prepare(list(reversed(keys))) as active:
        assert len(os.listdir(active.rootfs)) == 121
        assert (active.rootfs / "top").read_bytes() == b"119"
    assert mounts_under(store.root) == []
