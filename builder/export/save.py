"""`pybuild save`: several images from the store in one docker or OCI archive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from builder.errors import StoreError, UsageError
from builder.export.docker import finish_docker_archive
from builder.export.layout import write_archive
from builder.export.oci import finish_oci_archive
from builder.export.options import Compression
from builder.image import oci
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

    Layers are written uncompressed by default, as ``docker save`` does; the
    docker format is also an OCI layout, as docker 25's save writes it. An
    image named twice is archived once and carries both names; a name may
    also be a digest or an id prefix (then it adds no tag).
    """
    if format not in FORMATS:
        raise UsageError(f"save --format {format}: unknown format (use docker or oci)")
    if not names:
        raise UsageError("save: name at least one image")
    compression = compression or Compression.default("uncompressed")
    # docker 25's save writes OCI media types in the manifests index.json names
    # (docker load reads manifest.json, which has none), so OCI tools find each
    # image by tag; the docker format does the same.
    oci_types = True
    tags = frozenset(record.name for record in store.images())
    # Every name is resolved before anything is written: an unknown one fails early.
    by_manifest: dict[str, tuple[oci.Descriptor, list[str]]] = {}
    for name in names:
        manifest = store.resolve(name)
        by_manifest.setdefault(manifest.digest, (manifest, []))
        tag = _tag_of(name, tags)
        if tag is not None and tag not in by_manifest[manifest.digest][1]:
            by_manifest[manifest.digest][1].append(tag)
    write_archive(
        dest,
        store,
        blobs,
        [(manifest, image_tags) for manifest, image_tags in by_manifest.values()],
        compression=compression,
        oci_media_types=oci_types,
        finish=finish_docker_archive if format == "docker" else finish_oci_archive,
        stdout=stdout,
    )


def _tag_of(name: str, tags: frozenset[str]) -> str | None:
    """The store tag ``name`` spells (``app`` → ``app:latest``), or None for a digest or id."""
    try:
        normal = str(parse_reference(name))
    except StoreError:
        return None
    return normal if normal in tags else None
