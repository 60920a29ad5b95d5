"""A failed export leaves nothing at its destination, and no temp files beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.export.exporter import export
from builder.export.options import parse_output
from builder.image import oci
from builder.image.store import ImageStore


def _corrupt_last_layer(store: ImageStore, image: oci.Descriptor) -> None:
    layer = store.manifest(image).layers[-1]
    path = store.blobs.path(layer.digest)
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF  # inside the first file's content: a valid tar, the wrong digest
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "options", ["type=oci,compression=uncompressed", "type=docker,compression=uncompressed"]
)
def test_failed_archive_export_leaves_no_file(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path, options: str
) -> None:
    _corrupt_last_layer(store, image)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(StoreError, match="corrupt"):
        export(
            store,
            store.blobs,
            image,
            names=("app:1",),
            spec=parse_output(f"{options},dest={out_dir / 'image.tar'}"),
        )
    assert list(out_dir.iterdir()) == []


def test_failed_export_keeps_the_previous_file(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "image.tar"
    out.write_bytes(b"previous")
    _corrupt_last_layer(store, image)
    with pytest.raises(StoreError):
        export(
            store,
            store.blobs,
            image,
            names=(),
            spec=parse_output(f"type=oci,compression=gzip,dest={out}"),
        )
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name != "root"] == ["image.tar"]


@pytest.mark.root
def test_failed_local_export_leaves_no_directory(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    layer = store.manifest(image).layers[-1]
    path = store.blobs.path(layer.digest)
    path.write_bytes(path.read_bytes()[:700])  # cut off mid-member: not a whole tar
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(StoreError):
        export(store, store.blobs, image, names=(), spec=parse_output(str(out_dir / "tree")))
    assert list(out_dir.iterdir()) == []
