"""The exported records: they round-trip, and anything malformed is a CacheError."""

from __future__ import annotations

import json

import pytest

from builder.cachexport.document import CacheDocument, CacheRecord, MountRecord
from builder.errors import CacheError

DIGEST = "sha256:" + "a" * 64
BLOB = "sha256:" + "b" * 64


def test_round_trip() -> None:
    document = CacheDocument(
        mode="max",
        records=(CacheRecord("k1", "p", DIGEST, 10, 1.5, BLOB, "RUN x"),
                 CacheRecord("k2", "k1", "", 0, 2.0)),
        mounts=(MountRecord("cache-id", DIGEST, BLOB),),
    )
    assert CacheDocument.from_bytes(document.to_bytes()) == document


@pytest.mark.parametrize("change", [
    {"format": "other.v9"},
    {"records": {"not": "a list"}},
    {"records": [{"key": "k", "diff_id": "sha256:../../etc"}]},
    {"records": [{"key": "k", "blob": "md5:00"}]},
    {"records": [{"key": "k", "size": -1}]},
    {"records": [{"key": "k", "size": True}]},
    {"records": [{"key": "k", "created": "yesterday"}]},
    {"records": [{"diff_id": ""}]},
    {"records": [{"key": 5}]},
    {"mounts": [{"id": "", "diff_id": DIGEST, "blob": BLOB}]},
    {"mounts": [{"id": "m", "diff_id": "", "blob": BLOB}]},
])
def test_malformed_documents_are_refused(change: dict[str, object]) -> None:
    document = {"format": "pybuild.cache.v1", "mode": "min", "records": [], **change}
    with pytest.raises(CacheError):
        CacheDocument.from_bytes(json.dumps(document).encode())


def test_not_json() -> None:
    with pytest.raises(CacheError, match="not JSON"):
        CacheDocument.from_bytes(b"\xff{")
