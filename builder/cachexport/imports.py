"""--cache-from: the imported caches, asked in order when the local index misses.

Each cache is loaded once, before the build (its manifest and its records,
a few kilobytes); its layers stay where they are until a step reads them.
A hit is answered from the records alone; its layer is fetched, verified
and indexed in the local cache only when ``ensure`` is asked for it: by a
step that is about to run on top of it, by the final image, or by a cache
export.  A hit whose layer the local store already holds is indexed at
once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

from builder.cachexport.document import (
    CONFIG_MEDIA_TYPE,
    INLINE_KEY,
    MAX_DOCUMENT_SIZE,
    CacheDocument,
    CacheRecord,
)
from builder.cachexport.landing import Readable, land_layer
from builder.errors import CacheError, RegistryError, StoreError
from builder.image import oci
from builder.image.config import ImageConfig
from builder.plan.graph import LayerRef
from builder.solver import ImportedHit
from cache.blobs import BlobStore
from cache.index import CacheEntry, CacheIndex

__all__ = [
    "BlobSource",
    "ImportChain",
    "LoadedCache",
    "cache_from_manifest",
    "load_all",
    "read_small_blob",
]

_PARALLEL_FETCHES = 3


class BlobSource(Protocol):
    """Where an imported cache's blobs are read from (a directory, a registry, the store)."""

    def open_blob(self, blob: oci.Descriptor) -> contextlib.AbstractContextManager[Readable]:
        """The blob's bytes, unverified: the caller checks them against the digest."""


@dataclass(frozen=True, slots=True)
class LoadedCache:
    """One imported cache: its records (each naming its blob) and where the blobs are."""

    label: str
    document: CacheDocument
    layers: Mapping[str, oci.Descriptor]  # blob digest → descriptor
    source: BlobSource


def read_small_blob(source: BlobSource, blob: oci.Descriptor, what: str) -> bytes:
    """A manifest or config blob, whole and checked against its digest."""
    import hashlib

    if blob.size > MAX_DOCUMENT_SIZE:
        raise CacheError(f"{what}: {blob.digest} is larger than {MAX_DOCUMENT_SIZE} bytes")
    with source.open_blob(blob) as stream:
        data = stream.read(blob.size + 1)
    if len(data) != blob.size or "sha256:" + hashlib.sha256(data).hexdigest() != blob.digest:
        raise CacheError(f"{what}: {blob.digest} does not match its content")
    return data


def cache_from_manifest(
    manifest: oci.Manifest, source: BlobSource, label: str
) -> LoadedCache:
    """The cache a manifest describes: a cache manifest, or an image with an inline cache."""
    config = manifest.config
    data = read_small_blob(source, config, f"cache {label}: config")
    layers = {layer.digest: layer for layer in manifest.layers}
    if config.media_type == CONFIG_MEDIA_TYPE:
        return LoadedCache(label, CacheDocument.from_bytes(data), layers, source)
    if config.media_type not in oci.CONFIG_TYPES:
        raise CacheError(f"cache {label}: {config.media_type} is neither a cache nor an image")
    try:
        image = ImageConfig.from_bytes(data)
    except StoreError as err:
        raise CacheError(f"cache {label}: {err}") from err
    inline = image.extra.get(INLINE_KEY)
    if inline is None:
        raise CacheError(f"cache {label}: the image has no inline cache "
                         "(build it with --cache-to type=inline)")
    document = CacheDocument.from_json(inline)
    # An inline record names a diff_id; the image's own layer of that diff_id is its blob.
    blob_of = {diff_id: layer.digest
               for diff_id, layer in zip(image.diff_ids, manifest.layers, strict=False)}
    records = tuple(replace(record, blob=blob_of.get(record.diff_id, ""))
                    for record in document.records)
    return LoadedCache(label, replace(document, records=records), layers, source)


@dataclass(slots=True)
class _Pending:
    """An imported hit whose layer is not local yet: where to get it, which keys name it."""

    cache: LoadedCache
    record: CacheRecord
    keys: list[str] = field(default_factory=list)


