"""What the terminal shows of a step's output: a bounded tail and where the rest is."""

from __future__ import annotations

import io

from builder.frontend import commands
from builder.plan.graph import BaseImage
from builder.plan.planner import PlanRequest, plan_build
from builder.progress import LogTail, TtyProgress


def _no_images(name: str, instruction: commands.Instruction) -> BaseImage:
    raise AssertionError(f"no image expected, got {name}")


def test_the_tty_view_prints_a_bounded_tail_and_points_to_the_full_log() -> None:
    graph = plan_build(b"FROM scratch\nRUN make\n", PlanRequest(), _no_images)
    step = graph.stages[0].steps[0]
    out = io.StringIO()
    view = TtyProgress(1, out)
    view.set_log_source("abc123def456", {step.id: 1})
    view.step_started(step)
    for number in range(1, 51):
        view.step_log(step, f"line {number}\n".encode())
    view.step_log(step, b"no newline at the end")
    view.step_finished(step, 1.0)
    view.close()
    # What tqdm.write printed: each line's text after the bar's last carriage return.
    shown = [line.rsplit("\r", 1)[-1] for line in out.getvalue().split("\n")]
    assert "#1 ... 41 earlier lines: pybuild builds logs abc123def456 1" in out.getvalue()
    assert "#1 line 41\n" not in out.getvalue()  # only the tail
    assert [line for line in shown if line.startswith("#1 line")] == [
        f"#1 line {n}" for n in range(42, 51)
    ]
    assert "#1 no newline at the end" in shown


def test_a_log_tail_stays_bounded_without_newlines() -> None:
    tail = LogTail(3)
    for _ in range(100):
        tail.feed(b"x" * 1000)
    assert len(tail.lines) == 3 and tail.total >= 20
    assert all(len(line) <= 4096 for line in tail.lines)


def test_plain_lines_are_whole_even_when_output_arrives_mid_line() -> None:
    from builder.progress import PlainProgress

    graph = plan_build(b"FROM scratch\nRUN make\n", PlanRequest(), _no_images)
    step = graph.stages[0].steps[0]
    out = io.StringIO()
    view = PlainProgress(out)
    view.step_started(step)
    for chunk in (b"+ ", b"mkdir -p bin\n+ chm", b"od +x bin/hello\r\n", b"last"):
        view.step_log(step, chunk)
    view.step_finished(step, 0.5)
    logged = [line.split(" ", 2)[2] for line in out.getvalue().splitlines()[1:-1]]
    assert logged == ["+ mkdir -p bin", "+ chmod +x bin/hello", "last"]
