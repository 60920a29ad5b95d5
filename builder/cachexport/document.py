"""The exported cache's own format: cache key → layer, as JSON in a config blob.

A cache export is an OCI image manifest whose config blob (media type
CONFIG_MEDIA_TYPE) is a CacheDocument and whose layers are the cached
layers, gzip-compressed.  Every registry stores such a manifest, as it
stores any OCI artifact.  The inline cache (``--cache-to type=inline``) is
the same document under INLINE_KEY in the image config itself; its records
name no blob, because the image's own layers are the cached ones.

Only the step results travel: the settings a step leaves behind (ENV,
WORKDIR, USER, ...) are worked out by the planner from the Dockerfile, so a
cache never has to carry them, and a record can only be used by a step
whose key (which covers those settings) matches.

Everything read here comes from outside the machine: every field is type-
and digest-checked, and a malformed document is a CacheError, never a
KeyError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.errors import CacheError, StoreError
from builder.image import oci
from cache.blobs import validate_digest

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "FORMAT",
    "INLINE_KEY",
    "MAX_DOCUMENT_SIZE",
    "CacheDocument",
    "CacheRecord",
    "MountRecord",
]

CONFIG_MEDIA_TYPE = "application/vnd.pybuild.cache.config.v1+json"
FORMAT = "pybuild.cache.v1"
INLINE_KEY = "pybuild.cache.v1"  # the image config key of an inline cache
MAX_DOCUMENT_SIZE = 64 << 20  # a generous cap on a blob read whole into memory


@dataclass(frozen=True, slots=True)
class CacheRecord:
    """One step's result: its key, the key it chains from, its layer and when it was made.

    ``diff_id`` is "" for a step that changed nothing; ``size`` is the
    uncompressed layer's; ``blob`` is the digest of the layer as this cache
    holds it ("" when empty, or in an inline cache before it is matched to
    the image's layers).  ``created_by`` is the instruction, for people.
    """

    key: str
    parent: str
    diff_id: str
    size: int
    created: float
    blob: str = ""
    created_by: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "parent": self.parent, "diff_id": self.diff_id,
                               "size": self.size, "created": self.created}
        if self.blob:
            out["blob"] = self.blob
        if self.created_by:
            out["created_by"] = self.created_by
        return out

    @classmethod
    def from_json(cls, value: object) -> CacheRecord:
        obj = _object(value, "record")
        diff_id = _text(obj, "diff_id")
        blob = _text(obj, "blob")
        for digest in (diff_id, blob):
            if digest:
                _digest(digest)
        size, created = obj.get("size", 0), obj.get("created", 0.0)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise CacheError("cache record: size is not a whole number")
        if isinstance(created, bool) or not isinstance(created, int | float):
            raise CacheError("cache record: created is not a number")
        key = _text(obj, "key")
        if not key:
            raise CacheError("cache record: key is missing")
        return cls(key=key, parent=_text(obj, "parent"), diff_id=diff_id, size=size,
                   created=float(created), blob=blob, created_by=_text(obj, "created_by"))


@dataclass(frozen=True, slots=True)
class MountRecord:
    """A cache mount's contents (RUN --mount=type=cache), as one layer keyed by mount id."""

    id: str
    diff_id: str
    blob: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "diff_id": self.diff_id, "blob": self.blob}

    @classmethod
    def from_json(cls, value: object) -> MountRecord:
        obj = _object(value, "mount")
        mount_id = _text(obj, "id")
        if not mount_id:
            raise CacheError("cache mount record: id is missing")
        return cls(id=mount_id, diff_id=_digest(_text(obj, "diff_id")),
                   blob=_digest(_text(obj, "blob")))


@dataclass(frozen=True, slots=True)
class CacheDocument:
    """A whole exported cache: how it was made (min or max) and its records."""

    mode: str
    records: tuple[CacheRecord, ...] = ()
    mounts: tuple[MountRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "mode": self.mode,
            "records": [record.to_json() for record in self.records],
        }
        if self.mounts:
            out["mounts"] = [mount.to_json() for mount in self.mounts]
        return out

    def to_bytes(self) -> bytes:
        return oci.canonical_json(self.to_json())

    @classmethod
    def from_json(cls, value: object) -> CacheDocument:
        obj = _object(value, "cache document")
        if obj.get("format") != FORMAT:
            raise CacheError(f"not a {FORMAT} cache (format {obj.get('format')!r})")
        records, mounts = obj.get("records", []), obj.get("mounts", [])
        if not isinstance(records, list) or not isinstance(mounts, list):
            raise CacheError("cache document: records and mounts must be lists")
        return cls(
            mode=_text(obj, "mode") or "min",
            records=tuple(CacheRecord.from_json(item) for item in records),
            mounts=tuple(MountRecord.from_json(item) for item in mounts),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheDocument:
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, ValueError) as err:
            raise CacheError(f"cache document is not JSON: {err}") from err
        return cls.from_json(value)


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CacheError(f"{what}: expected a JSON object")
    return value


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise CacheError(f"cache document: {key} is not a string")
    return value


def _digest(text: str) -> str:
    try:
        return validate_digest(text)
    except StoreError as err:
        raise CacheError(f"cache document: {err}") from err
