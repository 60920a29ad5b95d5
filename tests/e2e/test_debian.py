"""The slow tier: a real Debian base made with debootstrap, apt-get install in a RUN.

debootstrap fetches from the machine's Debian mirror (the one apt uses), so
this tier needs that mirror; CI runs it.  The minbase tree is kept under
/var/tmp between runs on one machine, keyed by suite, to spare a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.e2e.conftest import _run

pytestmark = [pytest.mark.root, pytest.mark.slow]

SUITE = "bookworm"
CACHED_TREE = Path("/var/tmp/pybuild-test-debootstrap") / SUITE


def _mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="session")
def debian_rootfs() -> Path:
    if os.geteuid() != 0:
        pytest.skip("debootstrap and builds need root")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed")
    if not (CACHED_TREE / "usr" / "bin" / "apt-get").exists():
        CACHED_TREE.parent.mkdir(parents=True, exist_ok=True)
        # A private staging dir: two test runs may bootstrap at once.
        staging = Path(tempfile.mkdtemp(prefix=SUITE + ".", dir=CACHED_TREE.parent))
        try:
            subprocess.run(
                ["debootstrap", "--variant=minbase", SUITE, str(staging), _mirror()],
                check=True, capture_output=True, timeout=1200,
            )
            shutil.rmtree(CACHED_TREE, ignore_errors=True)
            staging.rename(CACHED_TREE)
        except OSError:
            if not (CACHED_TREE / "usr" / "bin" / "apt-get").exists():
                raise
        finally:
            _unmount_under(staging)
            shutil.rmtree(staging, ignore_errors=True)
    return CACHED_TREE


def _unmount_under(path: Path) -> None:
    """A failed debootstrap leaves /proc (and more) mounted in its target: unmount first."""
    from builder.snapshot.mount import mounts_under, umount

    for target in sorted(mounts_under(path), reverse=True):
        umount(target, lazy=True)


def test_debian_apt_get_install_builds_and_rebuilds_cached(
    debian_rootfs: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    imported = _run(["import", str(debian_rootfs), "-t", f"debian:{SUITE}", "--root", str(root)])
    assert imported.returncode == 0, imported.stderr
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM debian:{SUITE}\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends hello"
        " && rm -rf /var/lib/apt/lists/*\n"
        "RUN test \"$(hello)\" = 'Hello, world!'\n"
        'CMD ["hello"]\n'
    )
    first = _run(["build", "--root", str(root), "--progress", "plain", "-t", "hello",
                  str(context)])
    assert first.returncode == 0, first.stderr[-3000:]
    second = _run(["build", "--root", str(root), "--progress", "plain", "-t", "hello",
                   str(context)])
    assert second.returncode == 0, second.stderr
    assert re.search(r"pybuild: \d+ steps, 0 run, 2 cached", second.stderr), second.stderr
