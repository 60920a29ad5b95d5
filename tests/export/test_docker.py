"""builder.export.docker: `docker save` tars that skopeo and podman load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from builder.export.exporter import export
from builder.export.options import parse_output
from builder.image import oci
from builder.image.store import ImageStore
from tests.image.sample import skopeo, tool


def test_manifest_json_points_at_config_and_layers(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    export(
        store,
        store.blobs,
        image,
        names=("app:1", "registry.local:5000/x/app:2"),
        spec=parse_output(f"type=docker,dest={out}"),
    )
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        entries = json.loads((tar.extractfile("manifest.json") or b"").read())  # type: ignore[union-attr]
    (entry,) = entries
    assert entry["RepoTags"] == ["app:1", "registry.local:5000/x/app:2"]
    assert entry["Config"] == "blobs/sha256/" + store.manifest(image).config.digest[7:]
    assert len(entry["Layers"]) == 3
    assert set(entry["Layers"]) | {entry["Config"]} <= names


@pytest.mark.root
def test_skopeo_inspects_the_docker_archive(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    export(
        store, store.blobs, image, names=("app:1",), spec=parse_output(f"type=docker,dest={out}")
    )
    inspected = json.loads(skopeo("inspect", f"docker-archive:{out}"))
    assert inspected["RepoTags"] == [] or "app" in json.dumps(inspected)
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{out}"))
    assert config["rootfs"]["diff_ids"] == list(store.config(image).diff_ids)
    copied = tmp_path / "copied"
    skopeo("copy", f"docker-archive:{out}", f"dir:{copied}")
    manifest = json.loads((copied / "manifest.json").read_text())
    assert [layer["digest"] for layer in manifest["layers"]] == list(store.config(image).diff_ids)


@pytest.mark.root
def test_podman_loads_the_docker_archive(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    podman = tool("podman")
    out = tmp_path / "out.tar"
    export(
        store,
        store.blobs,
        image,
        names=("pybuild-export-test:1",),
        spec=parse_output(f"type=docker,dest={out}"),
    )
    # A private storage root: the test must not touch the machine's images.
    # podman refuses a runroot path longer than 50 characters.
    runroot = tempfile.mkdtemp(prefix="pbx-", dir="/tmp")
    storage = ("--root", str(tmp_path / "storage"), "--runroot", runroot, "--storage-driver", "vfs")
    try:
        env = {**os.environ, "CONTAINERS_CONF": os.devnull}
        loaded = subprocess.run(
            [podman, *storage, "load", "-i", str(out)],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        assert loaded.returncode == 0, loaded.stderr
        assert "pybuild-export-test:1" in loaded.stdout
        listed = subprocess.run(
            [podman, *storage, "image", "inspect", "pybuild-export-test:1"],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)[0]["RootFS"]["Layers"] == list(
            store.config(image).diff_ids
        )
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
