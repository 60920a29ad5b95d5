"""The registry through the CLI: push what a build made, pull it elsewhere, FROM pulls it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.image import oci
from tests.conftest import REPO
from tests.image.sample import skopeo
from tests.registry.conftest import LiveRegistry

pytestmark = pytest.mark.root

BUSYBOX = Path("/bin/busybox")


def _pybuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args], capture_output=True, text=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300, check=False,
    )


def test_push_pull_and_from_a_registry(registry: LiveRegistry, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not BUSYBOX.exists():
        pytest.skip("builds need root and busybox-static")
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "bin" / "cat").symlink_to("busybox")
    first, second = tmp_path / "first", tmp_path / "second"
    assert _pybuild("import", "--root", str(first), str(rootfs), "-t", "tiny").returncode == 0
    remote = f"{registry.host}/team/tiny:1"
    pushed = _pybuild("push", "--root", str(first), "tiny", remote)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("digest: sha256:")
    pulled = _pybuild("pull", "--root", str(second), remote)
    assert pulled.returncode == 0, pulled.stderr
    assert remote in _pybuild("images", "--root", str(second)).stdout
    # A third, empty root: FROM names the registry, so the base is pulled.
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {registry.host}/team/tiny:1\nRUN echo pulled > /marker && cat /marker\n"
    )
    built = _pybuild("build", "--root", str(tmp_path / "third"), "--progress", "plain",
                     "-t", "on-top", str(context))
    assert built.returncode == 0, built.stderr
    assert "pulled" in built.stderr
    # A newer base under the same tag: a plain build keeps the stored one,
    # --pull asks the registry and rebuilds on the new base.
    (rootfs / "newer").write_text("v2")
    assert _pybuild("import", "--root", str(first), str(rootfs), "-t", "tiny").returncode == 0
    assert _pybuild("push", "--root", str(first), "tiny", remote).returncode == 0
    stale = _pybuild("build", "--root", str(tmp_path / "third"), "--progress", "plain",
                     "-t", "on-top", str(context))
    assert re.search(r"pybuild: \d+ steps, 0 run, 1 cached", stale.stderr), stale.stderr
    again = _pybuild("build", "--root", str(tmp_path / "third"), "--progress", "plain",
                     "--pull", "-t", "on-top", str(context))
    assert again.returncode == 0, again.stderr
    assert re.search(r"pybuild: \d+ steps, 1 run, 0 cached", again.stderr), again.stderr
    # --push sends the built image to the registry its -t name points at.
    pushed_build = _pybuild("build", "--root", str(tmp_path / "third"), "--progress", "plain",
                            "--push", "-t", f"{registry.host}/team/on-top:1", str(context))
    assert pushed_build.returncode == 0, pushed_build.stderr
    fourth = _pybuild("pull", "--root", str(tmp_path / "fourth"), f"{registry.host}/team/on-top:1")
    assert fourth.returncode == 0, fourth.stderr
    # -o type=registry takes buildx's compression keys: every layer goes up as zstd.
    zstd_ref = f"{registry.host}/team/on-top:zstd"
    zstd_build = _pybuild("build", "--root", str(tmp_path / "third"), "--progress", "plain",
                          "-o", f"type=registry,name={zstd_ref},compression=zstd", str(context))
    assert zstd_build.returncode == 0, zstd_build.stderr
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{zstd_ref}"))
    assert [layer["mediaType"] for layer in raw["layers"]] == [oci.OCI_LAYER_ZSTD] * 2


def test_missing_unqualified_base_is_not_pulled(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM nosuchbase\nRUN true\n")
    result = _pybuild("build", "--root", str(tmp_path / "root"), str(context))
    assert result.returncode == 1
    assert "Dockerfile:1" in result.stderr and "pybuild pull" in result.stderr
