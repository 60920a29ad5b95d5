"""RUN --mount values → RunMount, read as BuildKit's Dockerfile frontend reads them.

A value is one CSV record of ``key=value`` fields (``ro``, ``rw`` and
``required`` may stand alone).  Keys are case-insensitive; every value is
expanded with the step's ARGs and ENV after the split, field by field, except
``from``, which may not hold a variable at all (BuildKit: "define alias stage
instead").  Then BuildKit's defaults are filled in, so a RunMount is final:

- bind: read-only unless rw; from a stage, an image or (no ``from``) the context.
- cache: read-write; id defaults to the target as written (cleaned); sharing
  shared; ``mode``/``uid``/``gid`` (0755, 0, 0) shape a new cache's root.
- tmpfs: ``size`` in Docker's RAM units (64m, 1g: powers of 1024).
- secret: id from ``id``, else ``source``, else the target's base name; a file
  at the target (default /run/secrets/ID, mode 0400) unless ``env`` names a
  variable and no target is given.
- ssh: id "default", target /run/buildkit/ssh_agent.N (N counts ssh mounts),
  mode 0600.

A relative target is taken from the working directory; "/" is refused.
"""

from __future__ import annotations

import csv
import io
import math
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from builder.errors import BadMount
from builder.frontend import suggest

__all__ = ["MountType", "RunMount", "key_fields", "parse_mount", "plan_mounts"]

MountType = Literal["bind", "cache", "tmpfs", "secret", "ssh"]
_TYPES: tuple[MountType, ...] = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING = ("shared", "private", "locked")
_KEYS = ("type", "from", "source", "target", "readonly", "id", "sharing", "required", "size",
         "mode", "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env")
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_RAM = re.compile(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?\Z")
_UINT32_MAX = 2**32 - 1

Expand = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class RunMount:
    """One RUN --mount, fields expanded and defaults applied.

    ``target`` is absolute (None only for a secret read into ``env`` alone);
    ``source`` is the path inside what ``from_name`` names ("" for its root);
    ``mode``/``uid``/``gid`` are None where the spec left them out.
    """

    type: MountType
    target: str | None
    source: str = ""
    from_name: str = ""
    readonly: bool = False
    id: str = ""
    sharing: str = "shared"
    required: bool = False
    size: int | None = None
    env: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def key_fields(mount: RunMount) -> tuple[str, ...]:
    """The mount's canonical text for a cache key: every field, never a secret's value."""
    return tuple(
        f"{name}={'' if value is None else value}"
        for name, value in (
            ("type", mount.type), ("target", mount.target), ("source", mount.source),
            ("from", mount.from_name), ("readonly", mount.readonly), ("id", mount.id),
            ("sharing", mount.sharing), ("required", mount.required), ("size", mount.size),
            ("env", mount.env), ("mode", mount.mode), ("uid", mount.uid), ("gid", mount.gid),
        )
    )


def plan_mounts(values: tuple[str, ...], expand: Expand, workdir: str) -> tuple[RunMount, ...]:
    """Every --mount of one RUN, in order; BadMount (without a location) when one is wrong."""
    mounts: list[RunMount] = []
    ssh_count = 0
    for value in values:
        mount = parse_mount(value, expand, workdir, ssh_index=ssh_count)
        if mount.type == "ssh":
            ssh_count += 1
        mounts.append(mount)
    return tuple(mounts)


@dataclass(slots=True)
class _Fields:
    """What a --mount value said, before defaults."""

    type: MountType = "bind"
    from_name: str = ""
    source: str = ""
    target: str = ""
    readonly: bool | None = None
    id: str = ""
    sharing: str = ""
    required: bool = False
    size: int | None = None
    env: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def parse_mount(value: str, expand: Expand, workdir: str, *, ssh_index: int = 0) -> RunMount:
    """One --mount value; ``ssh_index`` numbers the default target of an ssh mount."""
    fields = _Fields()
    for field in _csv_fields(value):
        key, has_value, raw = field.partition("=")
        key = key.lower()
        if not has_value:
            _bare_field(fields, key, field)
            continue
        if key == "from":
            dollar = raw.find("$")
            if dollar != -1 and dollar != len(raw) - 1:
                raise BadMount("'from' doesn't support variable expansion, define alias stage "
                               "instead")
        _keyed_field(fields, key, expand(raw), field)
    return _finish(fields, workdir, ssh_index)


def _csv_fields(value: str) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(value), strict=True))
    except csv.Error as err:
        raise BadMount(f"failed to parse csv mounts: {err}") from err
    return rows[0] if rows and rows[0] else [""]


def _bare_field(fields: _Fields, key: str, field: str) -> None:
    if key in ("readonly", "ro"):
        fields.readonly = True
    elif key in ("readwrite", "rw"):
        fields.readonly = False
    elif key == "required":
        if fields.type not in ("secret", "ssh"):
            raise BadMount(f"unexpected key '{key}' for mount type '{fields.type}'")
        fields.required = True
    else:
        raise BadMount(f"invalid field '{field}' must be a key=value pair")


