"""Persistent cache mount directories (RUN --mount=type=cache): ROOT/cachemounts/<hex>/.

One directory per mount id, named by xxh3-128 of the id, holding:

    id      the mount id, UTF-8 text (the name is a hash, this says whose)
    data/   what the steps see at the mount target
    lock    the flock file users hold while a step has the mount

A new directory is assembled in ROOT/tmp (its ``data`` seeded there, when a
``from=`` asks for it) and renamed into place, so nobody ever sees a
half-made one.  Users lock ``lock`` for as long as a step runs: shared users
with LOCK_SH, ``sharing=locked`` and ``sharing=private`` users with LOCK_EX;
``remove`` takes LOCK_EX without waiting and refuses a directory in use.
The directory's own mtime is its last use (``directory`` touches it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import xxhash

from builder.errors import CacheError
from cache import files

__all__ = ["CacheMountEntry", "CacheMounts", "LockMode", "mount_hex"]

LockMode = Literal["shared", "exclusive", "try-exclusive"]

_ID_FILE = "id"
_DATA_DIR = "data"
_LOCK_FILE = "lock"
# A directory that keeps vanishing under a user (remove() racing it) is retried this often.
_ATTEMPTS = 5
_POLL_SECONDS = 0.05


def mount_hex(mount_id: str) -> str:
    """The directory name of a mount id."""
    return xxhash.xxh3_128_hexdigest(mount_id.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True, slots=True)
class CacheMountEntry:
    """One cache mount directory: its id, its path, the bytes its data uses, when last used."""

    id: str
    path: Path
    bytes: int
    last_used: float


class CacheMounts:
    """The cache mount directories of one pybuild root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "cachemounts"
        self._tmp = root / "tmp"

    def path(self, mount_id: str) -> Path:
        """Where the directory of ``mount_id`` lives, present or not."""
        return self.base / mount_hex(mount_id)

    def directory(
        self, mount_id: str, *, initialize: Callable[[Path], None] | None = None
    ) -> Path:
        """The directory of ``mount_id``, created if missing; marks it used now.

        ``initialize`` gets the new (empty) ``data`` dir before the directory
        lands, to seed it or set its owner and mode; it is not called when
        the directory exists already.
        """
        final = self.path(mount_id)
        if not final.is_dir():
            self._create(mount_id, final, initialize)
        with contextlib.suppress(FileNotFoundError):
            os.utime(final)
        return final

    @contextlib.contextmanager
    def use(
        self,
        mount_id: str,
        mode: LockMode,
        *,
        initialize: Callable[[Path], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[Path | None]:
        """Hold the lock of ``mount_id``'s directory for the block; yields its ``data`` dir.

        "shared" waits for exclusive users; "exclusive" waits for everyone;
        "try-exclusive" does not wait and yields None when the lock is taken.
        While waiting, ``cancelled`` is asked every few hundredths of a second
        (a stopped build must not hang on another build's lock): CacheError.
        """
        for _ in range(_ATTEMPTS):
            directory = self.directory(mount_id, initialize=initialize)
            try:
                fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # removed between directory() and here: make it again
            try:
                operation = fcntl.LOCK_SH if mode == "shared" else fcntl.LOCK_EX
                if not _lock(fd, operation, wait=mode != "try-exclusive", cancelled=cancelled):
                    if mode == "try-exclusive":
                        yield None
                        return
                    raise CacheError(f"cache mount {mount_id!r}: cancelled while waiting "
                                     "for its lock")
                # remove() renames the directory away while holding the lock;
                # a lock on the file of a removed directory protects nothing.
                if not files.still_names(directory / _LOCK_FILE, fd):
                    continue
                yield directory / _DATA_DIR
                return
            finally:
                os.close(fd)
        raise CacheError(f"cache mount {mount_id!r}: its directory keeps disappearing")

    def entries(self) -> list[CacheMountEntry]:
        """Every cache mount directory, with its id, size and last use, by id."""
        found: list[CacheMountEntry] = []
        try:
            names = sorted(os.listdir(self.base))
        except FileNotFoundError:
            return []
        for name in names:
            directory = self.base / name
            try:
                mount_id = (directory / _ID_FILE).read_bytes().decode("utf-8", "surrogateescape")
                last_used = directory.stat().st_mtime
            except (FileNotFoundError, NotADirectoryError):
                continue
            found.append(CacheMountEntry(mount_id, directory, _disk_usage(directory / _DATA_DIR),
                                         last_used))
        return sorted(found, key=lambda entry: entry.id)

    def remove(self, mount_id: str) -> None:
        """Delete the directory of ``mount_id``; CacheError while a step uses it.

        It is renamed into ROOT/tmp under its lock first, so a crash mid-way
        never leaves a half-deleted cache under its name.
        """
        final = self.path(mount_id)
        try:
            fd = os.open(final / _LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CacheError(f"cache mount {mount_id!r} is in use by a running step") from None
            self._tmp.mkdir(parents=True, exist_ok=True)
            doomed = Path(tempfile.mkdtemp(prefix="cachemount-", dir=self._tmp))
            try:
                os.rename(final, doomed / "entry")
            except FileNotFoundError:
                pass
            except OSError as err:
                raise CacheError(f"removing cache mount {mount_id!r}: {err.strerror}") from err
            finally:
                shutil.rmtree(doomed, ignore_errors=True)
        finally:
            os.close(fd)

    def _create(
        self, mount_id: str, final: Path, initialize: Callable[[Path], None] | None
    ) -> None:
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix="cachemount-", dir=self._tmp))
        except OSError as err:
            raise CacheError(f"creating cache mount {mount_id!r}: {err.strerror}") from err
        try:
            os.chmod(staging, 0o755)
            (staging / _ID_FILE).write_bytes(mount_id.encode("utf-8", "surrogateescape"))
            (staging / _DATA_DIR).mkdir(mode=0o755)
            os.chmod(staging / _DATA_DIR, 0o755)  # whatever the umask
            (staging / _LOCK_FILE).touch(mode=0o644)
            if initialize is not None:
                initialize(staging / _DATA_DIR)
            try:
                os.rename(staging, final)
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise CacheError(
                        f"creating cache mount {mount_id!r}: {err.strerror}"
                    ) from err
                # Another step made it first; theirs is as good.
        except OSError as err:
            raise CacheError(f"creating cache mount {mount_id!r}: {err.strerror}") from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _lock(fd: int, operation: int, *, wait: bool,
          cancelled: Callable[[], bool] | None) -> bool:
    """flock, polling so that a cancelled wait can give up; False when not taken."""
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if not wait or (cancelled is not None and cancelled()):
                return False
        time.sleep(_POLL_SECONDS)


def _disk_usage(top: Path) -> int:
    """Bytes the tree uses on disk (allocated blocks), each hard-linked inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, subdirs, names in os.walk(top):
        for name in (*subdirs, *names):
            try:
                info = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total
