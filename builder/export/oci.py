"""type=oci: an OCI image layout as one tar (oci-layout, index.json, blobs/sha256/...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from builder.export import destination
from builder.export.layout import ArchiveWriter, PreparedImage, index_entries, prepare_image
from builder.export.options import OutputSpec
from builder.image import oci
from builder.image.store import ImageStore
from cache.blobs import BlobStore

__all__ = ["export_oci", "finish_oci_archive", "write_oci_archive"]


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
    with destination.open_file(spec.dest, stdout=stdout) as out, ArchiveWriter(out, blobs) as archive:
        image = prepare_image(
            store,
            blobs,
            manifest,
            spec.compression,
            oci_media_types=spec.oci_media_types,
            archive=archive,
        )
        finish_oci_archive(archive, [(image, tuple(names))])


def write_oci_archive(
    out: BinaryIO, blobs: BlobStore, images: Sequence[tuple[PreparedImage, Sequence[str]]]
) -> None:
    """Blobs first (the big part), then index.json and oci-layout; ``out`` stays open."""
    with ArchiveWriter(out, blobs) as archive:
        finish_oci_archive(archive, images)


def finish_oci_archive(
    archive: ArchiveWriter, images: Sequence[tuple[PreparedImage, Sequence[str]]]
) -> None:
    """Each image's blobs not in ``archive`` yet, then index.json and oci-layout."""
    entries: list[oci.Descriptor] = []
    for image, names in images:
        archive.add_image(image)
        entries.extend(index_entries(image, names))
    index = oci.Index(manifests=tuple(entries))
    archive.add_bytes("index.json", oci.canonical_json(index.to_json()))
    layout = {"imageLayoutVersion": oci.IMAGE_LAYOUT_VERSION}
    archive.add_bytes("oci-layout", oci.canonical_json(layout))
