"""Small files that must never be seen half-written, and the lock that serialises them.

Every index, cache map, journal entry and credentials file pybuild keeps is
written the same way: a temp file in a staging dir on the same file system,
fsync, chmod, rename over the target, and (when it must survive a power cut)
fsync of the directory.  A crash at any moment leaves the old file or the
new one, never a mixture, and never a stray temp file that a reader takes
for the real one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["exclusive_lock", "lock_held", "remove_unlocked", "still_names", "write_atomically"]


def write_atomically(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    staging_dir: Path | None = None,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` all at once.

    ``staging_dir`` must be on the same file system (default: path's own
    dir).  The mode is set before the data is written, so a secret is never
    readable by others even for a moment.  With ``durable``, the data and the
    rename are fsynced; caches whose loss costs only recomputation may skip it.
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", dir=staging_dir or path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path`` (created if missing) for the block.

    flock, not POSIX record locks: those belong to the process and vanish
    when any descriptor of the file closes; flock follows the open file
    description, so threads and processes both queue here.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_held(path: Path) -> bool:
    """Whether some process holds an flock on ``path``, shared or exclusive.

    An exclusive try-lock that would block means someone holds it; one that
    succeeds is released at once by closing the descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


def still_names(path: Path | str, fd: int) -> bool:
    """Whether ``path`` still names the open file ``fd`` (not renamed away, removed or replaced)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def remove_unlocked(path: Path | str) -> bool:
    """Remove ``path`` if nobody holds an flock on it (its holder died); whether it went.

    The lock is taken first and the name checked again under it: a file its
    owner renamed or replaced between our open and our lock is left alone.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        if not still_names(path, fd):
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)
