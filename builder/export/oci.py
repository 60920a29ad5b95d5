"""type=oci: an OCI image layout as one tar (oci-layout, index.json, blobs/sha256/...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from builder.export.layout import (
    ArchiveWriter,
    PreparedImage,
    add_layout_files,
    export_archive,
    index_entries,
)
from builder.export.options import OutputSpec
from builder.image import oci
from builder.image.store import ImageStore
from cache.blobs import BlobStore

__all__ = ["export_oci", "finish_oci_archive"]


def export_oci(
    store: ImageStore,
    blobs: BlobStore,
    manifest: oci.Descriptor,
    *,
    names: Sequence[str],
    spec: OutputSpec,
    stdout: BinaryIO | None = None,
) -> None:
    """Write one image as an OCI layout tar at ``spec.dest`` (atomically, or to stdout).

    Each name becomes an index.json entry with buildkit's annotations, so
    ``skopeo copy oci-archive:FILE:TAG`` and ``umoci`` find it by tag.
    """
    export_archive(store, blobs, manifest, names, spec, stdout, finish_oci_archive)


def finish_oci_archive(
    archive: ArchiveWriter, images: Sequence[tuple[PreparedImage, Sequence[str]]]
) -> None:
    """Each image's blobs not in ``archive`` yet, then index.json and oci-layout."""
    entries: list[oci.Descriptor] = []
    for image, names in images:
        archive.add_image(image)
        entries.extend(index_entries(image, names))
    add_layout_files(archive, entries)
