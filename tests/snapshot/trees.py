"""Helpers for the snapshot tests: a comparable view of a tree, tar listings, layouts."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest


def needs_root(test: Callable[P, R]) -> Callable[P, R]:
    """Mark a test as needing root (mounts, mknod, trusted.* xattrs) and skip it otherwise.

    Under CI=true a skip of a root-marked test counts as a failure (tests/conftest.py).
    """
    skip = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, mknod, xattrs)")
    return pytest.mark.root(skip(test))


P = ParamSpec("P")
R = TypeVar("R")

_HIDDEN_XATTR_PREFIXES = (b"trusted.overlay.", b"user.overlay.")


@dataclass(frozen=True, slots=True)
class Entry:
    """What a reader of a root filesystem can see of one path (atime and ctime aside)."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int
    content: str = ""
    link: str = ""
    device: tuple[int, int] = (0, 0)
    nlink: int = 0
    same_file_as: str = ""
    xattrs: tuple[tuple[bytes, bytes], ...] = ()


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
    ):
        if test(mode):
            return name
    return "other"


def view_of(root: Path, *, dir_mtimes: bool = True) -> dict[str, Entry]:
    """Every path under ``root`` (the root left out) → what it looks like."""
    seen_inodes: dict[tuple[int, int], str] = {}
    found: dict[str, Entry] = {}
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(subdirs + files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            info = os.lstat(path)
            kind = _kind(info.st_mode)
            xattrs = tuple(
                sorted(
                    (os.fsencode(key), os.getxattr(path, key, follow_symlinks=False))
                    for key in os.listxattr(path, follow_symlinks=False)
                    if not os.fsencode(key).startswith(_HIDDEN_XATTR_PREFIXES)
                )
            )
            same_file_as = ""
            if kind != "dir" and info.st_nlink > 1:
                same_file_as = seen_inodes.setdefault((info.st_dev, info.st_ino), relative)
            content = ""
            if kind == "file":
                with open(path, "rb") as handle:
                    content = hashlib.sha256(handle.read()).hexdigest()
            found[relative] = Entry(
                kind=kind,
                mode=stat.S_IMODE(info.st_mode),
                uid=info.st_uid,
                gid=info.st_gid,
                mtime=info.st_mtime_ns // 1_000_000_000 if kind != "dir" or dir_mtimes else 0,
                content=content,
                link=os.readlink(path) if kind == "symlink" else "",
                device=(os.major(info.st_rdev), os.minor(info.st_rdev))
                if kind in ("char", "block")
                else (0, 0),
                nlink=info.st_nlink if kind != "dir" else 0,
                same_file_as=same_file_as,
                xattrs=xattrs,
            )
    return found


@dataclass(frozen=True, slots=True)
class Member:
    """The parts of a tar header the tests pin down exactly."""

    name: str
    type: bytes
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    pax: tuple[tuple[str, str], ...] = ()


def members_of(data: bytes) -> list[Member]:
    """Read a tar back with the standard library and list its headers."""
    listed: list[Member] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive:
            assert member.uname == "" and member.gname == "", member.name
            listed.append(
                Member(
                    name=member.name,
                    type=member.type,
                    mode=member.mode,
                    uid=member.uid,
                    gid=member.gid,
                    size=member.size,
                    mtime=int(member.mtime),
                    linkname=member.linkname,
                    devmajor=member.devmajor,
                    devminor=member.devminor,
                    pax=tuple(sorted(member.pax_headers.items())),
                )
            )
    return listed


def file_contents(data: bytes) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive:
            if member.isreg():
                handle = archive.extractfile(member)
                assert handle is not None
                contents[member.name] = handle.read()
    return contents
