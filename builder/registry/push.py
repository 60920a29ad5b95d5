"""`pybuild push`: an image from the local store to a registry, layers compressed.

The store keeps layers uncompressed; registries and their clients expect
gzip (the default; `-o type=registry,compression=zstd|uncompressed` asks
for another), so each layer is compressed on the way out as an export
compresses it (builder/export/compression.py: parallel compression whose
bytes do not depend on the thread count, kept in the store and shared with
`-o type=oci` exports). What a diff_id compressed to is also remembered in
ROOT/registry-layers.json: a layer the registry already holds under that
digest is skipped by one HEAD, without compressing it again. Blobs are
streamed from their files, a chunk of a chunked upload included, so memory
does not grow with layer size. The config goes byte for byte (the image id
is kept), then the manifest and the tag, last, so a failed push never
leaves a tag over missing blobs. ``progress`` shows each layer's upload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.errors import RegistryError, StoreError
from builder.export.options import Compression
from builder.image import oci
from builder.image.store import ImageStore
from builder.registry.client import RegistryOptions, RepositoryClient, open_repository
from builder.registry.reference import RemoteReference, parse_remote
from builder.transfer_progress import TransferProgress
from cache import files
from cache.blobs import BlobStore

__all__ = ["CHUNK_SIZE", "push", "push_layer", "upload_blob"]

CHUNK_SIZE = 32 << 20  # blobs above this go up in PATCH chunks of this size
_PARALLEL_LAYERS = 3
_COMPRESSED_CACHE = "registry-layers.json"
# Keyed by "diff_id algorithm level" (v1 was by diff_id alone, all gzip level 6).
_COMPRESSED_CACHE_VERSION = "pybuild.pushed-layers.v2"


# What push and the cache export send when nothing else is asked: gzip at
# its default level, as BuildKit does.
_DEFAULT_COMPRESSION = Compression.default("gzip")


@dataclass(frozen=True, slots=True)
class _Upload:
    """What one push needs to send a blob: where it goes and how."""

    client: RepositoryClient
    action: str
    chunk_size: int
    mount_from: tuple[str, ...]
    progress: TransferProgress
    compression: Compression = _DEFAULT_COMPRESSION
    oci_media_types: bool = True

    @classmethod
    def plain(
        cls, client: RepositoryClient, action: str, progress: TransferProgress | None
    ) -> _Upload:
        """One blob or layer sent on its own: default chunks, no mounts, gzip."""
        return cls(client=client, action=action, chunk_size=CHUNK_SIZE, mount_from=(),
                   progress=progress if progress is not None else TransferProgress())


def push(
    store: ImageStore,
    blobs: BlobStore,
    name: str,
    reference: str | RemoteReference | None = None,
    *,
    options: RegistryOptions | None = None,
    chunk_size: int = CHUNK_SIZE,
    mount_from: Sequence[str] = (),
    progress: TransferProgress | None = None,
    compression: Compression = _DEFAULT_COMPRESSION,
    oci_media_types: bool = True,
) -> oci.Descriptor:
    """Push the local image ``name`` to ``reference`` (``name`` itself by default); returns the
    descriptor of the manifest as the registry now holds it.

    Blobs the registry has are skipped (HEAD). ``mount_from`` names other repositories of the
    same registry to try a cross-repository mount from before uploading. ``progress`` is
    told of each layer (transfer_progress.py; quiet if None). Layers are compressed as
    ``compression`` says (a layer already compressed goes as it is unless it forces); the
    manifest and config carry OCI media types, or docker's without ``oci_media_types``
    (zstd has OCI ones only).
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
        progress=progress if progress is not None else TransferProgress(),
        compression=compression,
        oci_media_types=oci_media_types or compression.algorithm == "zstd",
    )
    cache = _CompressedLayers(blobs.root / _COMPRESSED_CACHE)
    diff_ids = store.config(manifest.config).diff_ids
    if len(diff_ids) != len(manifest.layers):
        raise StoreError(f"{action}: the image's layers and diff_ids differ in number")
    with ThreadPoolExecutor(max_workers=_PARALLEL_LAYERS, thread_name_prefix="push") as pool:
        layers = list(
            pool.map(
                lambda pair: _push_layer(upload, pair[0], pair[1], blobs, cache),
                zip(manifest.layers, diff_ids, strict=True),
            )
        )
    config = manifest.config
    with blobs.open(config.digest) as stream:
        _upload_blob(upload, config.digest, config.size, stream, show=False)
    if upload.oci_media_types:
        config_type, manifest_type = oci.OCI_CONFIG, oci.OCI_MANIFEST
    else:
        config_type, manifest_type = oci.DOCKER_CONFIG, oci.DOCKER_MANIFEST
    pushed = oci.Manifest(
        config=oci.Descriptor(config_type, config.digest, config.size),
        layers=tuple(layers),
        media_type=manifest_type,
        annotations=manifest.annotations,
    )
    data = oci.canonical_json(pushed.to_json())
    upload.client.put_manifest(remote.tag, data, manifest_type, action=action)
    return oci.Descriptor(manifest_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def push_layer(
    client: RepositoryClient,
    blobs: BlobStore,
    layer: oci.Descriptor,
    *,
    action: str,
    progress: TransferProgress | None = None,
) -> oci.Descriptor:
    """Make the registry hold one layer of the store, gzip-compressed as ``push`` sends it
    (so an image and a cache exported to the same registry share their blobs); returns
    the descriptor the registry holds it under.  The cache export's entry point."""
    upload = _Upload.plain(client, action, progress)
    # The cache's layers are the store's own: uncompressed, so their digest is their diff_id.
    return _push_layer(
        upload, layer, layer.digest, blobs, _CompressedLayers(blobs.root / _COMPRESSED_CACHE)
    )


def upload_blob(
    client: RepositoryClient,
    digest: str,
    size: int,
    stream: BinaryIO,
    *,
    action: str,
    progress: TransferProgress | None = None,
) -> None:
    """Make the registry hold ``digest`` (skipped if it has it), read from ``stream``."""
    upload = _Upload.plain(client, action, progress)
    _upload_blob(upload, digest, size, stream, show=progress is not None)


def _push_layer(
    upload: _Upload,
    layer: oci.Descriptor,
    diff_id: str,
    blobs: BlobStore,
    cache: _CompressedLayers,
) -> oci.Descriptor:
    # Imported late: pyzstd and the thread pools are for pushes that compress.
    from builder.export.compression import convert_layer, layer_algorithm, media_type

    compression = upload.compression
    stored_algorithm = layer_algorithm(layer.media_type)
    if stored_algorithm != "uncompressed" and not compression.force:
        # Already compressed (a layout another tool wrote): it goes as it is.
        with blobs.open(layer.digest) as stream:
            _upload_blob(upload, layer.digest, layer.size, stream)
        kept = media_type(stored_algorithm, oci_media_types=upload.oci_media_types)
        return oci.Descriptor(kept, layer.digest, layer.size)
    key = _cache_key(diff_id, compression)
    known = cache.get(key)
    wanted = media_type(compression.algorithm, oci_media_types=upload.oci_media_types)
    if known is not None and upload.client.has_blob(known.digest, action=upload.action):
        upload.progress.skipped("push", known.digest, known.size, "exists")
        return oci.Descriptor(wanted, known.digest, known.size)
    compressed = convert_layer(
        blobs, layer, diff_id, compression, oci_media_types=upload.oci_media_types
    )
    with blobs.open(compressed.digest) as stream:
        _upload_blob(upload, compressed.digest, compressed.size, stream)
    cache.put(key, compressed)
    return compressed


def _cache_key(diff_id: str, compression: Compression) -> str:
    return f"{diff_id} {compression.algorithm} {compression.level}"


def _upload_blob(
    upload: _Upload, digest: str, size: int, stream: BinaryIO, *, show: bool = True
) -> None:
    """Make the registry hold ``digest``: skip it, mount it, or send it whole or in chunks.

    ``stream`` is read from its current position; ``show`` tells ``upload.progress``.
    """
    client, action = upload.client, upload.action
    progress = upload.progress if show else TransferProgress()
    if client.has_blob(digest, action=action):
        progress.skipped("push", digest, size, "exists")
        return
    location: str | None = None
    for source in upload.mount_from:
        location = client.start_upload(action=action, mount=digest, mount_from=source)
        if location is None:
            # mounted: the registry linked the blob from ``source``
            progress.skipped("push", digest, size, f"mounted from {source}")
            return
        break  # not mountable there; the registry opened a plain upload instead
    if location is None:
        location = client.start_upload(action=action)
    if location is None:
        raise RegistryError(f"{action}: {client.registry} opened no upload for {digest}")
    start = stream.tell()
    with progress.begin("push", digest, size) as transfer:
        if size <= upload.chunk_size:
            body = _Window(stream, start, size, transfer.advance)
            client.finish_upload(location, digest, body, size, action=action)  # type: ignore[arg-type]
            transfer.finish()
            return
        offset = 0
        while offset < size:
            length = min(upload.chunk_size, size - offset)
            chunk = _Window(stream, start + offset, length, transfer.advance)
            location = client.send_chunk(
                location, chunk, offset, action=action, size=length  # type: ignore[arg-type]
            )
            offset += length
        client.finish_upload(location, digest, b"", 0, action=action)
        transfer.finish()


class _Window:
    """``size`` bytes of ``stream`` from ``start``, as a file an HTTP body is read from:
    streamed as it is sent, rewound by seek when the request is sent again after an auth
    challenge; every byte read (or rewound) is reported to ``moved``."""

    def __init__(
        self, stream: BinaryIO, start: int, size: int, moved: Callable[[int], None]
    ) -> None:
        self._stream = stream
        self._start = start
        self._size = size
        self._position = 0
        self._moved = moved

    def read(self, amount: int = -1) -> bytes:
        left = self._size - self._position
        if amount < 0 or amount > left:
            amount = left
        if amount <= 0:
            return b""
        self._stream.seek(self._start + self._position)
        data = self._stream.read(amount)
        if not data:
            raise RegistryError(f"uploading: the blob ended {left} bytes early")
        self._position += len(data)
        self._moved(len(data))
        return data

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = 0) -> int:
        if whence != 0 or not 0 <= position <= self._size:
            raise ValueError(f"seek to {position} (whence {whence}) outside the upload window")
        self._moved(position - self._position)
        self._position = position
        return position


class _CompressedLayers:
    """"diff_id algorithm level" → the blob the layer compressed to: a cache, so a lost
    update only costs one compression (concurrent pushes may each write it; the last
    rename wins)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def get(self, key: str) -> oci.Descriptor | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return oci.Descriptor.from_json(entry)
        except StoreError:
            return None

    def put(self, key: str, compressed: oci.Descriptor) -> None:
        entries = self._read()
        entries[key] = compressed.to_json()
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
