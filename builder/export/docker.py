"""type=docker: a `docker save` tar (manifest.json, config and layer blobs) for docker/podman load.

Written as docker 25's save writes it: blobs at ``blobs/sha256/<hex>``,
manifest.json pointing at them, and the OCI layout files (index.json,
oci-layout) beside it, so the one tar is both a docker archive and an OCI
image layout (``skopeo copy oci-archive:FILE:TAG``). Each name is an
index.json entry carrying the full name in io.containerd.image.name and
the tag in ref.name. podman load tries an archive as oci-archive first and
names a single-entry one from io.containerd.image.name (docker.io/library/app:1);
with several entries it falls back to docker-archive and manifest.json's RepoTags.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import BinaryIO

from builder.export.layout import (
    ArchiveWriter,
    PreparedImage,
    add_layout_files,
    blob_member,
    export_archive,
    index_entries,
)
from builder.export.options import OutputSpec
from builder.image import oci
from builder.image.store import ImageStore, parse_reference
from cache.blobs import BlobStore

__all__ = ["export_docker", "finish_docker_archive"]


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
    export_archive(store, blobs, manifest, names, spec, stdout, finish_docker_archive)


def finish_docker_archive(
    archive: ArchiveWriter, images: Sequence[tuple[PreparedImage, Sequence[str]]]
) -> None:
    """Each image's blobs not in ``archive`` yet, then manifest.json, index.json, oci-layout."""
    entries = []
    index: list[oci.Descriptor] = []
    for image, names in images:
        archive.add_image(image)
        index.extend(index_entries(image, names))
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
    add_layout_files(archive, index)


def _repo_tags(names: Sequence[str]) -> list[str]:
    """Familiar ``repo:tag`` names; a digest reference cannot be a docker tag and is left out."""
    references = (parse_reference(name) for name in names)
    return [str(reference) for reference in references if not reference.digest]
