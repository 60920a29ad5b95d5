"""Layers recompressed on the way out, streaming, and remembered so later exports reuse them.

The store keeps layers uncompressed (digest == diff_id). An export asking
for gzip or zstd streams each layer through the compressor, and
``ROOT/compressed-layers.json`` maps (diff_id, algorithm, level) to a blob
of the BlobStore holding the result, so exporting the same layer again
reads the blob instead of compressing. The mapping is only a cache: an
entry whose blob gc has removed is ignored and recomputed.

A copy is kept from a layer's second export on. An archive streams a layer
in as it compresses; keeping a copy as well means writing every byte twice,
which costs a fifth of a zstd export, and most layers (a build's new top
layers) are exported once. So the first export to an archive only notes
the layer as exported, and the second keeps a copy. Outputs that need the
blob in the store (a push, an archive on a pipe) keep it from the first.

gzip is compressed pigz-style, in 1 MiB chunks on a thread pool, each
chunk primed with the 32 KiB before it; zstd pzstd-style, one frame per
4 MiB on a thread pool. Either way the output (and its digest) does not
depend on the number of threads, which the cache keyed by diff_id and
registries' dedupe rely on.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from typing import BinaryIO, cast

import pyzstd

from builder.errors import StoreError
from builder.export.options import Compression
from builder.export.writeback import EarlyWriteback
from builder.image import oci
from cache import files
from cache.blobs import BlobRef, BlobStore, validate_digest

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
# Layers exported once and not kept (see the module's docstring): the newest
# this many are remembered; a layer that falls off is kept from its third export.
_EXPORTED_ONCE_LIMIT = 1024
# zstd's frames (see _zstd): 4 MiB is twice level 3's window, so a frame loses
# little to starting afresh; threads are capped to bound memory (a frame
# buffer and its output per job in flight), not for the bytes' sake.
_ZSTD_FRAME = 4 << 20
_ZSTD_MAX_THREADS = 4
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
    """The (diff_id, algorithm, level) → blob mapping in ROOT/compressed-layers.json,
    and the layers exported once without a copy kept.

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
        entry = self._read().layers.get(_key(diff_id, compression))
        if entry is None or not self._blobs.has(entry.digest):
            return None
        return entry.digest, entry.size

    def exported_before(self, diff_id: str, compression: Compression) -> bool:
        """Whether this layer was exported so compressed before: noted as exported once,
        or recorded with a copy that gc has since removed."""
        key = _key(diff_id, compression)
        index = self._read()
        return key in index.exported_once or key in index.layers

    def record(self, diff_id: str, compression: Compression, digest: str, size: int) -> None:
        """Remember the kept copy ``digest`` of the layer."""
        key = _key(diff_id, compression)
        with self._locked():
            index = self._read()
            layers = {
                name: entry for name, entry in index.layers.items() if self._blobs.has(entry.digest)
            }
            layers[key] = _Entry(digest, size)
            once = {name: when for name, when in index.exported_once.items() if name != key}
            self._write(_Index(layers, once))

    def note_exported(self, diff_id: str, compression: Compression) -> None:
        """Remember that the layer was exported so compressed, with no copy kept."""
        key = _key(diff_id, compression)
        with self._locked():
            index = self._read()
            once = dict(index.exported_once)
            once[key] = int(time.time())
            newest = sorted(once.items(), key=lambda item: (item[1], item[0]))
            self._write(_Index(index.layers, dict(newest[-_EXPORTED_ONCE_LIMIT:])))

    def _read(self) -> _Index:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return _Index({}, {})
        try:
            content = json.loads(data)
            if content.get("version") != _INDEX_VERSION:
                return _Index({}, {})
            layers = {
                key: _Entry(validate_digest(value["digest"]), int(value["size"]))
                for key, value in content["layers"].items()
            }
            once = {str(key): int(when) for key, when in content.get("exportedOnce", {}).items()}
            return _Index(layers, once)
        except (ValueError, KeyError, TypeError, AttributeError, StoreError):
            return _Index({}, {})  # a cache: a damaged index costs recompression, nothing more

    def _write(self, index: _Index) -> None:
        content: dict[str, object] = {
            "version": _INDEX_VERSION,
            "layers": {
                key: {"digest": entry.digest, "size": entry.size}
                for key, entry in sorted(index.layers.items())
            },
        }
        if index.exported_once:
            content["exportedOnce"] = dict(sorted(index.exported_once.items()))
        # Not fsynced: an entry lost in a crash costs one recompression, and an
        # entry whose blob was lost is ignored (lookup checks the blob is there).
        files.write_atomically(
            self._path, oci.canonical_json(content), staging_dir=self._blobs.staging_dir,
            durable=False,
        )

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return files.exclusive_lock(self._lock_path)


