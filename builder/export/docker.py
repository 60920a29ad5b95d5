"""type=docker: a `docker save` tar (manifest.json, config and layer blobs) for docker/podman load.

Blobs sit at ``blobs/sha256/<hex>`` as docker 25's save writes them, and
manifest.json points at them. The OCI layout files newer docker also writes
are left out: podman tries an archive as oci-archive before docker-archive,
and would then name the image after the bare tag in ref.name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import BinaryIO

from builder.export import destination
from builder.export.layout import ArchiveWriter, PreparedImage, blob_member, prepare_image
from builder.export.options import OutputSpec
from builder.image import oci
from builder.image.store import ImageStore, parse_reference
from cache.blobs import BlobStore

__all__ = ["export_docker", "write_docker_archive"]


def export_docker(
    store: ImageStore,
    blobs: BlobStore,
    manifest: oci.Descriptor,
    *,
    names: Sequence[str],
    spec: OutputSpec,
    stdout: BinaryIO | None = None,
) -> None:
    """Write one image as a docker-archive at ``spec.dest``, tagged with ``names``."""
    image = prepare_image(
        store, blobs, manifest, spec.compression, oci_media_types=spec.oci_media_types
    )
    with destination.open_file(spec.dest, stdout=stdout) as out:
        write_docker_archive(out, blobs, [(image, tuple(names))])


def write_docker_archive(
    out: BinaryIO, blobs: BlobStore, images: Sequence[tuple[PreparedImage, Sequence[str]]]
) -> None:
    """Blobs, then manifest.json with one entry per image; ``out`` stays open."""
    with ArchiveWriter(out, blobs) as archive:
        entries = []
        for image, names in images:
            archive.add_image(image)
            entries.append(
                {
                    "Config": blob_member(image.config.digest),
                    # RepoTags hold the familiar names `docker images` shows.
                    "RepoTags": _repo_tags(names),
                    "Layers": [blob_member(layer.digest) for layer in image.layers],
                }
            )
        # manifest.json is docker's own file, not a canonical blob: keep docker's key order.
        archive.add_bytes("manifest.json", json.dumps(entries, separators=(",", ":")).encode())


def _repo_tags(names: Sequence[str]) -> list[str]:
    """Familiar ``repo:tag`` names; a digest reference cannot be a docker tag and is left out."""
    references = (parse_reference(name) for name in names)
    return [str(reference) for reference in references if not reference.digest]
