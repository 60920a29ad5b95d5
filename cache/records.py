"""Build records: every build and each of its steps, in ROOT/cache.db (SQLite).

A record is written once, when the build ends (successfully or not), in one
transaction, so a listing never shows half a build.  It holds what a CI
operator compares between runs: per step the instruction, its Dockerfile
line, the cache key, hit or miss, wall time and layer size.  Secrets never
appear: steps are recorded by their instruction text and key only.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from builder.errors import CacheError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["BuildRecord", "BuildRecords", "StepRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    id        TEXT PRIMARY KEY,
    started   REAL NOT NULL,
    dockerfile TEXT NOT NULL,
    target    TEXT NOT NULL,
    steps     INTEGER NOT NULL,
    cached    INTEGER NOT NULL,
    ran       INTEGER NOT NULL,
    seconds   REAL NOT NULL,
    digest    TEXT NOT NULL,
    outcome   TEXT NOT NULL       -- "ok" or the error's first line
);
CREATE TABLE IF NOT EXISTS build_steps (
    build_id    TEXT NOT NULL REFERENCES builds(id),
    position    INTEGER NOT NULL,
    stage       TEXT NOT NULL,
    instruction TEXT NOT NULL,
    line        INTEGER NOT NULL,
    cache_key   TEXT NOT NULL,    -- "" for config-only steps, which are not keyed
    hit         INTEGER NOT NULL, -- 1 cached, 0 ran, -1 not keyed
    seconds     REAL NOT NULL,
    bytes       INTEGER NOT NULL,
    inputs      TEXT NOT NULL DEFAULT '',  -- JSON: what the key was made from
    source      TEXT NOT NULL DEFAULT '',  -- a hit's origin: "local" or "import:<ref>"
    PRIMARY KEY (build_id, position)
);
"""


@dataclass(frozen=True, slots=True)
class StepRecord:
    stage: str
    instruction: str
    line: int
    cache_key: str
    hit: int
    seconds: float
    bytes: int
    inputs: str = ""  # JSON (builder.explain.step_inputs), "" for unkeyed steps
    # Where a hit came from: "local" (this root's index) or "import:<ref>" (a
    # --cache-from cache); "" for steps that ran and unkeyed ones.
    source: str = ""


@dataclass(frozen=True, slots=True)
class BuildRecord:
    id: str
    started: float
    dockerfile: str
    target: str
    steps: int
    cached: int
    ran: int
    seconds: float
    digest: str
    outcome: str
    step_records: tuple[StepRecord, ...] = ()

    @property
    def hit_rate(self) -> float:
        keyed = self.cached + self.ran
        return self.cached / keyed if keyed else 1.0


def new_build_id() -> str:
    return uuid.uuid4().hex[:12]


class BuildRecords:
    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            with self._connect() as connection:
                connection.executescript(_SCHEMA)
                _add_source_column(connection)
        except sqlite3.Error as err:
            raise CacheError(f"opening build records in {path}: {err}") from err

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, timeout=60)
        connection.execute("PRAGMA journal_mode=WAL")
        return connection

    def save(self, record: BuildRecord) -> None:
        """Write a build and its steps in one transaction."""
        try:
            with self._connect() as connection:
                connection.execute(
                    "INSERT INTO builds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.id, record.started, record.dockerfile, record.target, record.steps,
                     record.cached, record.ran, record.seconds, record.digest, record.outcome),
                )
                connection.executemany(
                    "INSERT INTO build_steps (build_id, position, stage, instruction, line,"
                    " cache_key, hit, seconds, bytes, inputs, source)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (record.id, position, step.stage, step.instruction, step.line,
                         step.cache_key, step.hit, step.seconds, step.bytes, step.inputs,
                         step.source)
                        for position, step in enumerate(record.step_records, start=1)
                    ],
                )
        except sqlite3.Error as err:
            raise CacheError(f"writing the build record: {err}") from err

    def previous(self, record: BuildRecord) -> BuildRecord | None:
        """The most recent earlier build of the same Dockerfile and target, with its steps."""
        try:
            with self._connect() as connection:
                row = connection.execute(
                    "SELECT id FROM builds WHERE dockerfile = ? AND target = ? AND started < ?"
                    " AND id != ? ORDER BY started DESC LIMIT 1",
                    (record.dockerfile, record.target, record.started, record.id),
                ).fetchone()
        except sqlite3.Error as err:
            raise CacheError(f"reading build records: {err}") from err
        return None if row is None else self.get(row[0])

    def recent(self, limit: int = 20) -> list[BuildRecord]:
        try:
            with self._connect() as connection:
                rows = connection.execute(
                    "SELECT * FROM builds ORDER BY started DESC LIMIT ?", (limit,)
                ).fetchall()
        except sqlite3.Error as err:
            raise CacheError(f"reading build records: {err}") from err
        return [_record(row) for row in rows]

    def get(self, build_id: str) -> BuildRecord | None:
        """A build by id or unique id prefix, with its steps."""
        try:
            with self._connect() as connection:
                rows = connection.execute(
                    "SELECT * FROM builds WHERE id LIKE ? || '%'", (build_id,)
                ).fetchall()
                if len(rows) != 1:
                    return None
                steps = connection.execute(
                    "SELECT stage, instruction, line, cache_key, hit, seconds, bytes, inputs,"
                    " source FROM build_steps WHERE build_id = ? ORDER BY position", (rows[0][0],)
                ).fetchall()
        except sqlite3.Error as err:
            raise CacheError(f"reading build records: {err}") from err
        return _record(rows[0], tuple(StepRecord(*row) for row in steps))


def _add_source_column(connection: sqlite3.Connection) -> None:
    """Records written before hits had a source gain the column (empty for old rows)."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(build_steps)")}
    if "source" not in columns:
        try:
            connection.execute(
                "ALTER TABLE build_steps ADD COLUMN source TEXT NOT NULL DEFAULT ''"
            )
        except sqlite3.OperationalError as err:
            if "duplicate column" not in str(err):  # another process added it first
                raise


def _record(row: tuple[Any, ...], steps: tuple[StepRecord, ...] = ()) -> BuildRecord:
    """A builds row (in schema order) as a BuildRecord."""
    id_, started, dockerfile, target, count, cached, ran, seconds, digest, outcome = row
    return BuildRecord(
        id=id_, started=started, dockerfile=dockerfile, target=target, steps=count,
        cached=cached, ran=ran, seconds=seconds, digest=digest, outcome=outcome,
        step_records=steps,
    )
