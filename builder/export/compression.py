"""Layers recompressed on the way out, streaming, and remembered so the next export reuses them.

The store keeps layers uncompressed (digest == diff_id). An export asking
for gzip or zstd streams each layer through the compressor into a blob of
the BlobStore, and ``ROOT/compressed-layers.json`` maps (diff_id, algorithm,
level) to that blob, so exporting the same image again reads the blob
instead of compressing. The mapping is only a cache: an entry whose blob gc
has removed is ignored and recomputed. gzip is compressed pigz-style, in
1 MiB chunks on a thread pool, each chunk primed with the 32 KiB before it,
so the output (and its digest) does not depend on the number of threads.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import os
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, cast

import pyzstd

from builder.errors import StoreError
from builder.export.options import Compression
from builder.image import oci
from cache import files
from cache.blobs import BlobStore, validate_digest

__all__ = [
    "CompressedLayers",
    "compress_stream",
    "convert_layer",
    "layer_algorithm",
    "media_type",
]

_INDEX_NAME = "compressed-layers.json"
# The on-disk encoding's tag: changing the key or entry layout means bumping it
# (an index with another tag is treated as empty and rewritten).
_INDEX_VERSION = "pybuild.compressed-layers.v1"
_CHUNK = 1 << 20
_DICTIONARY = 32 << 10
# The gzip header of RFC 1952 with no name and mtime 0, OS "unknown" as Go writes it.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# A final, empty, fixed-Huffman deflate block: ends a stream of sync-flushed chunks.
_DEFLATE_END = b"\x03\x00"

_OCI_TYPES = {"uncompressed": oci.OCI_LAYER, "gzip": oci.OCI_LAYER_GZIP, "zstd": oci.OCI_LAYER_ZSTD}
_DOCKER_TYPES = {"uncompressed": oci.DOCKER_LAYER, "gzip": oci.DOCKER_LAYER_GZIP}


def media_type(algorithm: str, *, oci_media_types: bool) -> str:
    """The layer media type for ``algorithm``; zstd has only an OCI one."""
    if oci_media_types or algorithm not in _DOCKER_TYPES:
        return _OCI_TYPES[algorithm]
    return _DOCKER_TYPES[algorithm]


def layer_algorithm(layer_media_type: str) -> str:
    """What a stored layer is compressed with, read from its media type."""
    if layer_media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if layer_media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    return "uncompressed"


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: str
    size: int


class CompressedLayers:
    """The (diff_id, algorithm, level) → blob mapping in ROOT/compressed-layers.json.

    Reads take no lock and see a whole file (it is only ever renamed into
    place); writers re-read and merge under an flock, so two exports that
    compress different layers at once both keep their entries.
    """

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._path = blobs.root / _INDEX_NAME
        self._lock_path = blobs.root / (_INDEX_NAME + ".lock")

    def lookup(self, diff_id: str, compression: Compression) -> tuple[str, int] | None:
        """The (digest, size) of the compressed blob, if it is recorded and still stored."""
        entry = self._read().get(_key(diff_id, compression))
        if entry is None or not self._blobs.has(entry.digest):
            return None
        return entry.digest, entry.size

    def record(self, diff_id: str, compression: Compression, digest: str, size: int) -> None:
        with self._locked():
            entries = {
                key: entry for key, entry in self._read().items() if self._blobs.has(entry.digest)
            }
            entries[_key(diff_id, compression)] = _Entry(digest, size)
            content = {
                "version": _INDEX_VERSION,
                "layers": {
                    key: {"digest": entry.digest, "size": entry.size}
                    for key, entry in sorted(entries.items())
                },
            }
            self._write(oci.canonical_json(content))

    def _read(self) -> dict[str, _Entry]:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            content = json.loads(data)
            if content.get("version") != _INDEX_VERSION:
                return {}
            return {
                key: _Entry(validate_digest(value["digest"]), int(value["size"]))
                for key, value in content["layers"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError, StoreError):
            return {}  # a cache: a damaged index costs recompression, nothing more

    def _write(self, data: bytes) -> None:
        files.write_atomically(self._path, data, staging_dir=self._blobs.staging_dir)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return files.exclusive_lock(self._lock_path)


def _key(diff_id: str, compression: Compression) -> str:
    return f"{diff_id} {compression.algorithm} {compression.level}"


def convert_layer(
    blobs: BlobStore,
    layer: oci.Descriptor,
    diff_id: str,
    compression: Compression,
    *,
    oci_media_types: bool,
    cache: CompressedLayers | None = None,
) -> oci.Descriptor:
    """The layer as the export writes it: a blob in ``blobs`` and its descriptor.

    An uncompressed layer is compressed as asked (or reused from ``cache``); a
    layer already compressed is kept unless ``compression.force``. The
    returned descriptor carries the media type for the chosen type family.
    """
    current = layer_algorithm(layer.media_type)
    target = compression.algorithm
    if current == target or (current != "uncompressed" and not compression.force):
        kept = media_type(current, oci_media_types=oci_media_types)
        return oci.Descriptor(kept, layer.digest, layer.size)
    wanted = media_type(target, oci_media_types=oci_media_types)
    if target == "uncompressed" and blobs.has(diff_id):
        return oci.Descriptor(wanted, diff_id, blobs.size(diff_id))
    cache = cache if cache is not None else CompressedLayers(blobs)
    found = cache.lookup(diff_id, compression)
    if found is not None:
        return oci.Descriptor(wanted, *found)
    with (
        blobs.open(layer.digest, verify=True) as stored,
        _decompressed(stored, current) as plain,
        blobs.writer() as writer,
    ):
        for piece in compress_stream(plain, compression):
            writer.write(piece)
        ref = writer.commit()
    if target != "uncompressed":
        cache.record(diff_id, compression, ref.digest, ref.size)
    return oci.Descriptor(wanted, ref.digest, ref.size)


@contextlib.contextmanager
def _decompressed(stream: BinaryIO, algorithm: str) -> Iterator[BinaryIO]:
    if algorithm == "gzip":
        with gzip.GzipFile(fileobj=stream, mode="rb") as reader:
            yield cast(BinaryIO, reader)
    elif algorithm == "zstd":
        with pyzstd.ZstdFile(stream, mode="rb") as reader:
            yield cast(BinaryIO, reader)
    else:
        yield stream


def compress_stream(
    source: BinaryIO, compression: Compression, *, threads: int | None = None
) -> Iterator[bytes]:
    """``source`` compressed, piece by piece; memory stays at a few chunks per thread."""
    threads = threads or os.cpu_count() or 1
    if compression.algorithm == "gzip":
        return _gzip(source, compression.level, threads)
    if compression.algorithm == "zstd":
        return _zstd(source, compression.level, threads)
    return _copy(source)


def _copy(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(_CHUNK):
        yield chunk


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; short only at end of stream (decompressors return less)."""
    data = source.read(size)
    if not data or len(data) == size:
        return data
    parts = [data]
    missing = size - len(data)
    while missing and (more := source.read(missing)):
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def _deflate_chunk(chunk: bytes, dictionary: bytes, level: int) -> bytes:
    # zlib releases the GIL while it deflates, so chunks compress in parallel.
    if dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _gzip(source: BinaryIO, level: int, threads: int) -> Iterator[bytes]:
    yield _GZIP_HEADER
    crc = 0
    size = 0
    dictionary = b""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gzip") as pool:
        pending: collections.deque[Future[bytes]] = collections.deque()
        while chunk := _read_full(source, _CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            pending.append(pool.submit(_deflate_chunk, chunk, dictionary, level))
            dictionary = chunk[-_DICTIONARY:]
            while len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    yield _DEFLATE_END + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)


def _zstd(source: BinaryIO, level: int, threads: int) -> Iterator[bytes]:
    options: dict[int, int] = {
        pyzstd.CParameter.compressionLevel: level,
        pyzstd.CParameter.checksumFlag: 1,
    }
    # With one or more workers zstd's output is the same whatever their number;
    # a libzstd built without threads reports an upper bound of 0.
    if pyzstd.CParameter.nbWorkers.bounds()[1] > 0:
        options[pyzstd.CParameter.nbWorkers] = threads
    compressor = pyzstd.ZstdCompressor(options)
    while chunk := source.read(_CHUNK):
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()
