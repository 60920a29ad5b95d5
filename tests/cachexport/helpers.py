"""Small layers and caches made in memory, for the cache export tests."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator

from builder.cachexport.document import CacheDocument, CacheRecord
from builder.cachexport.imports import LoadedCache
from builder.image import oci


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class MemorySource:
    """A BlobSource over a dict; counts what was opened."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.opened: list[str] = []

    @contextlib.contextmanager
    def open_blob(self, blob: oci.Descriptor) -> Iterator[io.BytesIO]:
        self.opened.append(blob.digest)
        yield io.BytesIO(self.blobs[blob.digest])


def memory_cache(
    label: str, steps: dict[str, dict[str, bytes] | None], *, created: float = 1000.0
) -> tuple[LoadedCache, MemorySource, dict[str, str]]:
    """A cache with one record per key (None: an empty step); returns it, its source and
    each key's diff_id."""
    records = []
    blobs: dict[str, bytes] = {}
    layers: dict[str, oci.Descriptor] = {}
    diff_ids: dict[str, str] = {}
    for key, files in steps.items():
        if files is None:
            records.append(CacheRecord(key, "", "", 0, created))
            diff_ids[key] = ""
            continue
        tar = layer_tar(files)
        packed = gzip.compress(tar, mtime=0)
        blob = oci.Descriptor(oci.OCI_LAYER_GZIP, sha256(packed), len(packed))
        blobs[blob.digest] = packed
        layers[blob.digest] = blob
        diff_ids[key] = sha256(tar)
        records.append(CacheRecord(key, "", sha256(tar), len(tar), created, blob.digest))
    source = MemorySource(blobs)
    cache = LoadedCache(label, CacheDocument("max", tuple(records)), layers, source)
    return cache, source, diff_ids
