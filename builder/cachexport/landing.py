"""A cached layer from elsewhere → an uncompressed, verified blob in the local store.

The local store keeps layers uncompressed (blob digest == diff_id), so a
layer from an imported cache is decompressed as it streams in: the bytes
as they arrive are hashed against the cache's blob digest, the
decompressed ones against the diff_id, and nothing lands unless both
match.  The compression is read from the bytes (gzip, zstd or none), not
from a media type another tool may have got wrong.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Protocol

import pyzstd

from builder.errors import CacheError, StoreError
from builder.image import oci
from cache.blobs import BlobRef, BlobStore

__all__ = ["Readable", "land_layer"]

_CHUNK = 1 << 20


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def land_layer(
    stream: Readable, blob: oci.Descriptor, diff_id: str, blobs: BlobStore, *, what: str
) -> BlobRef:
    """Store ``stream`` (the blob ``blob`` describes) uncompressed; it must hash to diff_id."""
    packed = hashlib.sha256()
    packed_size = 0
    decoder: _Decoder | None = None
    with blobs.writer() as writer:
        try:
            while chunk := stream.read(_CHUNK):
                packed.update(chunk)
                packed_size += len(chunk)
                if packed_size > blob.size:
                    raise CacheError(f"{what}: layer {blob.digest} is larger than {blob.size} "
                                     "bytes")
                if decoder is None:
                    decoder = _decoder_for(chunk)
                writer.write(decoder.decompress(chunk))
            if "sha256:" + packed.hexdigest() != blob.digest or packed_size != blob.size:
                raise CacheError(f"{what}: layer {blob.digest} does not match its digest")
            if decoder is not None:
                writer.write(decoder.flush())
        except (zlib.error, pyzstd.ZstdError, EOFError) as err:
            raise CacheError(f"{what}: decompressing layer {blob.digest}: {err}") from err
        try:
            return writer.commit(diff_id)
        except StoreError as err:
            raise CacheError(f"{what}: layer {blob.digest} does not unpack to {diff_id}") from err


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Plain:
    def decompress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Gzip:
    """gzip, with members concatenated as parallel compressors write them."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decompress(self, data: bytes) -> bytes:
        out = [self._inflate.decompress(data)]
        while self._inflate.eof and self._inflate.unused_data:
            rest = self._inflate.unused_data
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out.append(self._inflate.decompress(rest))
        return b"".join(out)

    def flush(self) -> bytes:
        tail = self._inflate.flush()
        if not self._inflate.eof:
            raise EOFError("gzip stream ends early")
        return tail


class _Zstd:
    def __init__(self) -> None:
        self._decompressor = pyzstd.EndlessZstdDecompressor()

    def decompress(self, data: bytes) -> bytes:
        return self._decompressor.decompress(data)

    def flush(self) -> bytes:
        if not self._decompressor.at_frame_edge:
            raise EOFError("zstd stream ends early")
        return b""


def _decoder_for(first_chunk: bytes) -> _Decoder:
    if first_chunk.startswith(b"\x1f\x8b"):
        return _Gzip()
    if first_chunk.startswith(b"\x28\xb5\x2f\xfd"):
        return _Zstd()
    return _Plain()
