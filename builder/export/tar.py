"""type=tar: the image's final root tree as one tar, written atomically or to stdout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from builder.export import destination
from builder.export.options import OutputSpec
from builder.export.rootfs import write_rootfs
from builder.image import oci
from builder.image.store import ImageStore
from cache.blobs import BlobStore

__all__ = ["export_tar"]


def export_tar(
    store: ImageStore,
    blobs: BlobStore,
    manifest: oci.Descriptor,
    *,
    names: Sequence[str] = (),
    spec: OutputSpec,
    stdout: BinaryIO | None = None,
) -> None:
    """Write the merged root tree of ``manifest`` to ``spec.dest``; ``names`` are unused."""
    layers = store.manifest(manifest).layers
    with destination.open_file(spec.dest, stdout=stdout) as out:
        write_rootfs(blobs, layers, out)
