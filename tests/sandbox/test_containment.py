"""Nothing a step does reaches the host: its files, /etc/hosts, resolv.conf, mount table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import BindMount, ExtraHost, TmpfsMount
from tests.sandbox.conftest import host_mountinfo, sh

pytestmark = pytest.mark.root


def test_host_files_cannot_be_reached_by_any_path(rootfs: Path, tmp_path: Path) -> None:
    marker = tmp_path / "host-marker-7f3a"
    marker.write_text("secret")
    host = str(marker)
    script = "; ".join([
        f"test -e {host} && echo direct",
        f"test -e /..{host} && echo dotdot",
        f"test -e /proc/1/root{host} && echo proc1root",
        f"test -e /proc/self/root/..{host} && echo selfroot",
        f"test -e /proc/1/cwd/../../../..{host} && echo cwd",
        f"cd / && cd ../../.. && test -e .{host} && echo climbed",
        "find / -path /proc -prune -o -path /sys -prune -o -name host-marker-7f3a -print",
        f"cd /proc/1/root && test -e .{host} && echo proc-root",
        "echo done",
    ])
    result = sh(rootfs, script)
    assert result.lines == ["done"], result.output


def test_root_of_the_step_is_its_rootfs(rootfs: Path) -> None:
    (rootfs / "etc" / "which-root").write_text("this one\n")
    result = sh(rootfs, "cat /etc/which-root; cat /proc/1/root/etc/which-root")
    assert result.lines == ["this one", "this one"]


def test_resolver_files_are_private_copies(rootfs: Path) -> None:
    host_hosts = Path("/etc/hosts").read_bytes()
    host_resolv = Path("/etc/resolv.conf").read_bytes()
    (rootfs / "etc" / "hosts").write_text("image hosts\n")
    result = sh(rootfs, "cat /etc/hosts; echo 1.2.3.4 evil >> /etc/hosts && echo wrote-hosts; "
                "echo nameserver 6.6.6.6 > /etc/resolv.conf && echo wrote-resolv",
                hostname="box", extra_hosts=(ExtraHost("registry", "10.0.0.5"),
                                             ExtraHost("v6", "fd00::1")))
    assert result.lines == ["127.0.0.1\tlocalhost box",
                            "::1\tlocalhost ip6-localhost ip6-loopback",
                            "10.0.0.5\tregistry", "fd00::1\tv6", "wrote-hosts", "wrote-resolv"]
    assert Path("/etc/hosts").read_bytes() == host_hosts
    assert Path("/etc/resolv.conf").read_bytes() == host_resolv
    assert (rootfs / "etc" / "hosts").read_text() == "image hosts\n"


def test_resolv_conf_is_the_hosts(rootfs: Path) -> None:
    result = sh(rootfs, "cat /etc/resolv.conf")
    assert result.output.encode() == Path("/etc/resolv.conf").read_bytes()


def test_host_mount_table_is_unchanged(rootfs: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    before = host_mountinfo(rootfs, tmp_path)
    result = sh(rootfs, "mount | wc -l", mounts=(BindMount(data, "/data"),
                                              TmpfsMount("/scratch", 1 << 20)))
    assert int(result.lines[0]) > 15
    assert host_mountinfo(rootfs, tmp_path) == before


def test_symlinked_mount_targets_resolve_inside_the_root(rootfs: Path, tmp_path: Path) -> None:
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    (rootfs / "etc" / "hosts").symlink_to(victim_dir / "hosts")
    (rootfs / "cache").symlink_to(victim_dir / "cache")
    (rootfs / "up").symlink_to("../../../../../../" + str(victim_dir / "up"))
    result = sh(rootfs, "cat /etc/hosts | head -1; touch /cache/x /up/y; echo ok",
                mounts=(TmpfsMount("/cache"), TmpfsMount("/up")))
    assert result.lines == ["127.0.0.1\tlocalhost buildkitsandbox", "ok"]
    assert list(victim_dir.iterdir()) == []


def test_symlink_loop_in_a_mount_target_is_an_error(rootfs: Path) -> None:
    (rootfs / "loop").symlink_to("loop")
    with pytest.raises(SandboxError, match="mount point /loop/x"):
        sh(rootfs, "true", mounts=(TmpfsMount("/loop/x"),))


def test_root_that_is_not_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="is not a directory"):
        sh(tmp_path / "missing", "true")


def test_step_cannot_unmount_its_way_out(rootfs: Path, tmp_path: Path) -> None:
    marker = tmp_path / "host-marker-umount"
    marker.write_text("secret")
    result = sh(rootfs, f"umount -l /proc; umount -l /; test -e {marker} && echo escaped; "
                "echo done")
    assert result.lines[-1] == "done" and "escaped" not in result.lines
    assert os.path.exists(marker)
