"""buildx's ``--cache-to`` / ``--cache-from`` syntax → a frozen CacheSpec.

Like buildx (util/buildflags/cache.go) a value is one CSV record of
key=value fields; a value with no ``=`` at all is a registry reference
(``--cache-from 127.0.0.1:5000/app:cache`` is ``type=registry,ref=...``).
Errors name the flag and the offending key, so a typo never turns into a
silently ignored cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.errors import UsageError
from builder.export.options import parse_bool, split_fields

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
    fields = split_fields(flag, text)
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
        cache_mounts=parse_bool(flag, fields, "cache-mounts"),
        ignore_error=parse_bool(flag, fields, "ignore-error"),
    )


def _types_for(direction: str) -> str:
    return ", ".join(kind for (way, kind) in _KEYS if way == direction)
