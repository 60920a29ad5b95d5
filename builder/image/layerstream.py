"""A layer arriving compressed → an uncompressed, verified blob in the local store.

The local store keeps layers uncompressed (blob digest == diff_id), so a
layer that arrives compressed (a pull, an imported cache) is decompressed as
it streams in: the bytes as they arrive are hashed against the blob's
digest, the decompressed ones against the diff_id, and nothing lands unless
both match. The compression is read from the bytes (gzip, zstd or none),
not from a media type another tool may have got wrong. Memory stays flat:
each piece read is decompressed in pieces of at most 4 MiB (a MiB of gzip'd
zeros is a GiB of output).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from typing import Protocol

import pyzstd

from builder.errors import StoreError
from builder.image import oci
from cache.blobs import BlobRef, BlobStore

__all__ = ["LayerLandingError", "Readable", "land_uncompressed"]

_CHUNK = 1 << 20
_OUTPUT = 4 << 20  # the most a decoder hands over at once


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class LayerLandingError(StoreError):
    """Why a layer did not land; ``reason`` is one of the class's reason names."""

    TOO_LARGE = "too large"
    NOT_ITS_DIGEST = "not its digest"
    UNDECODABLE = "undecodable"
    NOT_ITS_DIFF_ID = "not its diff_id"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def land_uncompressed(
    stream: Readable,
    blob: oci.Descriptor,
    diff_id: str,
    blobs: BlobStore,
    *,
    moved: Callable[[int], None] | None = None,
) -> BlobRef:
    """Store ``stream`` (the blob ``blob`` describes) uncompressed; it must hash to ``diff_id``.

    ``moved`` is told how many bytes each read brought. Raises LayerLandingError.
    """
    packed = hashlib.sha256()
    packed_size = 0
    decoder: _Decoder | None = None
    broken: Exception | None = None
    with blobs.writer() as writer:
        while chunk := stream.read(_CHUNK):
            packed.update(chunk)
            packed_size += len(chunk)
            if moved is not None:
                moved(len(chunk))
            if packed_size > blob.size:
                raise LayerLandingError(LayerLandingError.TOO_LARGE)
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
        if "sha256:" + packed.hexdigest() != blob.digest or packed_size != blob.size:
            raise LayerLandingError(LayerLandingError.NOT_ITS_DIGEST)
        try:
            if decoder is not None and broken is None:
                writer.write(decoder.flush())
        except _DECOMPRESSION_ERRORS as err:
            broken = err
        if broken is not None:
            raise LayerLandingError(LayerLandingError.UNDECODABLE, str(broken)) from broken
        try:
            return writer.commit(diff_id)
        except StoreError as err:
            raise LayerLandingError(LayerLandingError.NOT_ITS_DIFF_ID) from err


_DECOMPRESSION_ERRORS = (zlib.error, pyzstd.ZstdError, EOFError)


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
