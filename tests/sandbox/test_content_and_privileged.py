"""Content mounts (secrets, inline scripts) and privileged steps, at the sandbox's level."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.sandbox import BindMount, ContentMount, TmpfsMount
from tests.sandbox.conftest import host_mountinfo, sh

pytestmark = pytest.mark.root


def test_content_mount_is_a_private_file_with_its_mode_and_owner(rootfs: Path) -> None:
    result = sh(rootfs, "stat -c '%a %u %g' /run/secrets/a /run/secrets/b; cat /run/secrets/a; "
                "echo; echo x 2>/dev/null > /run/secrets/a || echo refused; echo y > /run/secrets/b && "
                "cat /run/secrets/b; ls /dev | grep -c pybuild", mounts=(
                    ContentMount("/run/secrets/a", b"alpha", mode=0o440, uid=1000, gid=50),
                    ContentMount("/run/secrets/b", b"beta", mode=0o600, readonly=False)))
    assert result.lines == ["440 1000 50", "600 0 0", "alpha", "refused", "y", "0"]
    assert not (rootfs / "run").exists()  # stubs gone, nothing written on the host


def test_readonly_tmpfs(rootfs: Path) -> None:
    result = sh(rootfs, "touch /t/f 2>/dev/null || echo refused", mounts=(TmpfsMount("/t", readonly=True),))
    assert result.lines[-1] == "refused"


def test_privileged_step_has_every_capability_and_the_host_devices(rootfs: Path) -> None:
    mounted_before = host_mountinfo(rootfs)
    script = ("grep CapEff /proc/self/status | cut -f2; "
              "echo x > /proc/sys/kernel/hostname && hostname; "
              "test -c /dev/kmsg && echo kmsg; mount -t tmpfs none /tmp && echo mounted; "
              "touch /sys/pybuild 2>&1 | grep -c 'Read-only'")
    plain = sh(rootfs, script)
    privileged = sh(rootfs, script, privileged=True)
    bounding = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("CapBnd:"))
    assert plain.lines[0] == "00000000a80425fb"
    assert "kmsg" not in plain.lines and "mounted" not in plain.lines
    assert privileged.lines[:4] == [bounding, "x", "kmsg", "mounted"]
    assert privileged.lines[-1] == "0"  # /sys is writable (the kernel still refuses files)
    assert host_mountinfo(rootfs) == mounted_before  # the step's mount stayed its own


def test_bind_subpath_resolves_inside_its_source(rootfs: Path, tmp_path: Path) -> None:
    source = tmp_path / "cache"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "f").write_text("inside\n")
    (source / "root").symlink_to("/")  # "/" means the source's own root here
    result = sh(rootfs, "cat /a/f /b/sub/f; ls /c", mounts=(
        BindMount(source, "/a", subpath="root/sub"),
        BindMount(source, "/b", subpath="../../root"),
        BindMount(source, "/c", subpath="sub", readonly=True)))
    assert result.lines == ["inside", "inside", "f"], result.output
