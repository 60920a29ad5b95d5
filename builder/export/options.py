"""buildx's ``-o/--output`` syntax → a frozen OutputSpec, with errors naming the bad key.

Like buildx (util/buildflags/export.go) the value is one CSV record, so a
value holding a comma can be quoted: ``type=local,"dest=a,b"``. A value with
no ``=`` at all is the shorthand for ``type=local,dest=VALUE``, and ``-``
alone means ``type=tar,dest=-`` (the root tree as a tar on stdout).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from builder.errors import UsageError

__all__ = [
    "ALGORITHMS", "OUTPUT_TYPES", "Compression", "OutputSpec", "parse_bool", "parse_output",
    "split_fields",
]

OUTPUT_TYPES = ("oci", "docker", "local", "tar")
ALGORITHMS = ("gzip", "zstd", "uncompressed")
# What buildkit uses when compression-level is not given: gzip's
# DefaultCompression (which is level 6) and zstd's default level.
_DEFAULT_LEVELS = {"gzip": 6, "zstd": 3, "uncompressed": 0}
_LEVEL_RANGES = {"gzip": (0, 9), "zstd": (1, 22)}
_IMAGE_KEYS = frozenset(
    {
        "type",
        "dest",
        "name",
        "compression",
        "compression-level",
        "force-compression",
        "oci-mediatypes",
    }
)
_TREE_KEYS = frozenset({"type", "dest"})
_UNSUPPORTED_TYPES = ("cacheonly",)
# type=registry (and type=image,push=true) pushes the image; the CLI does it,
# with the layers compressed as asked.
_PUSH_KEYS = frozenset(
    {"type", "name", "push", "compression", "compression-level", "force-compression",
     "oci-mediatypes"}
)


@dataclass(frozen=True, slots=True)
class Compression:
    """How image layers are written: algorithm, level, and whether compressed layers are redone.

    Without ``force``, a layer that is already compressed (with any
    algorithm) is written as it is, as buildkit does; layers in pybuild's
    store are uncompressed, so ``force`` only matters for foreign layers.
    """

    algorithm: str = "gzip"
    level: int = 6
    force: bool = False

    @classmethod
    def default(cls, algorithm: str) -> Compression:
        return cls(algorithm=algorithm, level=_DEFAULT_LEVELS[algorithm])


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One parsed ``--output``: where and in which format to write the image.

    ``oci_media_types`` is what the manifest uses (True for type=oci, False
    for type=docker unless oci-mediatypes=true); zstd forces OCI media types,
    since docker's have no zstd layer type. ``names`` come from ``name=``
    (several separated by commas, quoted in the CSV) and are added to the tags.
    """

    type: str
    dest: str
    compression: Compression = Compression()
    oci_media_types: bool = True
    names: tuple[str, ...] = ()


def parse_output(text: str, *, default_compression: str = "gzip") -> OutputSpec:
    """Parse one ``-o`` value; raises UsageError naming the offending key or value."""
    if text == "-":
        return OutputSpec(type="tar", dest="-")
    if text and "=" not in text:
        return OutputSpec(type="local", dest=text)
    fields = split_fields("--output", text)
    kind = fields.pop("type", "")
    if not kind:
        raise UsageError(f"--output {text!r}: type is required (oci, docker, local or tar)")
    if kind in _UNSUPPORTED_TYPES:
        raise UsageError(f"--output type={kind}: not supported (use oci, docker, local or tar)")
    if kind in ("registry", "image"):
        for key in fields:
            if key not in _PUSH_KEYS:
                raise UsageError(f"--output type={kind}: unknown key {key!r}")
        push = kind == "registry" or parse_bool("--output", fields, "push")
        names = tuple(name.strip() for name in fields.get("name", "").split(",") if name.strip())
        compression = _parse_compression(fields, default_compression)
        # BuildKit's image exporter writes OCI media types unless told otherwise.
        oci_types = parse_bool("--output", fields, "oci-mediatypes", True)
        return OutputSpec(
            type="registry" if push else "image",
            dest="",
            compression=compression,
            oci_media_types=oci_types or compression.algorithm == "zstd",
            names=names,
        )
    if kind not in OUTPUT_TYPES:
        raise UsageError(f"--output type={kind}: unknown type (use oci, docker, local or tar)")
    allowed = _IMAGE_KEYS if kind in ("oci", "docker") else _TREE_KEYS
    for key in fields:
        if key not in allowed:
            raise UsageError(f"--output type={kind}: unknown key {key!r}")
    dest = fields.get("dest", "")
    if not dest:
        raise UsageError(f"--output type={kind}: dest is required")
    if kind in ("local", "tar"):
        return OutputSpec(type=kind, dest=dest)
    compression = _parse_compression(fields, default_compression)
    oci_types = parse_bool("--output", fields, "oci-mediatypes", kind == "oci")
    if compression.algorithm == "zstd":
        oci_types = True
    names = tuple(name.strip() for name in fields.get("name", "").split(",") if name.strip())
    return OutputSpec(
        type=kind, dest=dest, compression=compression, oci_media_types=oci_types, names=names
    )


def split_fields(flag: str, text: str) -> dict[str, str]:
    """buildx's CSV attribute list (``type=oci,dest=out.tar``) as a dict; ``flag`` names
    the option in errors."""
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


def _parse_compression(fields: dict[str, str], default_algorithm: str) -> Compression:
    algorithm = fields.get("compression", default_algorithm).lower()
    if algorithm not in ALGORITHMS:
        raise UsageError(
            f"--output compression={algorithm}: unknown algorithm (use gzip, zstd or uncompressed)"
        )
    level = Compression.default(algorithm).level
    if "compression-level" in fields:
        raw = fields["compression-level"]
        try:
            level = int(raw)
        except ValueError:
            raise UsageError(f"--output compression-level={raw}: not an integer") from None
        if algorithm == "uncompressed":
            raise UsageError("--output compression-level: means nothing with uncompressed")
        low, high = _LEVEL_RANGES[algorithm]
        if not low <= level <= high:
            raise UsageError(
                f"--output compression-level={level}: {algorithm} takes {low} to {high}"
            )
    force = parse_bool("--output", fields, "force-compression")
    return Compression(algorithm=algorithm, level=level, force=force)


def parse_bool(flag: str, fields: dict[str, str], key: str, default: bool = False) -> bool:
    """Go's strconv.ParseBool, which buildkit uses for its boolean attributes."""
    if key not in fields:
        return default
    raw = fields[key]
    if raw in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if raw in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise UsageError(f"{flag} {key}={raw}: not a boolean")
