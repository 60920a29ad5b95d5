"""`pybuild save`: several images from the store in one docker or OCI archive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from builder.errors import StoreError, UsageError
from builder.export import destination
from builder.export.docker import write_docker_archive
from builder.export.layout import PreparedImage, prepare_image
from builder.export.oci import write_oci_archive
from builder.export.options import Compression
from builder.image.store import ImageStore, parse_reference
from cache.blobs import BlobStore

__all__ = ["FORMATS", "save"]

FORMATS = ("docker", "oci")


def save(
    store: ImageStore,
    blobs: BlobStore,
    names: Sequence[str],
    *,
    dest: str,
    format: str = "oci",
    compression: Compression | None = None,
    stdout: BinaryIO | None = None,
) -> None:
    """Write the images ``names`` resolve to into one archive at ``dest`` (``-``: stdout).

    Layers are written uncompressed by default, as ``docker save`` does. An
    image named twice is archived once and carries both names; a name may
    also be a digest or an id prefix (then it adds no tag).
    """
    if format not in FORMATS:
        raise UsageError(f"save --format {format}: unknown format (use docker or oci)")
    if not names:
        raise UsageError("save: name at least one image")
    compression = compression or Compression.default("uncompressed")
    oci_types = format == "oci" or compression.algorithm == "zstd"
    tags = frozenset(record.name for record in store.images())
    by_manifest: dict[str, tuple[PreparedImage, list[str]]] = {}
    for name in names:
        manifest = store.resolve(name)
        if manifest.digest not in by_manifest:
            image = prepare_image(store, blobs, manifest, compression, oci_media_types=oci_types)
            by_manifest[manifest.digest] = (image, [])
        tag = _tag_of(name, tags)
        if tag is not None and tag not in by_manifest[manifest.digest][1]:
            by_manifest[manifest.digest][1].append(tag)
    images = [(image, tuple(tags)) for image, tags in by_manifest.values()]
    with destination.open_file(dest, stdout=stdout) as out:
        if format == "docker":
            write_docker_archive(out, blobs, images)
        else:
            write_oci_archive(out, blobs, images)


def _tag_of(name: str, tags: frozenset[str]) -> str | None:
    """The store tag ``name`` spells (``app`` → ``app:latest``), or None for a digest or id."""
    try:
        normal = str(parse_reference(name))
    except StoreError:
        return None
    return normal if normal in tags else None