class ImportChain:
    """The solver's CacheImports over several imported caches, tried in the order given."""

    def __init__(
        self, caches: Sequence[LoadedCache], *, blobs: BlobStore, index: CacheIndex
    ) -> None:
        self.caches = tuple(caches)
        self._blobs = blobs
        self._index = index
        self._by_key = [
            {record.key: record for record in cache.document.records if _usable(cache, record)}
            for cache in self.caches
        ]
        self._pending: dict[str, _Pending] = {}  # diff_id → where to fetch it
        self._lock = threading.Lock()
        self._layer_locks: dict[str, threading.Lock] = {}
        self.fetched: list[str] = []  # the diff_ids brought in, in order (for reports, tests)

    # -- the solver's protocol --------------------------------------------------

    def lookup(self, key: str) -> ImportedHit | None:
        for cache, records in zip(self.caches, self._by_key, strict=True):
            record = records.get(key)
            if record is None:
                continue
            if not record.diff_id or self._blobs.has(record.diff_id):
                self._index_record(key, record)
            else:
                with self._lock:
                    pending = self._pending.setdefault(record.diff_id, _Pending(cache, record))
                    pending.keys.append(key)
            return ImportedHit(record.diff_id, record.size, record.created,
                               "import:" + cache.label)
        return None

    def ensure(self, layers: Iterable[LayerRef]) -> None:
        with self._lock:
            wanted = list(dict.fromkeys(
                layer.diff_id for layer in layers if layer.diff_id in self._pending
            ))
        if len(wanted) == 1:
            self._fetch(wanted[0])
        elif wanted:
            with ThreadPoolExecutor(_PARALLEL_FETCHES, thread_name_prefix="cache-fetch") as pool:
                list(pool.map(self._fetch, wanted))

    # -- for the export -----------------------------------------------------------

    def ensure_keys(self, keys: Iterable[str]) -> None:
        """Fetch the pending layers of these keys' hits (a cache export writes them)."""
        keys = set(keys)
        with self._lock:
            layers = [LayerRef(diff_id, pending.record.size)
                      for diff_id, pending in self._pending.items()
                      if keys.intersection(pending.keys)]
        self.ensure(layers)

    # -- pieces ---------------------------------------------------------------------

    def _fetch(self, diff_id: str) -> None:
        with self._lock:
            lock = self._layer_locks.setdefault(diff_id, threading.Lock())
        with lock:
            with self._lock:
                pending = self._pending.get(diff_id)
            if pending is None:
                return  # another thread brought it in meanwhile
            if not self._blobs.has(diff_id):
                cache, record = pending.cache, pending.record
                blob = cache.layers[record.blob]
                with cache.source.open_blob(blob) as stream:
                    land_layer(stream, blob, diff_id, self._blobs, what=f"cache {cache.label}")
                self.fetched.append(diff_id)
            with self._lock:
                del self._pending[diff_id]
                keys = list(pending.keys)
            for key in keys:
                self._index_record(key, pending.record)

    def _index_record(self, key: str, record: CacheRecord) -> None:
        # Dated when the step first ran (so the image's history is the same as on
        # the machine that ran it), used now (so pruning sees it as fresh).
        self._index.record(CacheEntry(key, record.diff_id, record.size, record.created))
        self._index.touch(key)


def _usable(cache: LoadedCache, record: CacheRecord) -> bool:
    """A record whose layer this cache does not hold cannot be a hit."""
    return not record.diff_id or record.blob in cache.layers


def load_all(
    loaders: Sequence[tuple[str, Callable[[], LoadedCache]]], warn: Callable[[str], None]
) -> list[LoadedCache]:
    """Load each cache; one that cannot be read is a warning (as in buildx), not a failure."""
    caches = []
    for label, load in loaders:
        try:
            caches.append(load())
        except (CacheError, RegistryError, StoreError) as err:
            warn(f"warning: --cache-from {label}: {err}")
        except OSError as err:
            warn(f"warning: --cache-from {label}: {err.strerror or err}")
    return caches
