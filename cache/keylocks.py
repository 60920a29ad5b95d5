"""One lock per cache key across processes: identical steps of concurrent builds run once.

The solver already runs a key once within a process; two ``pybuild build``
processes on one root would still both run it.  Before running a missed
step, the solver takes ``ROOT/locks/<key>`` (flock, exclusive); the process
that waited looks the key up again once it holds the lock, and finds the
layer the other one recorded.

The lock file is removed by its holder before it lets go, so finished keys
leave nothing behind.  A waiter may therefore wake up holding a lock on a
file that is no longer linked; it checks that the path still names the file
it locked and starts over if not.  A holder killed before removing it leaves
an unlocked file, which the next taker simply uses (and removes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from cache import files

__all__ = ["KeyLocks"]

_KEY = re.compile(r"[0-9a-f]{16,64}")


class KeyLocks:
    def __init__(self, root: Path) -> None:
        self.directory = Path(root) / "locks"

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key`` for the block (threads of one process queue too)."""
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a cache key: {key!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / key
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            if files.still_names(path, fd):
                break
            os.close(fd)  # the holder before us removed it: lock the new one
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    def sweep(self) -> int:
        """Remove lock files nobody holds (left by killed processes); returns how many."""
        removed = 0
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if files.remove_unlocked(entry.path):
                removed += 1
        return removed


