"""The spec's own mounts: bind (read-only or writable, always nodev) and tmpfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import BindMount, TmpfsMount
from tests.sandbox.conftest import sh

pytestmark = pytest.mark.root


def test_writable_bind_mount_writes_through(rootfs: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    result = sh(rootfs, "echo hi > /root/.cache/note && mount | grep ' /root/.cache '",
                mounts=(BindMount(cache, "/root/.cache"),))
    assert result.code == 0, result.output
    assert "(rw,nodev," in result.output
    assert (cache / "note").read_text() == "hi\n"


def test_read_only_bind_mount_refuses_writes(rootfs: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("x")
    result = sh(rootfs, "cat /src/f; echo; touch /src/g || echo refused",
                mounts=(BindMount(source, "/src", readonly=True),))
    assert result.lines[0] == "x" and result.lines[-1] == "refused"
    assert not (source / "g").exists()


def test_file_bind_mount(rootfs: Path, tmp_path: Path) -> None:
    source = tmp_path / "config.txt"
    source.write_text("setting=1\n")
    result = sh(rootfs, "cat /etc/app/config.txt", mounts=(
        BindMount(source, "/etc/app/config.txt", readonly=True),))
    assert result.lines == ["setting=1"]


def test_nested_mounts_are_made_parent_first(rootfs: Path, tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "marker").write_text("inner")
    result = sh(rootfs, "cat /outer/inner/marker", mounts=(
        BindMount(inner, "/outer/inner"), TmpfsMount("/outer")))
    assert result.lines == ["inner"]


def test_tmpfs_mount_has_its_size(rootfs: Path) -> None:
    result = sh(rootfs, "df -k /scratch | tail -1; mount | grep ' /scratch '",
                mounts=(TmpfsMount("/scratch", size=8 << 20),))
    assert result.lines[0].split()[1] == "8192"
    assert "nosuid,nodev" in result.lines[1]


def test_missing_bind_source_is_an_error(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="bind mount source .* does not exist"):
        sh(rootfs, "true", mounts=(BindMount(tmp_path / "nope", "/x"),))


def test_mount_over_a_file_with_a_directory_is_an_error(rootfs: Path) -> None:
    (rootfs / "afile").write_text("")
    with pytest.raises(SandboxError, match="afile"):
        sh(rootfs, "true", mounts=(TmpfsMount("/afile"),))
