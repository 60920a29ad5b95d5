"""What a build shows while it runs: plain BuildKit-like lines, a tqdm view, or nothing.

Plain (CI, pipes):   ``#3 [build 2/5] RUN make``, log lines, ``#3 DONE 1.2s``, ``#3 CACHED``.
TTY:                 the same lines above a tqdm bar counting steps (tqdm imported only here).
Quiet:               nothing but errors; the image digest is printed by the CLI.
Every mode ends with one summary line (``summary``).  Thread-safe: stages
report from worker threads.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.plan.graph import Step

__all__ = [
    "LogTail",
    "PlainProgress",
    "QuietProgress",
    "RawJsonProgress",
    "TtyProgress",
    "describe_step",
    "make_progress",
    "summary_line",
]


def describe_step(step: Step, stage_name: str) -> str:
    label = f"{stage_name} {step.number}/{step.count}" if stage_name else f"{step.number}/{step.count}"
    text = step.instruction.original.split("\n", 1)[0]
    if len(text) > 120:
        text = text[:117] + "..."
    return f"[{label}] {text}"


class PlainProgress:
    """BuildKit's plain progress: one numbered line per event."""

    def __init__(self, out: TextIO | None = None, *, stage_names: dict[int, str] | None = None,
                 log_tail: int = 200) -> None:
        self._out = out or sys.stderr
        self._lock = threading.Lock()
        self._numbers: dict[int, int] = {}
        self._started: dict[int, float] = {}
        self._stage_names = stage_names or {}
        self._start = time.perf_counter()
        self._build_id = ""
        self._positions: dict[int, int] = {}
        self._partials: dict[int, bytes] = {}

    def set_stage_names(self, names: dict[int, str]) -> None:
        self._stage_names = names

    def set_log_source(self, build_id: str, positions: dict[int, int]) -> None:
        """Where the full logs go: ``pybuild builds logs BUILD_ID POSITION``."""
        self._build_id = build_id
        self._positions = positions

    def _number(self, step: Step) -> int:
        if step.id not in self._numbers:
            self._numbers[step.id] = len(self._numbers) + 1
        return self._numbers[step.id]

    def _emit(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def message(self, text: str) -> None:
        with self._lock:
            self._emit(text)

    def step_started(self, step: Step) -> None:
        with self._lock:
            self._started[step.id] = time.perf_counter()
            self._emit(f"#{self._number(step)} {describe_step(step, self._stage_names.get(step.stage, ''))}")

    def step_cached(self, step: Step) -> None:
        with self._lock:
            number = self._number(step)
            self._emit(f"#{number} {describe_step(step, self._stage_names.get(step.stage, ''))}")
            self._emit(f"#{number} CACHED")

    def step_finished(self, step: Step, seconds: float) -> None:
        with self._lock:
            self._flush_partial(step)
            self._emit(f"#{self._number(step)} DONE {seconds:.1f}s")

    def step_log(self, step: Step, data: bytes) -> None:
        # Output arrives in pipe-sized chunks that may end mid-line; only
        # whole lines are printed, so "+ mkdir" never splits in two.
        with self._lock:
            text = self._partials.pop(step.id, b"") + data
            *lines, rest = text.split(b"\n")
            if len(rest) > 4096:  # no newline for a long while: print it anyway
                lines.append(rest)
                rest = b""
            if rest:
                self._partials[step.id] = rest
            self._print_lines(step, lines)

    def _print_lines(self, step: Step, lines: list[bytes]) -> None:
        number = self._number(step)
        elapsed = time.perf_counter() - self._started.get(step.id, self._start)
        for line in lines:
            self._emit(f"#{number} {elapsed:.3f} {line.decode('utf-8', 'replace').rstrip(chr(13))}")

    def _flush_partial(self, step: Step) -> None:
        rest = self._partials.pop(step.id, b"")
        if rest:
            self._print_lines(step, [rest])

    def step_failed(self, step: Step, message: str) -> None:
        with self._lock:
            self._flush_partial(step)
            self._emit(f"#{self._number(step)} ERROR: {message}")

    def close(self) -> None:
        pass


class TtyProgress(PlainProgress):
    """Plain lines written above a tqdm bar that counts finished steps.

    A step's output is not streamed to the terminal: the bar shows its latest
    line while it runs, and when it ends the last ``TAIL_LINES`` lines are
    printed, with a pointer to the full log (``pybuild builds logs``) when
    there were more.  A chatty step cannot flood the screen.
    """

    TAIL_LINES = 10

    def __init__(self, total_steps: int, out: TextIO | None = None) -> None:
        super().__init__(out)
        from tqdm import tqdm  # type: ignore[import-untyped]

        self._bar = tqdm(total=total_steps, unit="step", file=self._out, leave=False,
                         dynamic_ncols=True)
        self._tails: dict[int, LogTail] = {}

    def _emit(self, text: str) -> None:
        self._bar.write(text, file=self._out)

    def step_log(self, step: Step, data: bytes) -> None:
        with self._lock:
            tail = self._tails.setdefault(step.id, LogTail(self.TAIL_LINES))
            tail.feed(data)
            if tail.lines:
                self._bar.set_description_str(f"#{self._number(step)} {tail.lines[-1][:60]}",
                                              refresh=True)

    def _show_tail(self, step: Step) -> None:
        tail = self._tails.pop(step.id, None)
        if tail is None:
            return
        number = self._number(step)
        tail.flush()
        if tail.total > len(tail.lines):
            where = (f"pybuild builds logs {self._build_id} {self._positions[step.id]}"
                     if self._build_id and step.id in self._positions else "the build's logs")
            self._emit(f"#{number} ... {tail.total - len(tail.lines)} earlier lines: {where}")
        for line in tail.lines:
            self._emit(f"#{number} {line}")
        self._bar.set_description_str("", refresh=False)

    def step_cached(self, step: Step) -> None:
        super().step_cached(step)
        self._bar.update(1)

    def step_finished(self, step: Step, seconds: float) -> None:
        with self._lock:
            self._show_tail(step)
        super().step_finished(step, seconds)
        self._bar.update(1)

    def step_failed(self, step: Step, message: str) -> None:
        with self._lock:
            self._show_tail(step)
        super().step_failed(step, message)

    def close(self) -> None:
        self._bar.close()


class LogTail:
    """The last ``limit`` lines of a step's output, and how many lines it wrote in all."""

    def __init__(self, limit: int) -> None:
        import collections

        self.lines: collections.deque[str] = collections.deque(maxlen=limit)
        self.total = 0
        self._partial = b""

    def feed(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.total += len(complete)
        self.lines.extend(line.decode("utf-8", "replace").rstrip("\r") for line in complete)
        if len(self._partial) > 4096:  # output with no newline still shows, and stays bounded
            self.total += 1
            self.lines.append(self._partial[:4096].decode("utf-8", "replace"))
            self._partial = b""

    def flush(self) -> None:
        if self._partial:
            self.feed(b"\n")


class RawJsonProgress(PlainProgress):
    """One JSON object per line and event, for CI tools: no regexes over CACHED lines.

    Events: started, cached, log (``data``, decoded with replacement), done
    (``seconds``), error (``message``), summary.  Each step event carries the
    step number, stage, instruction and Dockerfile line.
    """

    def _event(self, kind: str, step: Step | None, **fields: object) -> None:
        import json

        record: dict[str, object] = {"event": kind, "time": round(time.time(), 3)}
        if step is not None:
            record.update(
                step=self._number(step),
                stage=self._stage_names.get(step.stage, "") or str(step.stage),
                instruction=step.instruction.original.split("\n", 1)[0],
                line=step.location.start_line,
            )
        record.update(fields)
        self._out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._out.flush()

    def step_started(self, step: Step) -> None:
        with self._lock:
            self._started[step.id] = time.perf_counter()
            self._event("started", step)

    def step_cached(self, step: Step) -> None:
        with self._lock:
            self._event("cached", step)

    def step_finished(self, step: Step, seconds: float) -> None:
        with self._lock:
            self._event("done", step, seconds=round(seconds, 3))

    def step_log(self, step: Step, data: bytes) -> None:
        with self._lock:
            self._event("log", step, data=data.decode("utf-8", "replace"))

    def step_failed(self, step: Step, message: str) -> None:
        with self._lock:
            self._event("error", step, message=message)

    def message(self, text: str) -> None:
        with self._lock:
            self._event("summary", None, text=text)


class QuietProgress(PlainProgress):
    def _emit(self, text: str) -> None:
        pass


def make_progress(mode: str, total_steps: int, out: TextIO | None = None) -> PlainProgress:
    stream = out or sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "tty":
        return TtyProgress(total_steps, stream)
    if mode == "quiet":
        return QuietProgress(stream)
    if mode == "rawjson":
        return RawJsonProgress(stream)
    return PlainProgress(stream)


def summary_line(*, steps: int, cached: int, ran: int, seconds: float, digest: str) -> str:
    """The one line every build ends with."""
    keyed = cached + ran
    rate = 100.0 * cached / keyed if keyed else 100.0
    return (
        f"pybuild: {steps} steps, {ran} run, {cached} cached, "
        f"hit rate {rate:.0f}% ({cached}/{keyed}), {seconds:.2f}s, {digest}"
    )
