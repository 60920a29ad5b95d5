"""Fixtures for whole builds: a busybox base image, a pybuild root, a runner for the CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO

BUSYBOX = Path("/bin/busybox")


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("whole builds need root (mounts and namespaces)")
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal root file system: busybox and its applet links, passwd and group."""
    _needs_root()
    root = tmp_path_factory.mktemp("busybox-rootfs")
    for sub in ("bin", "etc", "tmp", "root", "home"):
        (root / sub).mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "app:x:1000:1000:app:/home/app:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (root / "etc" / "group").write_text(
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n"
    )
    (root / "tmp").chmod(0o1777)
    return root


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def pybuild_root(tmp_path: Path, busybox_rootfs: Path) -> Path:
    """A fresh pybuild root holding busybox:latest."""
    root = tmp_path / "root"
    result = _run(["import", str(busybox_rootfs), "-t", "busybox:latest", "--root", str(root)])
    assert result.returncode == 0, result.stderr
    return root


def _run(args: list[str], *, stdin: str | None = None, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=600,
        check=False,
    )


@pytest.fixture
def pybuild(pybuild_root: Path) -> Runner:
    """Run `pybuild ARGS --root ROOT` (the root goes after the subcommand's arguments)."""

    def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        command, *rest = args
        return _run([command, "--root", str(pybuild_root), *rest], stdin=stdin, env=env)

    return run


def make_context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    """A build context in tmp_path/context: the Dockerfile and the given files."""
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        path = context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return context


def summary_counts(stderr: str) -> tuple[int, int]:
    """(steps run, steps cached) from a build's summary line."""
    match = re.search(r"pybuild: \d+ steps, (\d+) run, (\d+) cached", stderr)
    assert match, stderr
    return int(match.group(1)), int(match.group(2))