@dataclass(frozen=True, slots=True)
class _Index:
    layers: dict[str, _Entry]
    # key → when (unix seconds) it was last exported without a copy kept.
    exported_once: dict[str, int]


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
    written: set[str] | None = None,
    tee: Callable[[bytes], object] | None = None,
) -> oci.Descriptor:
    """The layer as the export writes it: its descriptor, and its blob unless only ``tee`` needs it.

    An uncompressed layer is compressed as asked (or reused from ``cache``); a
    layer already compressed is kept unless ``compression.force``. The
    returned descriptor carries the media type for the chosen type family.
    A layer compressed now has its bytes handed to ``tee``, piece by piece, as
    they are made (an archive streams them in while the compressor works);
    ``tee`` is called only then. Without ``tee``, or from the layer's second
    export on (see the module's docstring), the result is also stored as a
    blob, and its digest added to ``written`` (hashed as it was written, so
    the archive need not hash it again); otherwise no blob is left behind.
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
    keep = tee is None or target == "uncompressed" or cache.exported_before(diff_id, compression)
    with blobs.open(layer.digest, verify=True) as stored, _decompressed(stored, current) as plain:
        if not keep:
            assert tee is not None
            digest, size = _stream_only(plain, compression, tee)
            cache.note_exported(diff_id, compression)
            return oci.Descriptor(wanted, digest, size)
        ref = _store(blobs, plain, compression, tee)
    if written is not None:
        written.add(ref.digest)
    if target != "uncompressed":
        cache.record(diff_id, compression, ref.digest, ref.size)
    return oci.Descriptor(wanted, ref.digest, ref.size)


def _stream_only(
    plain: BinaryIO, compression: Compression, tee: Callable[[bytes], object]
) -> tuple[str, int]:
    """Compress ``plain`` into ``tee`` alone; the (digest, size) of what went there."""
    digest = hashlib.sha256()
    size = 0
    # Closed explicitly: a failed write must stop the reading thread before
    # ``plain`` is closed under it.
    with contextlib.closing(compress_stream(plain, compression)) as pieces:
        for piece in pieces:
            tee(piece)
            digest.update(piece)
            size += len(piece)
    return "sha256:" + digest.hexdigest(), size


def _store(
    blobs: BlobStore,
    plain: BinaryIO,
    compression: Compression,
    tee: Callable[[bytes], object] | None,
) -> BlobRef:
    """Compress ``plain`` into a new blob (and into ``tee``, if given)."""
    with blobs.writer() as writer:
        writeback = EarlyWriteback(writer.fileno())
        try:
            with contextlib.closing(compress_stream(plain, compression)) as pieces:
                for piece in pieces:
                    writer.write(piece)
                    writeback.wrote(len(piece))
                    if tee is not None:
                        tee(piece)
        finally:
            writeback.wait()
        return writer.commit()


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
) -> Generator[bytes, None, None]:
    """``source`` compressed, piece by piece; memory stays at a few chunks per thread."""
    threads = threads or os.cpu_count() or 1
    if compression.algorithm == "gzip":
        return _gzip(source, compression.level, threads)
    if compression.algorithm == "zstd":
        return _zstd(source, compression.level, threads)
    return _copy(source)


def _copy(source: BinaryIO) -> Generator[bytes, None, None]:
    while chunk := source.read(_CHUNK):
        yield chunk


def _fill(source: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``source``; short only at end of stream (decompressors return less)."""
    readinto = getattr(source, "readinto", None)
    filled = 0
    while filled < len(view):
        if readinto is not None:
            count = readinto(view[filled:])
        else:
            data = source.read(len(view) - filled)
            count = len(data)
            view[filled : filled + count] = data
        if not count:
            break
        filled += count
    return filled


