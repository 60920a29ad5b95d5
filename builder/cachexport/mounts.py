"""Cache mounts that travel: RUN --mount=type=cache directories as layers of an exported cache.

The mount directories are cache/mounts.py's (``ROOT/cachemounts/<hex>/``).
``--cache-to ...,cache-mounts=true`` writes each non-empty ``data/`` as a
tar layer keyed by its mount id; ``--cache-from`` restores a mount before
the build, only into a mount that is missing or empty here (a warm local
cache is never overwritten by an older remote one).  A new mount directory
is filled before it lands; an existing empty one is filled beside its
``data/`` under the mount's exclusive lock and renamed into place, so a
step never sees half a mount.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from builder.cachexport.document import MountRecord
from builder.cachexport.imports import LoadedCache
from builder.cachexport.landing import land_layer
from builder.errors import CacheError, StoreError
from builder.plan.graph import LayerRef
from cache.blobs import BlobStore
from cache.mounts import CacheMounts

__all__ = ["mount_layers", "restore_mounts"]


def mount_layers(root: Path, blobs: BlobStore) -> list[tuple[str, LayerRef]]:
    """Each non-empty cache mount of the root as an uncompressed layer in the store.

    A mount is read under its shared lock: steps that share it may still be
    writing (as they may in BuildKit), but a ``sharing=locked`` user is not.
    """
    from builder.snapshot.diff import write_layer

    mounts = CacheMounts(root)
    layers = []
    for entry in mounts.entries():
        with mounts.use(entry.id, "shared") as data:
            if data is None or not data.is_dir():
                continue
            with blobs.writer() as writer:
                stats = write_layer(data, cast(BinaryIO, writer), digest=False)
                if stats.is_empty:
                    continue
                blob = writer.commit()
        layers.append((entry.id, LayerRef(blob.digest, blob.size)))
    return layers


def restore_mounts(
    caches: Sequence[LoadedCache], root: Path, blobs: BlobStore, warn: Callable[[str], None]
) -> list[str]:
    """Fill the missing or empty cache mounts from the first cache holding each; returns
    the ids restored.  A mount that cannot be restored is a warning: the build still runs."""
    restored = []
    seen: set[str] = set()
    for cache in caches:
        for record in cache.document.mounts:
            if record.id in seen:
                continue
            seen.add(record.id)
            try:
                if _restore(cache, record, CacheMounts(root), blobs):
                    restored.append(record.id)
            except (CacheError, StoreError, OSError) as err:
                warn(f"warning: --cache-from {cache.label}: cache mount {record.id!r}: {err}")
    return restored


def _restore(
    cache: LoadedCache, record: MountRecord, mounts: CacheMounts, blobs: BlobStore
) -> bool:
    if _has_content(mounts.path(record.id) / "data"):
        return False  # the local one is warm: keep it
    blob = cache.layers.get(record.blob)
    if blob is None:
        raise CacheError(f"blob {record.blob} is not in the cache")
    kept = blobs.has(record.diff_id)
    if not kept:
        with cache.source.open_blob(blob) as stream:
            land_layer(stream, blob, record.diff_id, blobs, what=f"cache {cache.label}")
    try:
        if not mounts.path(record.id).is_dir():
            # A new mount directory lands whole, already filled.
            mounts.directory(record.id, initialize=lambda data: _unpack(blobs, record, data))
            return True
        with mounts.use(record.id, "try-exclusive") as data:
            if data is None or _has_content(data):
                return False  # a step has it, or filled it meanwhile: theirs wins
            staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data.parent))
            try:
                _unpack(blobs, record, staging / "data")
                data.rmdir()
                os.rename(staging / "data", data)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return True
    finally:
        if not kept:
            blobs.delete(record.diff_id)  # a mount's tar is no layer of any image


def _unpack(blobs: BlobStore, record: MountRecord, data: Path) -> None:
    from builder.snapshot.apply import extract_layer

    with blobs.open(record.diff_id) as layer:
        extract_layer(layer, data)


def _has_content(data: Path) -> bool:
    try:
        return any(data.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False
