"""Leases: what running builds use, so prune and repair never take it from under them.

Every build holds a lease for its whole life: ``ROOT/leases/<pid>-<random>.lease``,
flock'ed exclusively by the build.  A lease file whose lock can be taken
belongs to a process that died (the kernel drops flocks with their owner), so
a crash never leaves a lease that blocks collection for ever.  The file holds
a JSON header (pid, start time, command) and then one line per thing the
build relies on (``layer sha256:...``, ``blob sha256:...``, ``mount ID``),
appended before the build relies on it.

``ROOT/leases/gc.lock`` orders the two sides: a collector (prune, repair)
holds it exclusively while it decides and deletes; a build holds it shared
for the short moments in which it finds something and writes it into its
lease (a cache lookup, tagging its image).  So a collector sees every use a
build has made, and a build never finds something a collector is deleting.
What a build creates between those moments (new blobs, snapshots, index
rows) is protected by time instead: a collector keeps everything touched
since the oldest live lease began (``horizon``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from builder.errors import CacheError

__all__ = ["Lease", "LeaseInfo", "Leases", "hold"]

_SUFFIX = ".lease"
_GC_LOCK = "gc.lock"
# Clocks of one machine, but a file's mtime comes from the kernel's coarse
# clock (a tick behind time.time()) and file systems round: keep a margin.
_CLOCK_SLACK = 1.0


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A live build's lease as a collector reads it."""

    pid: int
    started: float
    command: str
    uses: frozenset[str]  # "layer sha256:...", "blob sha256:...", "mount ID"
    path: Path


class Lease:
    """One build's lease; ``release`` (or leaving the ``with`` block) ends it."""

    def __init__(self, leases: Leases, path: Path, fd: int, started: float) -> None:
        self._leases = leases
        self.path = path
        self._fd = fd
        self.started = started
        self._lock = threading.Lock()
        self._known: set[str] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def guard(self) -> contextlib.AbstractContextManager[None]:
        """The shared side of the collector's lock: find something and lease it inside."""
        return self._leases.guard()

    def use(self, kind: str, names: Iterable[str]) -> None:
        """Record that the build relies on ``names`` (call inside ``guard``)."""
        with self._lock:
            fresh = [f"{kind} {name}" for name in names if f"{kind} {name}" not in self._known]
            if not fresh or self._fd < 0:
                return
            self._known.update(fresh)
            # One write per batch of whole lines: a reader sees whole lines or
            # none of the batch (it ignores a last line without a newline).
            os.write(self._fd, "".join(line + "\n" for line in fresh).encode())

    def release(self) -> None:
        """Drop the lease: unlinked while still locked, so no collector sees it dead."""
        with self._lock:
            if self._fd < 0:
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = -1


class Leases:
    """The leases of one pybuild root."""

    def __init__(self, root: Path) -> None:
        self.directory = Path(root) / "leases"

    def _ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Hold the collector's lock shared: no prune or repair deletes anything meanwhile."""
        with self._gc_lock(fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the collector's lock exclusively (prune, repair): builds wait to find things."""
        with self._gc_lock(fcntl.LOCK_EX):
            yield

    @contextlib.contextmanager
    def _gc_lock(self, operation: int) -> Iterator[None]:
        self._ensure()
        fd = os.open(self.directory / _GC_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, operation)
            yield
        finally:
            os.close(fd)

    def acquire(self, command: str) -> Lease:
        """Start a lease for this process; it is visible to collectors when this returns."""
        try:
            return self._acquire(command)
        except OSError as err:
            raise CacheError(f"taking a lease in {self.directory}: {err.strerror}") from err

    def _acquire(self, command: str) -> Lease:
        self._ensure()
        started = time.time()
        name = f"{os.getpid()}-{os.urandom(4).hex()}"
        # Locked before it gets its real name: a collector must never see a
        # lease file whose lock is free (it would take it for a dead build's).
        temp = self.directory / f".new-{name}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            header = {"pid": os.getpid(), "started": started, "command": command}
            os.write(fd, (json.dumps(header) + "\n").encode())
            final = self.directory / (name + _SUFFIX)
            with self.guard():
                os.rename(temp, final)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return Lease(self, final, fd, started)

    def live(self) -> list[LeaseInfo]:
        """The leases of builds still running, oldest first."""
        found = []
        for path, held in self._scan():
            if held:
                info = _read(path)
                if info is not None:
                    found.append(info)
        return sorted(found, key=lambda info: info.started)

    def dead(self) -> list[Path]:
        """Lease files left by processes that died (their lock is free)."""
        return [path for path, held in self._scan() if not held]

    def sweep_dead(self) -> int:
        """Remove dead leases (and half-created ones); returns how many went."""
        removed = 0
        for path in self.dead():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
        return removed

    def _scan(self) -> list[tuple[Path, bool]]:
        """(lease file, is its lock held) for every lease file, half-created ones too."""
        try:
            entries = sorted(os.scandir(self.directory), key=lambda entry: entry.name)
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            if not (entry.name.endswith(_SUFFIX) or entry.name.startswith(".new-")):
                continue
            path = Path(entry.path)
            held = _is_locked(path)
            if held is None:
                continue  # gone meanwhile
            if entry.name.startswith(".new-") and (held or _younger_than(path, 60.0)):
                continue  # being created right now (it is locked a moment after it appears)
            found.append((path, held))
        return found

    def horizon(self, live: list[LeaseInfo] | None = None) -> float | None:
        """Anything touched at or after this time may belong to a running build (None: no build)."""
        live = self.live() if live is None else live
        if not live:
            return None
        return min(info.started for info in live) - _CLOCK_SLACK


def _is_locked(path: Path) -> bool | None:
    """Whether some process holds a lock on ``path``; None if the file is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return path.stat().st_mtime > time.time() - seconds
    except FileNotFoundError:
        return True


def _read(path: Path) -> LeaseInfo | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline may be half written
    if not complete:
        return None
    try:
        header = json.loads(complete[0])
        pid, started, command = int(header["pid"]), float(header["started"]), str(header["command"])
    except (ValueError, KeyError, TypeError):
        return None
    return LeaseInfo(pid, started, command, frozenset(complete[1:]), path)


@contextlib.contextmanager
def hold(root: Path, command: str) -> Iterator[Lease]:
    """A lease on ``root`` for the block (for commands that add to the store)."""
    lease = Leases(root).acquire(command)
    try:
        yield lease
    finally:
        lease.release()
