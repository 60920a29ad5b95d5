"""Full step logs: what every RUN step wrote, kept with the build record.

A build writes its logs into ``ROOT/logs/.<id>.partial/`` while it runs and
renames that directory to ``ROOT/logs/<id>/`` when it ends, failed builds
included (their logs matter most), so a reader never sees a half-finished
set; a build killed mid-way leaves only a ``.partial`` directory, which
``remove_stale`` clears.  Inside: ``<position>.log`` per step (the step's
position in ``pybuild builds show``) and ``index.json`` with each log's
sizes.

The size policy: a step keeps the first ``head_bytes`` and the last
``tail_bytes`` of its output, and the tail always survives because that is
where a failure explains itself.  A log that did not fit is never clipped
silently: a marker line stands where bytes were cut, saying how many and
from which offset, and ``index.json`` records it too.  Only the logs of the
most recent ``KEEP_BUILDS`` builds are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from builder.errors import CacheError
from cache.files import write_atomically

__all__ = [
    "HEAD_BYTES", "KEEP_BUILDS", "TAIL_BYTES", "LogInfo", "StepLogWriter", "StepLogs",
    "log_path", "read_index", "remove_stale",
]

HEAD_BYTES = 4 * 1024 * 1024
TAIL_BYTES = 1024 * 1024
KEEP_BUILDS = 100
_PARTIAL = ".partial"


@dataclass(frozen=True, slots=True)
class LogInfo:
    """One step's kept log: ``written`` bytes came out of the step, ``cut`` of them were dropped
    starting at offset ``cut_at`` (0 and 0 when the log is whole)."""

    position: int
    written: int
    cut: int
    cut_at: int

    def marker(self) -> bytes:
        return (
            f"\n[pybuild: {self.cut} bytes of this step's output were cut here, from byte "
            f"{self.cut_at} on; the step wrote {self.written} bytes, and the log keeps the "
            f"first {self.cut_at} and the last {self.written - self.cut_at - self.cut}]\n"
        ).encode()


class StepLogWriter:
    """One step's log file: the head straight to disk, the tail in a bounded ring."""

    def __init__(self, path: Path, position: int, head_bytes: int, tail_bytes: int) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._position = position
        self._head_left = head_bytes
        self._head_written = 0
        self._tail_bytes = tail_bytes
        self._tail = bytearray()
        self._written = 0

    def write(self, data: bytes) -> None:
        self._written += len(data)
        if self._head_left > 0:
            head, data = data[: self._head_left], data[self._head_left:]
            self._file.write(head)
            self._head_left -= len(head)
            self._head_written += len(head)
        if data:
            self._tail += data
            if len(self._tail) > self._tail_bytes:
                del self._tail[: len(self._tail) - self._tail_bytes]

    def close(self) -> LogInfo:
        dropped = self._written - self._head_written - len(self._tail)
        info = LogInfo(self._position, self._written, dropped,
                       self._head_written if dropped else 0)
        if dropped:
            self._file.write(info.marker())
        self._file.write(self._tail)
        self._file.close()
        return info


class StepLogs:
    """The logs of one build (``open``/``write``/``finish``) and reading them back."""

    def __init__(self, root: Path, build_id: str, *, head_bytes: int = HEAD_BYTES,
                 tail_bytes: int = TAIL_BYTES) -> None:
        self._logs = root / "logs"
        self._build_id = build_id
        self._partial = self._logs / f".{build_id}{_PARTIAL}"
        self._head_bytes = head_bytes
        self._tail_bytes = tail_bytes
        self._lock = threading.Lock()
        self._writers: dict[int, StepLogWriter] = {}
        self._infos: dict[int, LogInfo] = {}
        self._error: str | None = None

    def write(self, position: int, data: bytes) -> None:
        """Append a step's output (threads: one writer per step, created on first use).

        A log that cannot be written (a full disk) never fails the step: the
        error is kept and ``finish`` reports it.
        """
        with self._lock:
            if self._error is not None:
                return
            try:
                writer = self._writers.get(position)
                if writer is None:
                    self._partial.mkdir(parents=True, exist_ok=True)
                    writer = StepLogWriter(self._partial / f"{position}.log", position,
                                           self._head_bytes, self._tail_bytes)
                    self._writers[position] = writer
                writer.write(data)
            except OSError as err:
                self._error = f"step logs of build {self._build_id} are incomplete: {err}"

    def finish(self) -> dict[int, LogInfo]:
        """Close every log and publish the directory; returns what each step kept."""
        with self._lock:
            try:
                for position, writer in self._writers.items():
                    self._infos[position] = writer.close()
            except OSError as err:
                self._error = self._error or f"step logs of build {self._build_id}: {err}"
            self._writers.clear()
            if self._error is not None:
                shutil.rmtree(self._partial, ignore_errors=True)
                raise CacheError(self._error)
            if not self._infos:
                return {}
            try:
                index = {str(p): {"written": i.written, "cut": i.cut, "cut_at": i.cut_at}
                         for p, i in sorted(self._infos.items())}
                write_atomically(self._partial / "index.json",
                                 json.dumps(index, indent=1).encode(), durable=False)
                os.rename(self._partial, self._logs / self._build_id)
            except OSError as err:
                raise CacheError(f"keeping the step logs: {err}") from err
            _drop_old(self._logs)
            return dict(self._infos)


def read_index(root: Path, build_id: str) -> dict[int, LogInfo]:
    """What each step of a build kept; {} when the build left no logs."""
    try:
        raw = json.loads((root / "logs" / build_id / "index.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise CacheError(f"reading the logs of build {build_id}: {err}") from err
    return {int(position): LogInfo(int(position), entry["written"], entry["cut"],
                                   entry["cut_at"])
            for position, entry in raw.items()}


def log_path(root: Path, build_id: str, position: int) -> Path:
    return root / "logs" / build_id / f"{position}.log"


def remove_stale(root: Path) -> list[Path]:
    """Remove ``.partial`` log directories of builds that are no longer running.

    Only directories older than an hour go: a running build's are younger
    than its run (a build that ran longer keeps writing, which refreshes the
    directory's mtime only when a new step starts; an hour is far beyond that).
    """
    import time

    removed = []
    logs = root / "logs"
    with contextlib.suppress(FileNotFoundError):
        for entry in logs.iterdir():
            if entry.name.endswith(_PARTIAL) and time.time() - entry.stat().st_mtime > 3600:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _drop_old(logs: Path) -> None:
    """Keep the logs of the KEEP_BUILDS most recent builds."""
    finished = [entry for entry in logs.iterdir() if not entry.name.startswith(".")]
    if len(finished) <= KEEP_BUILDS:
        return
    finished.sort(key=lambda entry: entry.stat().st_mtime)
    for entry in finished[: len(finished) - KEEP_BUILDS]:
        shutil.rmtree(entry, ignore_errors=True)
