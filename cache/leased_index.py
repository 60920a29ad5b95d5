"""The cache index as a leased build sees it (see cache/leases.py)."""

from __future__ import annotations

from pathlib import Path

from cache.index import CacheEntry, CacheIndex
from cache.leases import Lease

__all__ = ["LeasedIndex"]


class LeasedIndex(CacheIndex):
    """The cache index as a leased build sees it: every layer it finds is leased first.

    The lookup and the lease happen under the collector's lock (shared), so
    a prune either ran before (the row is gone: a miss) or sees the lease.
    """

    def __init__(self, path: Path, lease: Lease) -> None:
        super().__init__(path)
        self._lease = lease

    def lookup(self, cache_key: str) -> CacheEntry | None:
        with self._lease.guard():
            entry = super().lookup(cache_key)
            if entry is not None and entry.diff_id:
                self._lease.use("layer", (entry.diff_id,))
        return entry

    def record(self, entry: CacheEntry) -> None:
        with self._lease.guard():
            if entry.diff_id:
                self._lease.use("layer", (entry.diff_id,))
            super().record(entry)
