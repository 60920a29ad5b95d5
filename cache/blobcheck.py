"""A stored blob's fast checksum: an xxh3-128 recorded on the file when the blob lands.

Reading a layer back (to export, unpack or push it) must catch a blob that
has rotted on disk. Re-running sha256 over it costs about a CPU-second per
GB, which was most of what an export spent beside compressing; xxh3 costs a
twentieth of that. The checksum is taken over the very bytes whose sha256
named the blob and is set on the temp file before the rename, so a blob and
its record land together; bytes that change afterwards no longer match it.

The record lives in an extended attribute, so it goes when the blob goes and
needs no bookkeeping of its own. A blob without one (a store older than the
record, a file system without user xattrs) is checked by sha256 as before,
and gets its record once that check passes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re

import xxhash

from builder.errors import StoreError

__all__ = ["ATTRIBUTE", "ContentCheck", "record", "recorded"]

ATTRIBUTE = "user.pybuild.xxh3-128"
_HEX128 = re.compile(r"[0-9a-f]{32}")


def recorded(fd: int) -> str | None:
    """The checksum recorded on the open file ``fd``, or None if there is none (or it is garbled)."""
    try:
        value = os.getxattr(fd, ATTRIBUTE).decode("ascii", "replace")
    except OSError:
        return None  # no record, or a file system that keeps none
    return value if _HEX128.fullmatch(value) else None


def record(fd: int, checksum: str) -> None:
    """Record ``checksum`` on ``fd``; a file system that refuses is left without one."""
    with contextlib.suppress(OSError):
        os.setxattr(fd, ATTRIBUTE, checksum.encode("ascii"))


class ContentCheck:
    """Checks a stored blob's bytes as they are read, in order, start to end.

    Against its recorded xxh3-128 when it has one; otherwise against the
    sha256 its name is, recording the xxh3-128 once that passes.
    """

    def __init__(self, fd: int, digest: str) -> None:
        self._fd = fd
        self._digest = digest
        self._recorded = recorded(fd)
        self._fast = xxhash.xxh3_128()
        self._sha256 = hashlib.sha256() if self._recorded is None else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._fast.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)

    def verify(self) -> None:
        """Raise StoreError unless every byte read so far is the blob's, whole."""
        if self._sha256 is None:
            if self._fast.hexdigest() != self._recorded:
                raise StoreError(
                    f"blob {self._digest} is corrupt: its content no longer matches the "
                    "xxh3-128 checksum recorded when it was stored"
                )
            return
        actual = "sha256:" + self._sha256.hexdigest()
        if actual != self._digest:
            raise StoreError(f"blob {self._digest} is corrupt: its content hashes to {actual}")
        record(self._fd, self._fast.hexdigest())
