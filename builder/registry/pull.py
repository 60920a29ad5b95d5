"""`pybuild pull`: an image from a registry into the local store, every byte verified.

The local store keeps layers uncompressed (blob digest == diff_id), so each
layer is decompressed as it streams in: the compressed bytes are hashed
against the manifest's digest, the uncompressed ones against the config's
diff_id, and the blob only lands when both match. The config and the
manifest land last, so a failed pull leaves no image, only verified layers.
Layers already in the store (by diff_id) and a config already stored are
never fetched again. Memory stays flat: the body is read in 1 MiB pieces and
each is decompressed in bounded pieces too (a MiB of gzip'd zeros is a GiB
of output). ``progress`` shows each layer's download.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import pyzstd

from builder.errors import RegistryError, StoreError
from builder.image import oci
from builder.image.config import ImageConfig
from builder.image.store import ImageStore
from builder.registry.client import RegistryOptions, RepositoryClient, open_repository
from builder.registry.reference import RemoteReference, parse_remote
from builder.transfer_progress import TransferProgress
from cache.blobs import BlobStore

__all__ = ["pull", "select_platform"]

_CHUNK = 1 << 20
_OUTPUT = 4 << 20  # the most a decoder hands over at once
_PARALLEL_LAYERS = 3


def pull(
    reference: str | RemoteReference,
    store: ImageStore,
    blobs: BlobStore,
    *,
    platform: oci.Platform | None = None,
    options: RegistryOptions | None = None,
    progress: TransferProgress | None = None,
) -> oci.Descriptor:
    """Pull ``reference`` (``platform`` from an index; this machine's by default), store it
    and tag it with its familiar name; returns the local manifest's descriptor.

    The local manifest is pybuild's OCI manifest over uncompressed layers, so its digest
    differs from the registry's; the config is kept byte for byte (same image id). A
    reference by digest is checked against the registry's manifest and left untagged.
    ``progress`` is told of each layer (transfer_progress.py; quiet if None).
    """
    remote = parse_remote(reference) if isinstance(reference, str) else reference
    if blobs.root.resolve() != store.root.resolve():
        raise StoreError(f"pulling {remote}: blob store {blobs.root} is not the image store's")
    action = f"pulling {remote}"
    client = open_repository(remote, options or RegistryOptions(), actions="pull")
    manifest = _resolve_manifest(client, remote, platform or oci.host_platform(), action)
    config_data = _fetch_config(client, manifest.config, blobs, action)
    try:
        config = ImageConfig.from_bytes(config_data)
    except StoreError as err:
        raise RegistryError(f"{action}: {err}") from err
    if len(manifest.layers) != len(config.diff_ids):
        raise RegistryError(
            f"{action}: {len(manifest.layers)} layers for {len(config.diff_ids)} diff_ids"
        )
    pairs = list(zip(manifest.layers, config.diff_ids, strict=True))
    view = progress if progress is not None else TransferProgress()
    with ThreadPoolExecutor(max_workers=_PARALLEL_LAYERS, thread_name_prefix="pull") as pool:
        layers = list(
            pool.map(
                lambda pair: _fetch_layer(client, pair[0], pair[1], blobs, action, view), pairs
            )
        )
    config_ref = blobs.put_bytes(config_data)
    local = store.put_manifest(
        oci.Descriptor(oci.OCI_CONFIG, config_ref.digest, config_ref.size), layers
    )
    if not remote.digest:
        store.tag(remote.familiar_name, local)
    return local


def select_platform(index: oci.Index, platform: oci.Platform) -> oci.Descriptor:
    """The index entry for ``platform``: os and architecture must match; an exact variant
    wins over an unstated one. Raises RegistryError if none fits."""
    fitting = [
        entry
        for entry in index.manifests
        if entry.platform is not None
        and entry.media_type in oci.MANIFEST_TYPES
        and (entry.platform.os, entry.platform.architecture) == (platform.os, platform.architecture)
        and (not platform.variant or entry.platform.variant in ("", platform.variant))
    ]
    if not fitting:
        wanted = f"{platform.os}/{platform.architecture}"
        if platform.variant:
            wanted += f"/{platform.variant}"
        raise RegistryError(f"no image for {wanted} in the index")
    fitting.sort(
        key=lambda entry: entry.platform is None or entry.platform.variant != platform.variant
    )
    return fitting[0]


def _resolve_manifest(
    client: RepositoryClient, remote: RemoteReference, platform: oci.Platform, action: str
) -> oci.Manifest:
    data, media_type = client.get_manifest(remote.reference, action=action)
    if remote.digest:
        _check_digest(data, remote.digest, action, "manifest")
    try:
        obj = oci.parse_json(data, f"manifest {remote.reference}")
        kind = oci.read_str(obj, "mediaType", "manifest") or media_type
        if kind in oci.INDEX_TYPES or (not kind and "manifests" in obj):
            try:
                entry = select_platform(oci.Index.from_json(obj), platform)
            except RegistryError as err:
                raise RegistryError(f"{action}: {err}") from err
            data, media_type = client.get_manifest(entry.digest, action=action)
            _check_digest(data, entry.digest, action, "manifest")
            obj = oci.parse_json(data, f"manifest {entry.digest}")
            kind = oci.read_str(obj, "mediaType", "manifest") or media_type or entry.media_type
        return oci.Manifest.from_json(obj, media_type=kind)
    except StoreError as err:
        raise RegistryError(f"{action}: {err}") from err


def _fetch_config(
    client: RepositoryClient, descriptor: oci.Descriptor, blobs: BlobStore, action: str
) -> bytes:
    if blobs.has(descriptor.digest):
        return blobs.read_bytes(descriptor.digest)
    with client.open_blob(descriptor.digest, action=action) as response:
        data = response.read(descriptor.size + 1)
    if len(data) != descriptor.size:
        raise RegistryError(f"{action}: config {descriptor.digest} is not {descriptor.size} bytes")
    _check_digest(data, descriptor.digest, action, "config")
    return data


def _fetch_layer(
    client: RepositoryClient,
    layer: oci.Descriptor,
    diff_id: str,
    blobs: BlobStore,
    action: str,
    progress: TransferProgress,
) -> oci.Descriptor:
    """Stream one layer into the store uncompressed; returns its local descriptor."""
    if blobs.has(diff_id):
        progress.skipped("pull", layer.digest, layer.size, "already present")
        return oci.Descriptor(oci.OCI_LAYER, diff_id, blobs.size(diff_id))
    with progress.begin("pull", layer.digest, layer.size) as transfer:
        local = _download_layer(client, layer, diff_id, blobs, action, transfer.advance)
        transfer.finish()
    return local


def _download_layer(
    client: RepositoryClient,
    layer: oci.Descriptor,
    diff_id: str,
    blobs: BlobStore,
    action: str,
    moved: Callable[[int], None],
) -> oci.Descriptor:
    packed_hash = hashlib.sha256()
    packed_size = 0
    decoder: _Decoder | None = None
    broken: Exception | None = None
    what = f"layer {layer.digest}"
    with client.open_blob(layer.digest, action=action) as response, blobs.writer() as writer:
        while chunk := response.read(_CHUNK):
            packed_hash.update(chunk)
            packed_size += len(chunk)
            moved(len(chunk))
            if packed_size > layer.size:
                raise RegistryError(f"{action}: {what} is larger than {layer.size} bytes")
            if decoder is None:
                decoder = _decoder_for(chunk)
            if broken is None:
                # A stream that will not decompress is most often one that was damaged on
                # the way: keep hashing, so the digest check below can say so.
                try:
                    for piece in decoder.decompress(chunk):
                        writer.write(piece)
                except _DECOMPRESSION_ERRORS as err:
                    broken = err
        if "sha256:" + packed_hash.hexdigest() != layer.digest or packed_size != layer.size:
            raise RegistryError(f"{action}: {what} does not match its digest")
        try:
            if decoder is not None and broken is None:
                writer.write(decoder.flush())
        except _DECOMPRESSION_ERRORS as err:
            broken = err
        if broken is not None:
            raise RegistryError(f"{action}: decompressing {what}: {broken}") from broken
        try:
            ref = writer.commit(diff_id)
        except StoreError as err:
            raise RegistryError(
                f"{action}: uncompressed {what} does not match diff_id {diff_id}"
            ) from err
    return oci.Descriptor(oci.OCI_LAYER, ref.digest, ref.size)


_DECOMPRESSION_ERRORS = (zlib.error, pyzstd.ZstdError, EOFError)


def _check_digest(data: bytes, digest: str, action: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise RegistryError(f"{action}: {what} {digest} does not match its content ({actual})")


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> Iterator[bytes]:
        """The output for ``data``, in pieces of at most _OUTPUT bytes."""
        ...

    def flush(self) -> bytes: ...


class _Identity:
    def decompress(self, data: bytes) -> Iterator[bytes]:
        yield data

    def flush(self) -> bytes:
        return b""


class _Gzip:
    """gzip, members concatenated as pigz and some pushers write them."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decompress(self, data: bytes) -> Iterator[bytes]:
        pending = data
        while pending:
            if self._inflate.eof:  # a member ended: what follows is the next one
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            yield self._inflate.decompress(pending, _OUTPUT)
            # At a member's end zlib moves all input left over to unused_data;
            # before it, input held back by the output limit waits in unconsumed_tail.
            if self._inflate.eof:
                pending = self._inflate.unused_data
            else:
                pending = self._inflate.unconsumed_tail

    def flush(self) -> bytes:
        tail = self._inflate.flush()
        if not self._inflate.eof:
            raise EOFError("gzip stream ends early")
        return tail


class _Zstd:
    def __init__(self) -> None:
        self._decompressor = pyzstd.EndlessZstdDecompressor()

    def decompress(self, data: bytes) -> Iterator[bytes]:
        yield self._decompressor.decompress(data, _OUTPUT)
        # needs_input is False while output is held back for want of room.
        while not self._decompressor.needs_input:
            yield self._decompressor.decompress(b"", _OUTPUT)

    def flush(self) -> bytes:
        if not self._decompressor.at_frame_edge:
            raise EOFError("zstd stream ends early")
        return b""


# The bytes decide, not the media type: docker's layer types say gzip for
# layers that are not, and a plain tar is sometimes served as tar+gzip.
_MAGIC: tuple[tuple[bytes, Callable[[], _Decoder]], ...] = (
    (b"\x1f\x8b", _Gzip),
    (b"\x28\xb5\x2f\xfd", _Zstd),
)


def _decoder_for(first_chunk: bytes) -> _Decoder:
    for magic, make in _MAGIC:
        if first_chunk.startswith(magic):
            return make()
    return _Identity()
