"""USER "name", "uid", "name:group", "uid:gid" -> UserSpec, read from the step's own root.

The rules are runc's (libcontainer/user GetExecUser), which BuildKit uses:

- "uid:gid" with both numeric (or "root") is taken as is, without reading
  any file, and gets no supplementary groups (BuildKit's fast path).
- A user name must have a passwd entry ("unable to find user app: no matching
  entries in passwd file"); a numeric uid without one runs with gid 0.
- Without an explicit group, the supplementary groups are those /etc/group
  lists the user in. The primary gid is not added (buildah adds it:
  BUILDAH-QUIRKS item 11). An explicit group replaces the primary gid and
  brings no supplementary groups.

/etc/passwd and /etc/group are read through ``paths``, so a symlink to
/etc/shadow means the root's own /etc/shadow, never the host's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from builder.errors import SandboxError
from builder.sandbox import paths
from builder.sandbox.spec import UserSpec

MAX_ID = 2**31 - 1  # runc's range check: ids are non-negative int32
_FILE_LIMIT = 64 << 20  # a passwd or group file larger than this is not one


def resolve_user(rootfs: Path, user: str) -> UserSpec:
    """Resolve a Dockerfile USER value against ``rootfs``'s /etc/passwd and /etc/group."""
    name, has_group, group = user.partition(":")
    if has_group:
        fast = _numeric_pair(name, group)
        if fast is not None:
            return UserSpec(uid=fast[0], gid=fast[1])
    elif not name:
        return UserSpec()

    uid_arg = _parse_id(name)
    gid_arg = _parse_id(group) if has_group else None
    passwd = _read(rootfs, "/etc/passwd")

    uid, gid, matched_name = 0, 0, ""
    entry = _find(passwd, lambda fields: _field_id(fields[2]) == uid_arg if uid_arg is not None
                  else fields[0] == name)
    if entry is not None:
        matched_name, uid, gid = entry[0], _field_id(entry[2]), _field_id(entry[3])
    elif name:
        if uid_arg is None:
            raise SandboxError(f"unable to find user {name}: no matching entries in passwd file")
        uid = uid_arg

    if not has_group:
        if not matched_name:
            return UserSpec(uid=uid, gid=gid)
        groups = _read(rootfs, "/etc/group")
        member_of = tuple(
            _field_id(fields[2])
            for fields in _records(groups)
            if len(fields) > 3 and matched_name in fields[3].split(",")
        )
        return UserSpec(uid=uid, gid=gid, additional_gids=member_of)

    groups = _read(rootfs, "/etc/group")
    found = _find(groups, lambda fields: (_field_id(fields[2]) == gid_arg if gid_arg is not None
                                          else fields[0] == group))
    if found is not None:
        gid = _field_id(found[2])
    elif gid_arg is not None:
        gid = gid_arg
    else:
        raise SandboxError(f"unable to find group {group}: no matching entries in group file")
    return UserSpec(uid=uid, gid=gid)


def home_directory(rootfs: Path, uid: int) -> str:
    """The home of ``uid`` in the root's /etc/passwd, "/" without an entry.

    runc sets HOME to this when the process environment has none (so
    ``RUN echo $HOME`` prints /root under BuildKit). run() passes the
    environment exactly as given, so the run op adds HOME from here.
    """
    entry = _find(_read(rootfs, "/etc/passwd"), lambda fields: _field_id(fields[2]) == uid)
    if entry is None or len(entry) < 6 or not entry[5]:
        return "/"
    return entry[5]


def _numeric_pair(user: str, group: str) -> tuple[int, int] | None:
    uid = 0 if user == "root" else _parse_id(user)
    gid = 0 if group == "root" else _parse_id(group)
    if uid is None or gid is None:
        return None
    return uid, gid


def _parse_id(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise SandboxError(f"id {text} is out of range (0 to {MAX_ID})")
    return value


def _field_id(text: str) -> int:
    """A numeric field of passwd/group; runc reads a malformed one as 0."""
    try:
        return int(text)
    except ValueError:
        return 0


def _read(rootfs: Path, path: str) -> bytes:
    try:
        content = paths.read_file(str(rootfs), path, limit=_FILE_LIMIT)
    except OSError as err:
        raise SandboxError(f"reading {path} in the root file system: {err.strerror}") from err
    return content or b""


def _records(content: bytes) -> Iterator[list[str]]:
    """Colon-separated records; blank lines, comments and NIS "+"/"-" lines are skipped."""
    for raw in content.decode("utf-8", "surrogateescape").splitlines():
        line = raw.strip()
        if not line or line[0] in "#+-":
            continue
        fields = line.split(":")
        fields += [""] * (4 - len(fields))
        yield fields


def _find(content: bytes, matches: Callable[[list[str]], bool]) -> list[str] | None:
    """The first matching record: runc lets the first of duplicate entries win."""
    for fields in _records(content):
        if matches(fields):
            return fields
    return None
