"""builder.export.oci: OCI layout tars that skopeo and umoci read."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from builder.export.exporter import export
from builder.export.options import parse_output
from builder.image import oci
from builder.image.store import ImageStore
from tests.export.sample import EXPECTED_TREE, read_tree
from tests.image.sample import skopeo, umoci_unpack


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m) or io.BytesIO()).read() for m in tar if m.isfile()}


def test_index_names_the_image_as_buildkit_does(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    spec = parse_output(f"type=oci,dest={out},compression=uncompressed")
    export(store, store.blobs, image, names=("app:1",), spec=spec)
    members = _members(out)
    index = json.loads(members["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"] == {
        "io.containerd.image.name": "docker.io/library/app:1",
        "org.opencontainers.image.ref.name": "1",
    }
    # Uncompressed with OCI types: the stored manifest, byte for byte.
    assert entry["digest"] == image.digest
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}


@pytest.mark.root
def test_skopeo_inspects_the_oci_archive(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    export(store, store.blobs, image, names=("app:1",), spec=parse_output(f"type=oci,dest={out}"))
    inspected = json.loads(skopeo("inspect", f"oci-archive:{out}"))
    config = store.config(image)
    assert len(inspected["Layers"]) == 3
    raw = json.loads(skopeo("inspect", "--raw", f"oci-archive:{out}:1"))
    assert [layer["mediaType"] for layer in raw["layers"]] == [oci.OCI_LAYER_GZIP] * 3
    assert raw["config"]["digest"] == store.manifest(image).config.digest
    config_json = json.loads(skopeo("inspect", "--config", f"oci-archive:{out}"))
    assert config_json["rootfs"]["diff_ids"] == list(config.diff_ids)


@pytest.mark.root
def test_umoci_unpacks_the_final_tree(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    export(store, store.blobs, image, names=("app:1",), spec=parse_output(f"type=oci,dest={out}"))
    layout = tmp_path / "layout"
    with tarfile.open(out) as tar:
        tar.extractall(layout, filter="data")
    umoci_unpack(f"{layout}:1", tmp_path / "bundle")
    assert read_tree(tmp_path / "bundle" / "rootfs") == EXPECTED_TREE


def test_stdout_gets_the_same_archive(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    spec = parse_output(f"type=oci,dest={out}")
    export(store, store.blobs, image, names=("app:1",), spec=spec)
    stream = io.BytesIO()
    export(
        store,
        store.blobs,
        image,
        names=("app:1",),
        spec=parse_output("type=oci,dest=-"),
        stdout=stream,
    )
    assert stream.getvalue() == out.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
