"""The cache index: cache key → the layer a step produced, in ROOT/cache.db (SQLite).

SQLite in WAL mode, one short transaction per write, so several builds on
one root can read and record at once.  A row is written only after its layer
blob and snapshot are in place, so a row never points at nothing; a reader
still checks (``CacheIndex.lookup`` returns the row, the caller verifies the
blob exists) because a crash or a prune can remove blobs behind its back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from builder.errors import CacheError

__all__ = ["CacheEntry", "CacheIndex"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    cache_key TEXT PRIMARY KEY,
    diff_id   TEXT NOT NULL,      -- "" when the step changed nothing (no layer)
    size      INTEGER NOT NULL,
    created   REAL NOT NULL,
    last_used REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    cache_key: str
    diff_id: str  # "" for an empty step
    size: int
    created: float = 0.0  # when the step first ran (seconds since the epoch)


class CacheIndex:
    """Thread-safe: one connection per thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        try:
            with self._connect() as connection:
                connection.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise CacheError(f"opening the cache index {path}: {err}") from err

    def _connect(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, timeout=60, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    def lookup(self, cache_key: str) -> CacheEntry | None:
        try:
            row = self._connect().execute(
                "SELECT diff_id, size, created FROM steps WHERE cache_key = ?", (cache_key,)
            ).fetchone()
        except sqlite3.Error as err:
            raise CacheError(f"reading the cache index: {err}") from err
        if row is None:
            return None
        return CacheEntry(cache_key, row[0], row[1], row[2])

    def touch(self, cache_key: str) -> None:
        try:
            self._connect().execute(
                "UPDATE steps SET last_used = ? WHERE cache_key = ?", (time.time(), cache_key)
            )
        except sqlite3.Error as err:
            raise CacheError(f"updating the cache index: {err}") from err

    def record(self, entry: CacheEntry) -> None:
        now = entry.created or time.time()
        try:
            self._connect().execute(
                "INSERT OR REPLACE INTO steps (cache_key, diff_id, size, created, last_used)"
                " VALUES (?, ?, ?, ?, ?)",
                (entry.cache_key, entry.diff_id, entry.size, now, now),
            )
        except sqlite3.Error as err:
            raise CacheError(f"writing the cache index: {err}") from err

    def rows(self) -> list[tuple[CacheEntry, float]]:
        """Every row with its last use (seconds since the epoch): for du, prune and verify."""
        try:
            found = self._connect().execute(
                "SELECT cache_key, diff_id, size, created, last_used FROM steps"
            ).fetchall()
        except sqlite3.Error as err:
            raise CacheError(f"reading the cache index: {err}") from err
        return [(CacheEntry(key, diff_id, size, created), last_used)
                for key, diff_id, size, created, last_used in found]

    def forget_many(self, cache_keys: list[str]) -> None:
        """Drop rows in one transaction (prune removes a layer's rows before the layer)."""
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    "DELETE FROM steps WHERE cache_key = ?", [(key,) for key in cache_keys]
                )
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as err:
            raise CacheError(f"writing the cache index: {err}") from err

    def forget(self, cache_key: str) -> None:
        try:
            self._connect().execute("DELETE FROM steps WHERE cache_key = ?", (cache_key,))
        except sqlite3.Error as err:
            raise CacheError(f"writing the cache index: {err}") from err
