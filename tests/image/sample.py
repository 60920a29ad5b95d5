"""Small images for the image tests: a tar layer from a dict, an image over it, the tools."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from builder.image import oci
from builder.image.config import ContainerConfig, HistoryEntry, ImageConfig
from builder.image.store import ImageStore


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    """A reproducible tar of regular files (sorted, mtime 0, root-owned)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            entry = tarfile.TarInfo(name)
            entry.size = len(files[name])
            entry.mode = 0o644
            tar.addfile(entry, io.BytesIO(files[name]))
    return buffer.getvalue()


def put_layer(store: ImageStore, files: Mapping[str, bytes]) -> oci.Descriptor:
    ref = store.blobs.put_bytes(layer_tar(files))
    return oci.Descriptor(oci.OCI_LAYER, ref.digest, ref.size)


def put_sample_image(
    store: ImageStore, *layers_files: Mapping[str, bytes], cmd: tuple[str, ...] = ("/bin/sh",)
) -> oci.Descriptor:
    """An image with one layer per mapping; returns its manifest descriptor."""
    layers = [put_layer(store, files) for files in layers_files]
    config = ImageConfig(
        architecture="amd64",
        os="linux",
        created="2024-01-02T03:04:05Z",
        config=ContainerConfig(
            env=("PATH=/usr/bin:/bin",), cmd=cmd, labels=(("b", "1"), ("a", "2"))
        ),
        diff_ids=tuple(layer.digest for layer in layers),
        history=tuple(HistoryEntry(created_by=f"layer {n}") for n in range(len(layers))),
    )
    return store.put_image(config, layers)


def tool(name: str) -> str:
    """The path of an external tool; skips (a failure under CI) only if it is absent."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{argv} failed: {result.stderr}"
    return result.stdout


def skopeo(*argv: str) -> str:
    # --insecure-policy: a fresh machine may have no /etc/containers/policy.json.
    return run(tool("skopeo"), "--insecure-policy", *argv)


def umoci_unpack(image: str, bundle: Path) -> None:
    rootless = ("--rootless",) if os.geteuid() != 0 else ()
    run(tool("umoci"), "unpack", *rootless, "--image", image, str(bundle))