def _in_parallel(
    source: BinaryIO,
    chunk_size: int,
    threads: int,
    compress: Callable[[memoryview, bytes], tuple[bytes, ...]],
    *,
    carry: int = 0,
    seen: Callable[[memoryview], object] | None = None,
) -> Iterator[bytes]:
    """``compress(chunk, carried)`` over ``source`` cut into chunks of exactly ``chunk_size``
    (the last shorter), on a thread pool, its pieces in order; ``carried`` is the last
    ``carry`` bytes of the chunk before (b"" for the first). ``seen`` gets each chunk, in
    order, on the reading thread.

    The cut depends on ``chunk_size`` alone, so the output does not depend on ``threads``.
    Three kinds of work overlap: a feeder thread reads (and, through a verifying
    ``source``, hashes) chunks into a ring of reused buffers and submits them; the
    pool compresses; the caller takes the pieces in order and writes (and hashes)
    them. Memory stays at the ring plus the outputs waiting to be taken (2 per thread).
    """
    in_flight = 2 * threads
    # Futures whose pieces the caller has yet to take; None ends, an exception fails.
    results: queue.Queue[Future[tuple[bytes, ...]] | BaseException | None] = queue.Queue(
        maxsize=in_flight
    )
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="compress") as pool:
        feeder = threading.Thread(
            target=_feed,
            args=(source, chunk_size, in_flight + 2, pool, compress, carry, seen, results, stop),
            name="compress-feeder",
            daemon=True,
        )
        feeder.start()
        try:
            while (item := results.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield from _nonempty(item.result())
        finally:
            stop.set()
            feeder.join()


def _feed(
    source: BinaryIO,
    chunk_size: int,
    ring_size: int,
    pool: ThreadPoolExecutor,
    compress: Callable[[memoryview, bytes], tuple[bytes, ...]],
    carry: int,
    seen: Callable[[memoryview], object] | None,
    results: queue.Queue[Future[tuple[bytes, ...]] | BaseException | None],
    stop: threading.Event,
) -> None:
    """_in_parallel's reading side: chunks in, futures out to ``results``, in order."""
    # Buffers are made as they are first needed: a small layer never pays for the ring.
    ring: list[memoryview | None] = [None] * ring_size
    # A buffer is refilled only once the job that was given it is done (a job gets
    # the carried bytes as a copy, so no job reads another's buffer). At most
    # ring_size - 2 futures wait in ``results``, plus one being put: one is free.
    busy: list[Future[tuple[bytes, ...]] | None] = [None] * ring_size
    carried = b""
    try:
        number = 0
        while not stop.is_set():
            slot = number % ring_size
            previous = busy[slot]
            if previous is not None:
                futures_wait([previous])
            buffer = ring[slot]
            if buffer is None:
                buffer = ring[slot] = memoryview(bytearray(chunk_size))
            count = _fill(source, buffer)
            if not count:
                break
            chunk = buffer[:count]
            if seen is not None:
                seen(chunk)
            future = pool.submit(compress, chunk, carried)
            busy[slot] = future
            if carry:
                carried = bytes(chunk[-carry:])
            if not _put(results, future, stop):
                return
            number += 1
            if count < chunk_size:
                break
        _put(results, None, stop)
    except BaseException as err:  # noqa: BLE001 (handed to the caller, who raises it)
        _put(results, err, stop)


def _put(
    results: queue.Queue[Future[tuple[bytes, ...]] | BaseException | None],
    item: Future[tuple[bytes, ...]] | BaseException | None,
    stop: threading.Event,
) -> bool:
    """Queue ``item`` unless the caller has stopped taking (then False)."""
    while not stop.is_set():
        try:
            results.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _nonempty(pieces: tuple[bytes, ...]) -> Iterator[bytes]:
    return (piece for piece in pieces if piece)


def _deflate_chunk(chunk: memoryview, dictionary: bytes, level: int) -> tuple[bytes, bytes]:
    # zlib releases the GIL while it deflates, so chunks compress in parallel.
    if dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(chunk), compressor.flush(zlib.Z_SYNC_FLUSH)


class _Checksum:
    """The gzip trailer's CRC-32 and length, taken over the chunks in order."""

    def __init__(self) -> None:
        self.crc = 0
        self.size = 0

    def update(self, chunk: memoryview) -> None:
        self.crc = zlib.crc32(chunk, self.crc)
        self.size += len(chunk)


def _gzip(source: BinaryIO, level: int, threads: int) -> Generator[bytes, None, None]:
    yield _GZIP_HEADER
    checksum = _Checksum()
    yield from _in_parallel(
        source,
        _CHUNK,
        threads,
        lambda chunk, dictionary: _deflate_chunk(chunk, dictionary, level),
        carry=_DICTIONARY,
        seen=checksum.update,
    )
    yield _DEFLATE_END + struct.pack("<II", checksum.crc & 0xFFFFFFFF, checksum.size & 0xFFFFFFFF)


def _zstd(source: BinaryIO, level: int, threads: int) -> Generator[bytes, None, None]:
    """One zstd frame per 4 MiB, compressed in parallel, as pzstd writes them.

    Decoders read concatenated frames as one stream (the format says they
    must), and each frame depends on its own bytes only, so the output is the
    same whatever the thread count. This costs less than libzstd's own
    workers, which spend a third more CPU on jobs, overlaps and hand-over.
    """
    options: dict[int, int] = {
        pyzstd.CParameter.compressionLevel: level,
        pyzstd.CParameter.checksumFlag: 1,
    }

    # One compressor per thread, reused frame after frame: a frame ended with
    # FLUSH_FRAME leaves it ready for the next, and its tables are not
    # allocated (and faulted in) again for every 4 MiB. The chunk goes in as
    # a stream and the frame is ended apart: handed over in one call with the
    # end, libzstd takes the frame as a one-shot of known size, which was
    # measured a quarter slower here and compresses slightly worse.
    compressors = threading.local()

    def frame(chunk: memoryview, _: bytes) -> tuple[bytes, bytes]:
        compressor = getattr(compressors, "zstd", None)
        if compressor is None:
            compressor = compressors.zstd = pyzstd.ZstdCompressor(options)
        # pyzstd releases the GIL while it compresses.
        return compressor.compress(chunk), compressor.flush(pyzstd.ZstdCompressor.FLUSH_FRAME)

    empty = True
    for piece in _in_parallel(source, _ZSTD_FRAME, min(threads, _ZSTD_MAX_THREADS), frame):
        empty = False
        yield piece
    if empty:
        yield pyzstd.compress(b"", options)  # one empty frame: no bytes is no zstd stream
