"""Busybox roots for the sandbox tests: a plain directory, or an overlay over a shared tree.

Tests that need one are marked ``root``; they skip only when not running as
root or when /bin/busybox (Debian's busybox-static) is missing, and under
CI=true a skip fails (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from builder.sandbox import RunSpec, run

BUSYBOX = Path("/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nstaff:x:50:app\nwheel:x:10:root,app\n"


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    output: str

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()


def make_busybox_tree(directory: Path) -> Path:
    """bin/busybox, a symlink per applet, /etc/passwd, /etc/group, /tmp."""
    (directory / "bin").mkdir(parents=True)
    (directory / "etc").mkdir()
    (directory / "tmp").mkdir(mode=0o1777)
    os.chmod(directory / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, directory / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (directory / "bin" / applet).symlink_to("busybox")
    (directory / "etc" / "passwd").write_text(PASSWD)
    (directory / "etc" / "group").write_text(GROUP)
    return directory


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, mounts)")
    if not BUSYBOX.is_file():
        pytest.skip("needs /bin/busybox (apt-get install busybox-static)")


@pytest.fixture(scope="session")
def busybox_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    return make_busybox_tree(tmp_path_factory.mktemp("busybox") / "tree")


@pytest.fixture
def plain_root(tmp_path: Path) -> Path:
    """A fresh busybox root in a plain directory (no mount of its own)."""
    require_root()
    return make_busybox_tree(tmp_path / "plain-root")


@pytest.fixture
def overlay_root(busybox_tree: Path, tmp_path: Path) -> Iterator[Path]:
    """The shared busybox tree under a per-test overlay, as the run op will prepare it."""
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for directory in (upper, work, merged):
        directory.mkdir()
    options = f"lowerdir={busybox_tree},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@pytest.fixture(params=["overlay", "plain"])
def rootfs(request: pytest.FixtureRequest) -> Path:
    """Both kinds of root the sandbox must not care about."""
    name = "overlay_root" if request.param == "overlay" else "plain_root"
    root: Path = request.getfixturevalue(name)
    return root


def sh(rootfs: Path, script: str, *, timeout: float | None = 60, **fields: Any) -> Result:
    """Run ``/bin/sh -c script`` in ``rootfs``; extra RunSpec fields as keywords."""
    fields.setdefault("env", ("PATH=/bin",))
    spec = RunSpec(argv=("/bin/sh", "-c", script), rootfs=rootfs, **fields)
    return execute(spec, timeout=timeout)


def execute(spec: RunSpec, *, stdin: bytes | None = None, timeout: float | None = 60) -> Result:
    chunks: list[bytes] = []
    code = run(spec, output=chunks.append, stdin=stdin, timeout=timeout)
    return Result(code, b"".join(chunks).decode("utf-8", "replace"))


def host_mountinfo(*near: Path) -> list[str]:
    """The host's mount table lines that mention any of ``near`` (a step's root, its sources).

    The whole table is not compared: other builds on this machine mount and
    unmount at any time. A mount leaking out of a step would name its root.
    """
    needles = [str(path) for path in near]
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if any(needle in line for needle in needles)]


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found
