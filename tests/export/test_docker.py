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


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None, name
    return member.read()


def test_docker_archive_is_also_an_oci_layout(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    names = ("app:1", "registry.local:5000/x/app:2")
    export(store, store.blobs, image, names=names, spec=parse_output(f"type=docker,dest={out}"))
    with tarfile.open(out) as tar:
        (entry,) = json.loads(_member(tar, "manifest.json"))
        index = json.loads(_member(tar, "index.json"))
        layout = json.loads(_member(tar, "oci-layout"))
        manifests = [
            json.loads(_member(tar, "blobs/sha256/" + item["digest"][7:]))
            for item in index["manifests"]
        ]
    assert layout == {"imageLayoutVersion": "1.0.0"}
    assert index["mediaType"] == oci.OCI_INDEX
    assert [item["annotations"] for item in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/app:1",
         "org.opencontainers.image.ref.name": "1"},
        {"io.containerd.image.name": "registry.local:5000/x/app:2",
         "org.opencontainers.image.ref.name": "2"},
    ]
    # Both entries name the one manifest, and it names what manifest.json names.
    assert manifests[0] == manifests[1]
    assert index["manifests"][0]["mediaType"] == manifests[0]["mediaType"] == oci.DOCKER_MANIFEST
    assert "blobs/sha256/" + manifests[0]["config"]["digest"][7:] == entry["Config"]
    assert ["blobs/sha256/" + layer["digest"][7:] for layer in manifests[0]["layers"]] == entry[
        "Layers"
    ]


@pytest.mark.root
def test_skopeo_reads_the_docker_archive_as_an_oci_archive(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    diff_ids = list(store.config(image).diff_ids)
    # buildx's default for type=docker: docker media types. skopeo takes the only image.
    plain = tmp_path / "plain.tar"
    export(store, store.blobs, image, names=("app:1",), spec=parse_output(f"type=docker,dest={plain}"))
    config = json.loads(skopeo("inspect", "--config", f"oci-archive:{plain}"))
    assert config["rootfs"]["diff_ids"] == diff_ids
    # OCI media types (docker 25's save writes those): found by tag, each name its entry.
    out = tmp_path / "out.tar"
    export(
        store,
        store.blobs,
        image,
        names=("app:1", "registry.local:5000/x/app:2"),
        spec=parse_output(f"type=docker,dest={out},compression=gzip,oci-mediatypes=true"),
    )
    for tag in ("1", "2"):
        config = json.loads(skopeo("inspect", "--config", f"oci-archive:{out}:{tag}"))
        assert config["rootfs"]["diff_ids"] == diff_ids
    copied = tmp_path / "copied"
    skopeo("copy", f"oci-archive:{out}:2", f"dir:{copied}")
    manifest = json.loads((copied / "manifest.json").read_text())
    assert {layer["mediaType"] for layer in manifest["layers"]} == {oci.OCI_LAYER_GZIP}
    # ... and it is still the docker archive it was.
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{out}:app:1"))
    assert config["rootfs"]["diff_ids"] == diff_ids


def _podman_load(archive: Path, storage_dir: Path) -> tuple[str, list[str]]:
    """podman load into a private storage root: its output and the names it then lists."""
    podman = tool("podman")
    # podman refuses a runroot path longer than 50 characters.
    runroot = tempfile.mkdtemp(prefix="pbx-", dir="/tmp")
    storage = ("--root", str(storage_dir), "--runroot", runroot, "--storage-driver", "vfs")
    env = {**os.environ, "CONTAINERS_CONF": os.devnull}
    try:
        loaded = subprocess.run(
            [podman, *storage, "load", "-i", str(archive)],
            capture_output=True, text=True, check=False, env=env,
        )
        assert loaded.returncode == 0, loaded.stderr
        listed = subprocess.run(
            [podman, *storage, "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True, text=True, check=True, env=env,
        )
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
    return loaded.stdout, sorted(listed.stdout.split())


@pytest.mark.root
def test_podman_loads_the_docker_archive_whatever_the_number_of_names(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    one = tmp_path / "one.tar"
    export(store, store.blobs, image, names=("pybuild-export-test:1",),
           spec=parse_output(f"type=docker,dest={one}"))
    # One index.json entry: podman reads it as oci-archive, named by io.containerd.image.name.
    _, names = _podman_load(one, tmp_path / "storage-one")
    assert names == ["docker.io/library/pybuild-export-test:1"]
    two = tmp_path / "two.tar"
    export(store, store.blobs, image,
           names=("pybuild-export-test:1", "registry.local:5000/x/pybuild-export-test:2"),
           spec=parse_output(f"type=docker,dest={two}"))
    # Two entries: not one oci-archive image, so podman falls back to manifest.json's RepoTags.
    _, names = _podman_load(two, tmp_path / "storage-two")
    assert names == ["localhost/pybuild-export-test:1", "registry.local:5000/x/pybuild-export-test:2"]
