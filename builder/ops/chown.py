"""``COPY/ADD --chown=user[:group]`` -> (uid, gid), by BuildKit's file-op rules.

These differ from USER's (builder/sandbox/users.py) on purpose, as they do
in BuildKit, whose Dockerfile frontend turns the flag into an LLB chown
option and whose file backend reads it:

- each part that is a decimal number, or the word ``root``, is taken as is,
  without reading any file;
- a user given by number alone also gives the group: ``--chown=4242`` is
  4242:4242 (USER 4242 would run with gid 0);
- a user name takes uid and primary gid from the target's /etc/passwd, a
  group name its gid from /etc/group; a name with no entry fails the step,
  as the Dockerfile reference says.

``--link`` copies onto an empty root, so there is no /etc/passwd to read:
names are refused there (the frontend refuses them at plan time already,
see ``builder.frontend.copying.check_link_chown``).
"""

from __future__ import annotations

import os
from pathlib import Path

from builder.errors import CopyError

__all__ = ["MAX_ID", "numeric_chown_part", "resolve_chown"]

MAX_ID = 2**31 - 1  # BuildKit parses ids as int32
_FILE_LIMIT = 64 << 20  # a passwd or group file larger than this is not one


def numeric_chown_part(text: str) -> int | None:
    """The id a ``--chown`` part names without a lookup (a number or ``root``), else None."""
    if text == "root":
        return 0
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise CopyError(f"--chown: id {text} is out of range (0 to {MAX_ID})")
    return value


def resolve_chown(rootfs: Path | None, spec: str) -> tuple[int, int]:
    """The owner ``spec`` names; names are looked up in ``rootfs`` (None: no root to read)."""
    user, has_group, group = spec.partition(":")
    uid = numeric_chown_part(user)
    gid = uid
    if uid is None:
        entry = _lookup(rootfs, "/etc/passwd", user, spec)
        if entry is None:
            raise CopyError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = _field_id(entry, 2), _field_id(entry, 3)
    if has_group:
        gid = numeric_chown_part(group)
        if gid is None:
            entry = _lookup(rootfs, "/etc/group", group, spec)
            if entry is None:
                raise CopyError(f"unable to find group {group}: no matching entries in group file")
            gid = _field_id(entry, 2)
    assert gid is not None
    return uid, gid


def _lookup(rootfs: Path | None, path: str, name: str, spec: str) -> list[str] | None:
    """The first record of ``path`` inside ``rootfs`` whose name field is ``name``."""
    from builder.sandbox.paths import read_file

    if rootfs is None:
        raise CopyError(
            f"--chown={spec}: names cannot be resolved by a --link copy, which does not"
            " see the stage's /etc/passwd and /etc/group (use numeric ids)"
        )
    try:
        content = read_file(os.fspath(rootfs), path, limit=_FILE_LIMIT)
    except OSError as err:
        raise CopyError(f"reading {path} in the root file system: {err.strerror}") from err
    for raw in (content or b"").decode("utf-8", "surrogateescape").splitlines():
        line = raw.strip()
        if not line or line[0] in "#+-":
            continue  # comments and NIS lines, skipped as runc's parser skips them
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def _field_id(fields: list[str], index: int) -> int:
    """A numeric passwd/group field; a missing or malformed one reads as 0, as in runc."""
    try:
        return int(fields[index])
    except (IndexError, ValueError):
        return 0
