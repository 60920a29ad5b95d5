"""Mount points the step needed but its root lacked are gone afterwards, unless used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.sandbox import BindMount, TmpfsMount, stubs
from tests.sandbox.conftest import sh


def test_find_missing_lists_targets_and_parents_deepest_first(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts").write_text("")
    found = stubs.find_missing(tmp_path, ["/etc/hosts", "/etc/resolv.conf", "/a/b/c", "/a/d"])
    assert found == ("a/b/c", "a/b", "a/d", "etc/resolv.conf", "a")


def test_remove_keeps_what_is_not_empty_and_restores_times(tmp_path: Path) -> None:
    for directory in ("a/b/c", "keep/x"):
        (tmp_path / directory).mkdir(parents=True)
    (tmp_path / "keep" / "x" / "file").write_text("data")
    (tmp_path / "empty-file").write_text("")
    (tmp_path / "full-file").write_text("content")
    os.utime(tmp_path, ns=(10**18, 10**18))
    stubs.remove(tmp_path, ("a/b/c", "a/b", "a", "keep/x", "keep", "empty-file", "full-file"))
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["full-file", "keep"]
    assert tmp_path.stat().st_mtime_ns == 10**18


def test_remove_never_follows_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "dir").mkdir(parents=True)
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").symlink_to(victim)
    stubs.remove(root, ("a/dir",))
    assert (victim / "dir").is_dir()


@pytest.mark.root
def test_a_step_leaves_no_stubs_behind(rootfs: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "f").write_text("from the host\n")
    (rootfs / "etc" / "resolv.conf").unlink(missing_ok=True)
    before = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    result = sh(rootfs, "cat /mnt/deep/src/f; ls /cache/tmp; echo ok", mounts=(
        BindMount(source, "/mnt/deep/src", readonly=True), TmpfsMount("/cache/tmp")))
    assert result.lines == ["from the host", "ok"]
    after = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    # /proc, /dev and /sys stay when they had to be made, as with runc
    assert [p for p in after if p not in before and p not in ("proc", "dev", "sys")] == []


@pytest.mark.root
def test_stub_the_step_wrote_into_is_kept(rootfs: Path) -> None:
    result = sh(rootfs, "mkdir -p /cache && touch /cache/mine && echo ok",
                mounts=(TmpfsMount("/cache/tmp"),))
    assert result.lines == ["ok"]
    assert sorted(p.name for p in (rootfs / "cache").iterdir()) == ["mine"]
