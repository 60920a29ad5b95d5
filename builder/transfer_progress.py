"""What a pull or a push shows while blobs move: per-layer byte progress in progress.py's modes.

Plain (CI, pipes):  ``pull sha256:0123456789ab 12.3 MB`` when a layer starts and
                    ``pull sha256:0123456789ab 12.3 MB done 0.8s`` when it ends; nothing
                    per chunk, so a log names each layer twice at most.
TTY:                one tqdm bar per layer in flight (tqdm imported only here), the
                    end lines kept above them.
Quiet:              nothing.
Rawjson:            one JSON object per start and end (``event`` "transfer").
A layer that needs no transfer (the registry has it, the store has it) gets only
its end line, with the reason in place of ``done``. Thread-safe: layers move in
parallel, and each layer's ``Transfer`` is advanced by one thread.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, Self, TextIO

__all__ = [
    "PlainTransfers",
    "QuietTransfers",
    "RawJsonTransfers",
    "Transfer",
    "TransferProgress",
    "TtyTransfers",
    "format_size",
    "make_transfer_progress",
    "short_digest",
]


def short_digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits: enough to tell layers apart in a log."""
    algorithm, _, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:12]}" if hexdigits else digest[:19]


def format_size(size: int) -> str:
    """Decimal units as registries and docker show them: 980 B, 12.3 MB, 1.2 GB."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.95 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


class Transfer:
    """One blob on the move; use it in ``with``. ``advance`` counts bytes, ``finish``
    reports the end (leaving the block without ``finish``, as an error does, says nothing)."""

    def __init__(self, owner: TransferProgress, action: str, digest: str, total: int) -> None:
        self._owner = owner
        self.action = action
        self.digest = digest
        self.total = total
        self.moved = 0
        self._started = time.perf_counter()
        self._finished = False

    def advance(self, count: int) -> None:
        """``count`` more bytes moved (negative when a retry starts over)."""
        self.moved += count
        self._owner._advanced(self, count)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._owner._finished(self, time.perf_counter() - self._started)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._owner._closed(self)


class TransferProgress:
    """The quiet base: counts nothing, prints nothing. Subclasses show it."""

    def begin(self, action: str, digest: str, total: int) -> Transfer:
        """A blob of ``total`` bytes starts moving (``action``: pull, push)."""
        transfer = Transfer(self, action, digest, total)
        self._began(transfer)
        return transfer

    def skipped(self, action: str, digest: str, total: int, reason: str) -> None:
        """A blob that needed no transfer: ``reason`` says why (exists, mounted, present)."""

    def close(self) -> None:
        """Take down whatever is drawn; the lines already written stay."""

    def _began(self, transfer: Transfer) -> None:
        pass

    def _advanced(self, transfer: Transfer, count: int) -> None:
        pass

    def _finished(self, transfer: Transfer, seconds: float) -> None:
        pass

    def _closed(self, transfer: Transfer) -> None:
        pass


QuietTransfers = TransferProgress


def _line(action: str, digest: str, total: int, tail: str = "") -> str:
    line = f"{action} {short_digest(digest)} {format_size(total)}"
    return f"{line} {tail}" if tail else line


class PlainTransfers(TransferProgress):
    """A line when a blob starts and one when it ends."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stderr
        self._lock = threading.Lock()

    def skipped(self, action: str, digest: str, total: int, reason: str) -> None:
        self._emit(_line(action, digest, total, reason))

    def _began(self, transfer: Transfer) -> None:
        self._emit(_line(transfer.action, transfer.digest, transfer.total))

    def _finished(self, transfer: Transfer, seconds: float) -> None:
        self._emit(_line(transfer.action, transfer.digest, transfer.total, f"done {seconds:.1f}s"))

    def _emit(self, text: str) -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()


class TtyTransfers(PlainTransfers):
    """A tqdm bar per blob in flight; the end lines are written above the bars."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(out)
        from tqdm import tqdm  # type: ignore[import-untyped]

        self._tqdm = tqdm
        self._bars: dict[int, Any] = {}

    def _began(self, transfer: Transfer) -> None:
        bar = self._tqdm(
            total=transfer.total,
            desc=f"{transfer.action} {short_digest(transfer.digest)}",
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            file=self._out,
            leave=False,
            dynamic_ncols=True,
        )
        with self._lock:
            self._bars[id(transfer)] = bar

    def _advanced(self, transfer: Transfer, count: int) -> None:
        bar = self._bars.get(id(transfer))
        if bar is not None:
            bar.update(count)

    def _closed(self, transfer: Transfer) -> None:
        with self._lock:
            bar = self._bars.pop(id(transfer), None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        with self._lock:
            bars, self._bars = list(self._bars.values()), {}
        for bar in bars:
            bar.close()

    def _emit(self, text: str) -> None:
        with self._lock:
            self._tqdm.write(text, file=self._out)


class RawJsonTransfers(PlainTransfers):
    """progress.py's rawjson: ``{"event": "transfer", "action", "digest", "size",
    "status": "started" | "done" | <reason>, "seconds"?}`` per line."""

    def skipped(self, action: str, digest: str, total: int, reason: str) -> None:
        self._record(action, digest, total, reason)

    def _began(self, transfer: Transfer) -> None:
        self._record(transfer.action, transfer.digest, transfer.total, "started")

    def _finished(self, transfer: Transfer, seconds: float) -> None:
        self._record(transfer.action, transfer.digest, transfer.total, "done",
                     seconds=round(seconds, 3))

    def _record(self, action: str, digest: str, total: int, status: str, **fields: object) -> None:
        import json

        record: dict[str, object] = {
            "event": "transfer",
            "time": round(time.time(), 3),
            "action": action,
            "digest": digest,
            "size": total,
            "status": status,
        }
        record.update(fields)
        self._emit(json.dumps(record))


def make_transfer_progress(mode: str, out: TextIO | None = None) -> TransferProgress:
    """The view for ``--progress MODE`` (auto: tty on a terminal, else plain)."""
    stream = out or sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "tty":
        return TtyTransfers(stream)
    if mode == "quiet":
        return QuietTransfers()
    if mode == "rawjson":
        return RawJsonTransfers(stream)
    return PlainTransfers(stream)
