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

    def set_stage_names(self, names: dict[int, str]) -> None:
        self._stage_names = names

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
            self._emit(f"#{self._number(step)} DONE {seconds:.1f}s")

    def step_log(self, step: Step, data: bytes) -> None:
        with self._lock:
            number = self._number(step)
            elapsed = time.perf_counter() - self._started.get(step.id, self._start)
            for line in data.decode("utf-8", "replace").splitlines():
                self._emit(f"#{number} {elapsed:.3f} {line}")

    def step_failed(self, step: Step, message: str) -> None:
        with self._lock:
            self._emit(f"#{self._number(step)} ERROR: {message}")

    def close(self) -> None:
        pass


class TtyProgress(PlainProgress):
    """Plain lines written above a tqdm bar that counts finished steps."""

    def __init__(self, total_steps: int, out: TextIO | None = None) -> None:
        super().__init__(out)
        from tqdm import tqdm  # type: ignore[import-untyped]

        self._bar = tqdm(total=total_steps, unit="step", file=self._out, leave=False,
                         dynamic_ncols=True)

    def _emit(self, text: str) -> None:
        self._bar.write(text, file=self._out)

    def step_cached(self, step: Step) -> None:
        super().step_cached(step)
        self._bar.update(1)

    def step_finished(self, step: Step, seconds: float) -> None:
        super().step_finished(step, seconds)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


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
