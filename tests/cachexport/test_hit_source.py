"""Build records say where a hit came from; cache flags keep the journal out of the way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from builder.cachexport.options import parse_cache_spec
from builder.request import BuildRequest, journal_key
from cache.records import BuildRecord, BuildRecords, StepRecord

_OLD_SCHEMA = """
CREATE TABLE builds (id TEXT PRIMARY KEY, started REAL NOT NULL, dockerfile TEXT NOT NULL,
    target TEXT NOT NULL, steps INTEGER NOT NULL, cached INTEGER NOT NULL,
    ran INTEGER NOT NULL, seconds REAL NOT NULL, digest TEXT NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE build_steps (build_id TEXT NOT NULL, position INTEGER NOT NULL,
    stage TEXT NOT NULL, instruction TEXT NOT NULL, line INTEGER NOT NULL,
    cache_key TEXT NOT NULL, hit INTEGER NOT NULL, seconds REAL NOT NULL,
    bytes INTEGER NOT NULL, inputs TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (build_id, position));
INSERT INTO builds VALUES ('old', 1.0, 'Dockerfile', '', 1, 1, 0, 0.1, '', 'ok');
INSERT INTO build_steps VALUES ('old', 1, '0', 'RUN x', 2, 'k', 1, 0.0, 0, '');
"""


def _record(build_id: str, *steps: StepRecord) -> BuildRecord:
    return BuildRecord(id=build_id, started=2.0, dockerfile="Dockerfile", target="", steps=2,
                       cached=2, ran=0, seconds=0.1, digest="", outcome="ok",
                       step_records=steps)


def test_sources_are_recorded_and_old_records_gain_the_column(tmp_path: Path) -> None:
    database = tmp_path / "cache.db"
    with sqlite3.connect(database) as connection:
        connection.executescript(_OLD_SCHEMA)
    records = BuildRecords(database)
    old = records.get("old")
    assert old is not None and old.step_records[0].source == ""
    records.save(_record(
        "new",
        StepRecord("0", "RUN a", 2, "k1", 1, 0.0, 0, source="local"),
        StepRecord("0", "RUN b", 3, "k2", 1, 0.0, 0, source="import:/tmp/cache"),
    ))
    again = BuildRecords(database).get("new")  # reopening migrates nothing twice
    assert again is not None
    assert [step.source for step in again.step_records] == ["local", "import:/tmp/cache"]


def test_cache_flags_turn_the_journal_off(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')
    plain = BuildRequest(context=tmp_path, dockerfile=b"FROM scratch\n",
                         dockerfile_name="Dockerfile", dockerfile_path=None, root=tmp_path)
    assert journal_key(plain) is not None
    for field, text, direction in (("cache_from", "type=local,src=/c", "from"),
                                   ("cache_to", "type=inline", "to")):
        spec = parse_cache_spec(text, direction=direction)
        request = BuildRequest(context=tmp_path, dockerfile=b"FROM scratch\n",
                               dockerfile_name="Dockerfile", dockerfile_path=None,
                               root=tmp_path, **{field: (spec,)})  # type: ignore[arg-type]
        assert journal_key(request) is None
