"""buildx's ``--cache-to`` / ``--cache-from`` syntax → a frozen CacheSpec.

Like buildx (util/buildflags/cache.go) a value is one CSV record of
key=value fields; a value with no ``=`` at all is a registry reference
(``--cache-from 127.0.0.1:5000/app:cache`` is ``type=registry,ref=...``).
Errors name the flag and the offending key, so a typo never turns into a
silently ignored cache.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from builder.errors import UsageError

__all__ = ["CACHE_TYPES", "CacheSpec", "parse_cache_spec"]

# type=image reads the inline cache of an image in the local store: what
# classic ``docker build --cache-from NAME`` did, for images brought in by
# ``pybuild load`` or ``pybuild pull``.
CACHE_TYPES = ("local", "registry", "inline", "image")
_MODES = ("min", "max")
_KEYS = {
    ("to", "local"): frozenset({"type", "dest", "mode", "cache-mounts", "ignore-error"}),
    ("to", "registry"): frozenset({"type", "ref", "mode", "cache-mounts", "ignore-error"}),
    ("to", "inline"): frozenset({"type", "mode"}),
    ("from", "local"): frozenset({"type", "src"}),
    ("from", "registry"): frozenset({"type", "ref"}),
    ("from", "image"): frozenset({"type", "ref"}),
}


@dataclass(frozen=True, slots=True)
class CacheSpec:
    """One parsed cache flag.

    ``location`` is the directory (type=local: dest or src), the registry
    reference (type=registry) or the local image name (type=image); empty
    for type=inline.  ``mode`` and ``cache_mounts`` only matter for export;
    ``ignore_error`` makes a failed export a warning (buildx's key).
    """

    type: str
    location: str = ""
    mode: str = "min"
    cache_mounts: bool = False
    ignore_error: bool = False

    @property
    def label(self) -> str:
        """How build records and messages name this cache: ``import:<label>``."""
        return self.location or self.type


def parse_cache_spec(text: str, *, direction: str) -> CacheSpec:
    """Parse one ``--cache-to`` (direction "to") or ``--cache-from`` ("from") value."""
    flag = f"--cache-{direction}"
    if not text.strip():
        raise UsageError(f"{flag}: empty value")
    if "=" not in text:
        return CacheSpec(type="registry", location=text.strip())
    fields = _split_fields(flag, text)
    kind = fields.get("type", "")
    if not kind:
        raise UsageError(f"{flag} {text!r}: type is required (local, registry or inline)")
    allowed = _KEYS.get((direction, kind))
    if allowed is None:
        raise UsageError(f"{flag} type={kind}: not supported here "
                         f"(use {_types_for(direction)})")
    for key in fields:
        if key not in allowed:
            raise UsageError(f"{flag} type={kind}: unknown key {key!r}")
    mode = fields.get("mode", "min")
    if mode not in _MODES:
        raise UsageError(f"{flag} mode={mode}: use min or max")
    if kind == "inline" and mode != "min":
        raise UsageError(f"{flag} type=inline: only mode=min (the image holds its own layers)")
    location_key = {"local": "dest" if direction == "to" else "src"}.get(kind, "ref")
    location = fields.get(location_key, "") if kind != "inline" else ""
    if kind != "inline" and not location:
        raise UsageError(f"{flag} type={kind}: {location_key} is required")
    return CacheSpec(
        type=kind,
        location=location,
        mode=mode,
        cache_mounts=_parse_bool(flag, fields, "cache-mounts"),
        ignore_error=_parse_bool(flag, fields, "ignore-error"),
    )


def _types_for(direction: str) -> str:
    return ", ".join(kind for (way, kind) in _KEYS if way == direction)


def _split_fields(flag: str, text: str) -> dict[str, str]:
    try:
        records = list(csv.reader([text], strict=True))
    except csv.Error as err:
        raise UsageError(f"{flag} {text!r}: {err}") from err
    fields: dict[str, str] = {}
    for field in records[0] if records else ():
        key, equals, value = field.partition("=")
        key = key.strip().lower()
        if not equals:
            raise UsageError(f"{flag} {text!r}: {field!r} is not key=value")
        if key in fields:
            raise UsageError(f"{flag} {text!r}: key {key!r} given twice")
        fields[key] = value.strip()
    return fields


def _parse_bool(flag: str, fields: dict[str, str], key: str) -> bool:
    """Go's strconv.ParseBool, as buildx reads its boolean attributes."""
    raw = fields.get(key)
    if raw is None:
        return False
    if raw in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if raw in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise UsageError(f"{flag} {key}={raw}: not a boolean")
