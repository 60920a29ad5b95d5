"""pivot_root normally; chroot (without CAP_SYS_CHROOT) when the builder's root is no mount point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.sandbox.conftest import sh

pytestmark = pytest.mark.root

# The process count comes from the shell's own glob: a pipeline (ls | grep) made it
# 2, 3 or 4 depending on which of its processes were alive when /proc was read.
# In its own PID namespace the step's shell is alone: exactly one.
PROBE = "grep CapBnd /proc/self/status; set -- /proc/[0-9]*; echo $#; " \
        "test -e {marker} && echo host-visible; mount | grep -c ' / '; echo done"


def test_pivot_root_is_used_normally(plain_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.write_text("")
    result = sh(plain_root, PROBE.format(marker=marker))
    assert result.lines == ["CapBnd:\t00000000a80425fb", "1", "1", "done"], result.output


def test_chroot_fallback_when_the_current_root_is_not_a_mount_point(
        plain_root: Path, tmp_path: Path) -> None:
    """The builder runs chrooted into a plain directory, so pivot_root fails with EINVAL."""
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (util-linux, coreutils)")
    marker = tmp_path / "marker"
    marker.write_text("")
    jail = tmp_path / "jail"
    binds = ["bin", "sbin", "lib", "lib32", "lib64", "usr", "etc", "root", "proc", "dev", "tmp",
             str(REPO).strip("/").split("/")[0]]
    binds = [name for name in binds if Path("/", name).is_dir() and not Path("/", name).is_symlink()]
    links = [name for name in ("bin", "sbin", "lib", "lib32", "lib64")
             if Path("/", name).is_symlink()]
    setup = [f"mkdir -p {jail}"]
    setup += [f"mkdir -p {jail}/{name} && mount --rbind /{name} {jail}/{name}" for name in binds]
    setup += [f"ln -s $(readlink /{name}) {jail}/{name}" for name in links]
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from pathlib import Path; from builder.sandbox import RunSpec, run; "
            f"spec = RunSpec(argv=('/bin/sh', '-c', {PROBE.format(marker=marker)!r}), "
            f"rootfs=Path({str(plain_root)!r})); "
            "out = []; code = run(spec, output=out.append); "
            "sys.stdout.write(b''.join(out).decode()); print('exit', code)")
    script = " && ".join(setup) + f" && chroot {jail} {sys.executable} -c \"$CODE\""
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            env={"CODE": code, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    # CAP_SYS_CHROOT (bit 18) is gone; the host stays invisible.
    assert result.stdout.splitlines() == ["CapBnd:\t00000000a80025fb", "1", "1", "done",
                                          "exit 0"], result.stdout + result.stderr
