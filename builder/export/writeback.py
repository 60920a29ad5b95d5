"""Start writing a file's pages to disk while it is still being written, so the final fsync is short.

An export's blob and archive are fsynced before they land (atomic and
durable). Left to the end, that fsync waits for every byte at once; an
fdatasync started in a background thread every few MiB (the system call
releases the GIL) lets the disk work while the CPU compresses, and leaves
the last fsync little to do.
"""

from __future__ import annotations

import os
import threading

__all__ = ["EarlyWriteback"]

_EVERY = 4 << 20


class EarlyWriteback:
    """Call ``wrote(count)`` after each write to ``fd``; ``wait`` before the final fsync.

    At most one fdatasync runs at a time; errors are left to the final fsync,
    which sees them again (a failed write-back keeps the pages dirty).
    """

    def __init__(self, fd: int, every: int = _EVERY) -> None:
        self._fd = fd
        self._every = every
        self._pending = 0
        self._thread: threading.Thread | None = None

    def wrote(self, count: int) -> None:
        self._pending += count
        if self._pending < self._every:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._pending = 0
        self._thread = threading.Thread(target=self._sync, name="writeback", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError:
            pass  # the final fsync reports it
