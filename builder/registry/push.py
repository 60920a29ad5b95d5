"""`pybuild push`: an image from the local store to a registry, layers gzip-compressed.

The store keeps layers uncompressed; registries and their clients expect
gzip, so each layer is compressed on the way out into a temp file (gzip
with mtime 0 and no file name, so the same layer compresses to the same
bytes while zlib does not change). What a diff_id compressed to is
remembered in ROOT/registry-layers.json: a layer the registry already holds
under that digest is skipped by one HEAD, without compressing it again.
The config goes byte for byte (the image id is kept), then the manifest
and the tag, last, so a failed push never leaves a tag over missing blobs.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.errors import RegistryError, StoreError
from builder.image import oci
from builder.image.store import ImageStore
from builder.registry.client import RegistryOptions, RepositoryClient, open_repository
from builder.registry.reference import RemoteReference, parse_remote
from cache import files
from cache.blobs import BlobStore

__all__ = ["CHUNK_SIZE", "push"]

CHUNK_SIZE = 32 << 20  # blobs above this go up in PATCH chunks of this size
_COPY = 1 << 20
_PARALLEL_LAYERS = 3
_GZIP_LEVEL = 6
_COMPRESSED_CACHE = "registry-layers.json"
_COMPRESSED_CACHE_VERSION = "pybuild.gzip-layers.v1"


@dataclass(frozen=True, slots=True)
class _Upload:
    """What one push needs to send a blob: where it goes and how."""

    client: RepositoryClient
    action: str
    chunk_size: int
    mount_from: tuple[str, ...]


def push(
    store: ImageStore,
    blobs: BlobStore,
    name: str,
    reference: str | RemoteReference | None = None,
    *,
    options: RegistryOptions | None = None,
    chunk_size: int = CHUNK_SIZE,
    mount_from: Sequence[str] = (),
) -> oci.Descriptor:
    """Push the local image ``name`` to ``reference`` (``name`` itself by default); returns the
    descriptor of the manifest as the registry now holds it.

    Blobs the registry has are skipped (HEAD). ``mount_from`` names other repositories of the
    same registry to try a cross-repository mount from before uploading.
    """
    remote = (
        parse_remote(reference or name) if not isinstance(reference, RemoteReference) else reference
    )
    action = f"pushing {remote}"
    if remote.digest:
        raise RegistryError(f"{action}: push to a tag, not a digest")
    local = store.resolve(name)
    manifest = store.manifest(local)
    upload = _Upload(
        client=open_repository(remote, options or RegistryOptions(), actions="pull,push"),
        action=action,
        chunk_size=chunk_size,
        mount_from=tuple(mount_from),
    )
    cache = _CompressedLayers(blobs.root / _COMPRESSED_CACHE)
    with ThreadPoolExecutor(max_workers=_PARALLEL_LAYERS, thread_name_prefix="push") as pool:
        layers = list(
            pool.map(lambda layer: _push_layer(upload, layer, blobs, cache), manifest.layers)
        )
    config = manifest.config
    with blobs.open(config.digest) as stream:
        _upload_blob(upload, config.digest, config.size, stream)
    pushed = oci.Manifest(
        config=oci.Descriptor(config.media_type, config.digest, config.size),
        layers=tuple(layers),
        annotations=manifest.annotations,
    )
    data = oci.canonical_json(pushed.to_json())
    upload.client.put_manifest(remote.tag, data, oci.OCI_MANIFEST, action=action)
    return oci.Descriptor(oci.OCI_MANIFEST, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def _push_layer(
    upload: _Upload, layer: oci.Descriptor, blobs: BlobStore, cache: _CompressedLayers
) -> oci.Descriptor:
    if layer.media_type not in (oci.OCI_LAYER, oci.DOCKER_LAYER):
        # Already compressed (a layout another tool wrote): it goes as it is.
        with blobs.open(layer.digest) as stream:
            _upload_blob(upload, layer.digest, layer.size, stream)
        return oci.Descriptor(layer.media_type, layer.digest, layer.size)
    known = cache.get(layer.digest)
    if known is not None and upload.client.has_blob(known.digest, action=upload.action):
        return known
    with _compressed(blobs, layer.digest) as (stream, digest, size):
        _upload_blob(upload, digest, size, stream)
    compressed = oci.Descriptor(oci.OCI_LAYER_GZIP, digest, size)
    cache.put(layer.digest, compressed)
    return compressed


def _upload_blob(upload: _Upload, digest: str, size: int, stream: BinaryIO) -> None:
    """Make the registry hold ``digest``: skip it, mount it, or send it whole or in chunks."""
    client, action = upload.client, upload.action
    if client.has_blob(digest, action=action):
        return
    location: str | None = None
    for source in upload.mount_from:
        location = client.start_upload(action=action, mount=digest, mount_from=source)
        if location is None:
            return  # mounted: the registry linked the blob from ``source``
        break  # not mountable there; the registry opened a plain upload instead
    if location is None:
        location = client.start_upload(action=action)
    if location is None:
        raise RegistryError(f"{action}: {client.registry} opened no upload for {digest}")
    if size <= upload.chunk_size:
        client.finish_upload(location, digest, stream, size, action=action)
        return
    offset = 0
    while chunk := stream.read(upload.chunk_size):
        location = client.send_chunk(location, chunk, offset, action=action)
        offset += len(chunk)
    client.finish_upload(location, digest, b"", 0, action=action)


@contextlib.contextmanager
def _compressed(blobs: BlobStore, diff_id: str) -> Iterator[tuple[BinaryIO, str, int]]:
    """The layer gzip-compressed in a temp file (removed afterwards): stream, digest, size."""
    with tempfile.TemporaryFile(dir=blobs.staging_dir) as temp:
        hashing = _HashingWriter(temp)
        # filename="" and mtime=0: the header must not depend on the temp file or the clock.
        packer = gzip.GzipFile(
            filename="", mode="wb", fileobj=hashing, compresslevel=_GZIP_LEVEL, mtime=0
        )
        with blobs.open(diff_id, verify=True) as source, packer:
            while chunk := source.read(_COPY):
                packer.write(chunk)
        temp.seek(0)
        yield temp, hashing.digest(), hashing.size


class _HashingWriter:
    """A write-only file that hashes and counts what passes through to ``inner``."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._inner.write(data)

    def flush(self) -> None:
        self._inner.flush()

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _CompressedLayers:
    """diff_id → the gzip blob it compressed to: a cache, so a lost update only costs
    one compression (concurrent pushes may each write it; the last rename wins)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def get(self, diff_id: str) -> oci.Descriptor | None:
        entry = self._read().get(diff_id)
        if not isinstance(entry, dict):
            return None
        try:
            return oci.Descriptor.from_json(entry)
        except StoreError:
            return None

    def put(self, diff_id: str, compressed: oci.Descriptor) -> None:
        entries = self._read()
        entries[diff_id] = compressed.to_json()
        data = oci.canonical_json({"version": _COMPRESSED_CACHE_VERSION, "layers": entries})
        # A cache: losing it costs one recompression, so no fsync.
        files.write_atomically(self._path, data, staging_dir=self._path.parent / "tmp",
                               durable=False)

    def _read(self) -> dict[str, object]:
        try:
            obj = json.loads(self._path.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(obj, dict) or obj.get("version") != _COMPRESSED_CACHE_VERSION:
            return {}
        layers = obj.get("layers")
        return dict(layers) if isinstance(layers, dict) else {}
