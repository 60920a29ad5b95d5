"""Build one case with pybuild and with buildah, each in roots of its own, and read the results.

Both start from the same busybox image: pybuild's base root holds it, and
skopeo copies that very OCI layout into buildah's storage, so the base
layer is byte for byte the same. buildah stores on the overlay driver (vfs where the
scratch directory is itself on overlayfs). Both results are unpacked by umoci
(pybuild's store is an OCI layout; buildah pushes to one), so the trees are
read the same way. buildah builds in the docker format, the only one in
which it keeps Healthcheck, OnBuild and Shell, and its config is read with
``buildah inspect``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conformance.configs import normalise_config
from tests.conformance.differences import Built
from tests.conformance.trees import snapshot_tree
from tests.conftest import REPO

__all__ = [
    "BASE_TAG",
    "BuildFailed",
    "build_with_buildah",
    "build_with_pybuild",
    "make_base_root",
    "storage_driver",
]

BASE_TAG = "busybox:latest"
_TAG = "conformance:latest"
_TIMEOUT = 300


class BuildFailed(Exception):
    """A builder refused a case; the message holds its command and output."""


def _run(argv: list[str], *, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env,
                            timeout=_TIMEOUT, check=False)
    if result.returncode != 0:
        raise BuildFailed(f"{' '.join(argv)} exited {result.returncode}:\n"
                          f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result.stdout


def _unpack(layout: Path, tag: str, bundle: Path) -> Path:
    _run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)])
    return bundle / "rootfs"


def _pybuild(*args: str) -> list[str]:
    return [sys.executable, "-m", "builder", *args]


def make_base_root(rootfs: Path, root: Path) -> None:
    """A pybuild root holding ``busybox:latest`` made from ``rootfs``."""
    _run([*_pybuild("import", "--root", str(root), "-t", BASE_TAG, str(rootfs))],
         env={**os.environ, "PYTHONPATH": str(REPO)})


def _stored_config(layout: Path, tag: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    for descriptor in index["manifests"]:
        if descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            manifest = json.loads(_blob(layout, descriptor["digest"]))
            config: dict[str, Any] = json.loads(_blob(layout, manifest["config"]["digest"]))
            return config.get("config") or {}
    raise BuildFailed(f"{tag} is not in {layout}/index.json")


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":", 1)
    return (layout / "blobs" / algorithm / hexdigest).read_bytes()


def build_with_pybuild(base_root: Path, context: Path, flags: tuple[str, ...],
                       work: Path) -> Built:
    """Build ``context`` with the pybuild CLI into a copy of ``base_root``."""
    root = work / "pybuild-root"
    _run(["cp", "-a", str(base_root), str(root)])
    try:
        _run(_pybuild("build", "--root", str(root), "--progress", "plain", "-t", _TAG,
                      *flags, str(context)),
             env={**os.environ, "PYTHONPATH": str(REPO)})
        tree = snapshot_tree(_unpack(root, _TAG, work / "pybuild-bundle"))
        return Built(tree=tree, config=normalise_config(_stored_config(root, _TAG)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work / "pybuild-bundle", ignore_errors=True)


def storage_driver(work: Path) -> str:
    """overlay, unless ``work`` is itself on overlayfs (a CI container's root), where an
    overlay upper directory cannot live; vfs then (slower: it copies every layer)."""
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(work)], capture_output=True,
                          text=True, check=True).stdout.strip()
    return "vfs" if kind == "overlayfs" else "overlay"


class _Buildah:
    """buildah on a scratch storage root of its own."""

    def __init__(self, work: Path) -> None:
        self.storage = work / "buildah"
        self.driver = storage_driver(work)
        self.prefix = ["buildah", "--root", str(self.storage / "root"),
                       "--runroot", str(self.storage / "run"), "--storage-driver", self.driver]
        # A caller's BUILDAH_* settings (format, isolation, layers) must not
        # change what is compared.
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("BUILDAH_")}

    def __call__(self, *args: str) -> str:
        return _run([*self.prefix, *args], env=self.env)

    def add_base(self, base_root: Path) -> None:
        # skopeo names the copy itself; `buildah pull oci:` would name it
        # after the layout's path, which fails on upper-case letters.
        storage = (f"containers-storage:[{self.driver}@{self.storage / 'root'}"
                   f"+{self.storage / 'run'}]localhost/{BASE_TAG}")
        _run(["skopeo", "copy", "-q", f"oci:{base_root}:{BASE_TAG}", storage], env=self.env)

    def remove(self) -> None:
        subprocess.run([*self.prefix, "rm", "--all"], capture_output=True, check=False)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].startswith(str(self.storage))]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.storage, ignore_errors=True)


def build_with_buildah(base_root: Path, context: Path, flags: tuple[str, ...],
                       work: Path) -> Built:
    """Build ``context`` with ``buildah bud --layers --isolation chroot`` on its own storage."""
    buildah = _Buildah(work)
    layout = work / "buildah-layout"
    try:
        buildah.add_base(base_root)
        buildah("bud", "--isolation", "chroot", "--layers", "--format", "docker",
                "--pull=never", "--identity-label=false", "-q", "-t", _TAG, *flags, str(context))
        inspected = json.loads(buildah("inspect", "--type", "image", _TAG))
        buildah("push", "-q", "--disable-compression", _TAG, f"oci:{layout}:{_TAG}")
        tree = snapshot_tree(_unpack(layout, _TAG, work / "buildah-bundle"))
        return Built(tree=tree, config=normalise_config(inspected["Docker"]["config"]))
    finally:
        buildah.remove()
        shutil.rmtree(layout, ignore_errors=True)
        shutil.rmtree(work / "buildah-bundle", ignore_errors=True)
