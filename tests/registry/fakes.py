"""A fake registry behind the Transport protocol, and images to serve from it."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyzstd

from builder.image import oci
from builder.image.config import ImageConfig
from builder.registry.transport import Body, Response
from tests.image.sample import layer_tar


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    """Serves GET/HEAD of manifests and blobs for any repository; records every request.

    ``blobs`` maps digest → the bytes served (tamper with them to test verification).
    """

    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # reference → data, type
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Body = None
    ) -> Response:
        path = urllib.parse.urlsplit(url).path
        self.requests.append((method, path))
        kind, _, reference = path.rpartition("/")
        if kind.endswith("/manifests") and reference in self.manifests:
            data, media_type = self.manifests[reference]
            return Response(200, {"Content-Type": media_type}, io.BytesIO(data))
        if kind.endswith("/blobs") and reference in self.blobs:
            data = self.blobs[reference]
            return Response(200, {"Content-Length": str(len(data))}, io.BytesIO(data))
        return Response(404, {}, io.BytesIO(b'{"errors":[{"code":"NOT_FOUND","message":"nope"}]}'))

    def add_blob(self, data: bytes) -> str:
        self.blobs[sha256(data)] = data
        return sha256(data)

    def add_manifest(self, tag: str, obj: dict[str, object], media_type: str) -> oci.Descriptor:
        data = oci.canonical_json(obj)
        digest = sha256(data)
        self.manifests[tag] = (data, media_type)
        self.manifests[digest] = (data, media_type)
        return oci.Descriptor(media_type, digest, len(data))

    def blob_fetches(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "/blobs/" in path]


@dataclass(frozen=True, slots=True)
class ServedImage:
    manifest: oci.Descriptor
    config_digest: str
    diff_ids: tuple[str, ...]


def serve_image(
    registry: FakeRegistry,
    tag: str,
    *,
    layers: tuple[Mapping[str, bytes], ...] = ({"a.txt": b"gzip layer\n"},),
    compressions: tuple[str, ...] = ("gzip",),
    architecture: str = "amd64",
    docker_types: bool = False,
) -> ServedImage:
    """Put an image on the fake registry: one layer per mapping, compressed as asked."""
    tars = [layer_tar(files) for files in layers]
    descriptors = []
    for tar, compression in zip(tars, compressions, strict=True):
        if compression == "gzip":
            packed = gzip.compress(tar, mtime=0)
            media_type = oci.DOCKER_LAYER_GZIP if docker_types else oci.OCI_LAYER_GZIP
        elif compression == "zstd":
            packed, media_type = pyzstd.compress(tar), oci.OCI_LAYER_ZSTD
        else:
            packed, media_type = tar, oci.OCI_LAYER
        descriptors.append(oci.Descriptor(media_type, registry.add_blob(packed), len(packed)))
    config = ImageConfig(
        architecture=architecture, os="linux", diff_ids=tuple(sha256(tar) for tar in tars)
    ).to_bytes()
    config_type = oci.DOCKER_CONFIG if docker_types else oci.OCI_CONFIG
    manifest_type = oci.DOCKER_MANIFEST if docker_types else oci.OCI_MANIFEST
    manifest = oci.Manifest(
        config=oci.Descriptor(config_type, registry.add_blob(config), len(config)),
        layers=tuple(descriptors),
        media_type=manifest_type,
    )
    served = registry.add_manifest(tag, manifest.to_json(), manifest_type)
    return ServedImage(served, sha256(config), tuple(sha256(tar) for tar in tars))