def _keyed_field(fields: _Fields, key: str, value: str, field: str) -> None:
    if key == "type":
        lowered = value.lower()
        if lowered not in _TYPES:
            raise BadMount(f'unsupported mount type "{value}"',
                           hint=_did_you_mean(value, _TYPES))
        fields.type = next(kind for kind in _TYPES if kind == lowered)
    elif key == "from":
        fields.from_name = value
    elif key in ("source", "src"):
        fields.source = value
    elif key in ("target", "dst", "destination"):
        fields.target = value
    elif key in ("readonly", "ro"):
        fields.readonly = _go_bool(key, value)
    elif key in ("readwrite", "rw"):
        fields.readonly = not _go_bool(key, value)
    elif key == "required":
        if fields.type not in ("secret", "ssh"):
            raise BadMount(f"unexpected key '{key}' for mount type '{fields.type}'")
        fields.required = _go_bool(key, value)
    elif key == "size":
        if fields.type != "tmpfs":
            raise BadMount(f"unexpected key '{key}' for mount type '{fields.type}'")
        fields.size = _ram_in_bytes(key, value)
    elif key == "id":
        fields.id = value
    elif key == "sharing":
        lowered = value.lower()
        if lowered not in _SHARING:
            raise BadMount(f'unsupported sharing value "{value}"',
                           hint=_did_you_mean(value, _SHARING))
        fields.sharing = lowered
    elif key == "mode":
        fields.mode = _go_uint(value, 8, "mode")
    elif key == "uid":
        fields.uid = _go_uint(value, 10, "uid")
    elif key == "gid":
        fields.gid = _go_uint(value, 10, "gid")
    elif key == "env":
        fields.env = value
    else:
        raise BadMount(f"unexpected key '{key}' in '{field}'", hint=_did_you_mean(key, _KEYS))


def _finish(fields: _Fields, workdir: str, ssh_index: int) -> RunMount:
    kind = fields.type
    if kind not in ("secret", "ssh", "cache"):
        for name in ("mode", "uid", "gid"):
            if getattr(fields, name) is not None:
                raise BadMount(f'{name} not allowed for "{kind}" type mounts')
    readonly = fields.readonly
    if readonly is None:
        readonly = kind not in ("cache", "tmpfs")
    if kind == "secret":
        if fields.from_name:
            raise BadMount("secret mount should not have a from")
        if fields.sharing:
            raise BadMount("secret mount should not define sharing")
        if not (fields.source or fields.target or fields.id):
            raise BadMount("invalid secret mount. one of source, target required")
        if fields.source and fields.id:
            raise BadMount("both source and id can't be set")
    if fields.sharing and kind != "cache":
        raise BadMount(f"invalid cache sharing set for {kind} mount")
    if kind == "secret":
        return _secret(fields, workdir)
    if kind == "ssh":
        if fields.source:
            raise BadMount("ssh does not support source")
        target = (_absolute(fields.target, workdir) if fields.target
                  else f"/run/buildkit/ssh_agent.{ssh_index}")
        return RunMount("ssh", target, id=fields.id or "default", readonly=readonly,
                        required=fields.required, mode=fields.mode, uid=fields.uid,
                        gid=fields.gid)
    target = _absolute(fields.target, workdir)
    if kind == "cache":
        return RunMount("cache", target, source=fields.source, from_name=fields.from_name,
                        readonly=readonly, id=fields.id or _go_clean(fields.target),
                        sharing=fields.sharing or "shared", mode=fields.mode, uid=fields.uid,
                        gid=fields.gid)
    if kind == "tmpfs":
        return RunMount("tmpfs", target, readonly=readonly, size=fields.size)
    return RunMount("bind", target, source=fields.source, from_name=fields.from_name,
                    readonly=readonly)


def _secret(fields: _Fields, workdir: str) -> RunMount:
    secret_id = fields.source or fields.id or posixpath.basename(fields.target)
    target: str | None = None
    if fields.target:
        target = _absolute(fields.target, workdir)
    elif fields.env is None:
        target = "/run/secrets/" + posixpath.basename(secret_id)
    env = fields.env
    if env == "":
        env = secret_id  # env= with no name: the variable is named after the secret
    return RunMount("secret", target, id=secret_id, readonly=True, required=fields.required,
                    env=env, mode=fields.mode, uid=fields.uid, gid=fields.gid)


def _absolute(target: str, workdir: str) -> str:
    """BuildKit's rule: a relative target lives under the working directory; "/" is refused."""
    joined = target if _go_clean(target).startswith("/") else posixpath.join("/", workdir, target)
    cleaned = _go_clean(joined)
    if cleaned == "/":
        hint = "give the mount a target=" if not target else ""
        raise BadMount(f'invalid mount target "{cleaned}"', hint=hint)
    return cleaned


def _go_clean(path: str) -> str:
    """Go's path.Clean ("" is ".")."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _go_bool(key: str, value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise BadMount(f"invalid value for {key}: {value}")


def _go_uint(value: str, base: int, name: str) -> int:
    digits = "01234567" if base == 8 else "0123456789"
    if not value or any(char not in digits for char in value) or int(value, base) > _UINT32_MAX:
        raise BadMount(f"invalid value {value} for {name}")
    return int(value, base)


def _ram_in_bytes(key: str, value: str) -> int:
    """docker/go-units RAMInBytes: a number, an optional k/m/g/t/p (powers of 1024), b."""
    match = _RAM.match(value)
    try:
        if match is None:
            raise ValueError(value)
        number = float(match.group(1))
    except ValueError:
        raise BadMount(f"invalid value for {key}: {value}") from None
    unit = (match.group(2) or "").lower()
    size = number * (1024 ** (" kmgtp".index(unit) if unit else 0))
    if not math.isfinite(size) or size >= 2**63:
        raise BadMount(f"invalid value for {key}: {value}")
    return int(size)


def _did_you_mean(word: str, options: tuple[str, ...]) -> str:
    best = suggest.closest(word, options, case_sensitive=False)
    return f"did you mean {best}?" if best else ""
