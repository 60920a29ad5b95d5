"""An unpacked root tree → one comparable record per path (no mtimes).

Both builders' images are unpacked by umoci, so the walk sees what any
consumer of the layers sees. A path is the tree-relative name with a
leading ``/``; names that are not UTF-8 keep their bytes as surrogates.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "snapshot_tree"]

_KINDS = (
    (stat.S_ISDIR, "dir"),
    (stat.S_ISREG, "file"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISCHR, "char"),
    (stat.S_ISBLK, "block"),
    (stat.S_ISSOCK, "socket"),
)
# The fields a difference can name, in the order they are compared.
FIELDS = ("mode", "uid", "gid", "content", "target", "links", "device")
# Files up to this size are compared (and reported) by their bytes, larger
# ones by their sha256.
_INLINE_SIZE = 512


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of a root tree, as far as an image can say anything about it.

    ``content`` is a small file's bytes, or ``sha256:HEX`` of a larger
    one. ``links`` is the sorted group of paths sharing this file's inode when
    there is more than one, so a broken or extra hard link shows up on
    every member of the group.
    """

    kind: str
    mode: str
    uid: int
    gid: int
    content: bytes | str | None = None
    target: str | None = None
    links: tuple[str, ...] | None = None
    device: tuple[int, int] | None = None


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    raise ValueError(f"unknown file type {mode:o}")


def _content(path: bytes) -> bytes | str:
    with open(path, "rb") as handle:
        head = handle.read(_INLINE_SIZE + 1)
        if len(head) <= _INLINE_SIZE:
            return head
        digest = hashlib.sha256(head)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def snapshot_tree(root: Path) -> dict[str, Entry]:
    """Every path under ``root`` (``/`` itself included) and what it is."""
    stats: dict[str, os.stat_result] = {"/": os.lstat(root)}
    base = os.fsencode(root)
    for directory, dirnames, filenames in os.walk(base):
        for name in (*dirnames, *filenames):
            full = os.path.join(directory, name)
            relative = "/" + os.fsdecode(os.path.relpath(full, base))
            stats[relative] = os.lstat(full)
    inodes: dict[tuple[int, int], list[str]] = defaultdict(list)
    for path, info in stats.items():
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            inodes[(info.st_dev, info.st_ino)].append(path)
    entries: dict[str, Entry] = {}
    for path, info in stats.items():
        kind = _kind(info.st_mode)
        full = os.path.join(base, os.fsencode(path.lstrip("/")))
        group = inodes.get((info.st_dev, info.st_ino), [])
        entries[path] = Entry(
            kind=kind,
            mode=f"{stat.S_IMODE(info.st_mode):04o}",
            uid=info.st_uid,
            gid=info.st_gid,
            content=_content(full) if kind == "file" else None,
            target=os.fsdecode(os.readlink(full)) if kind == "symlink" else None,
            links=tuple(sorted(group)) if len(group) > 1 else None,
            device=(os.major(info.st_rdev), os.minor(info.st_rdev))
            if kind in ("char", "block") else None,
        )
    return entries
