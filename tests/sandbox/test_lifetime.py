"""When run() returns or raises, the step's processes are dead and its mounts gone."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import RunSpec, TmpfsMount, run
from tests.sandbox.conftest import execute, host_mountinfo, processes_with, sh

pytestmark = pytest.mark.root


def test_exit_status_and_merged_output(rootfs: Path) -> None:
    result = sh(rootfs, "echo out; echo err >&2; echo more; exit 3")
    assert (result.code, result.lines) == (3, ["out", "err", "more"])


def test_output_streams_as_it_arrives(rootfs: Path) -> None:
    arrivals: list[tuple[float, bytes]] = []
    spec = RunSpec(argv=("/bin/sh", "-c", "echo first; sleep 1; echo second"), rootfs=rootfs)
    run(spec, output=lambda chunk: arrivals.append((time.monotonic(), chunk)))
    assert b"".join(chunk for _, chunk in arrivals) == b"first\nsecond\n"
    assert arrivals[-1][0] - arrivals[0][0] > 0.5


def test_stdin_is_the_given_bytes(rootfs: Path) -> None:
    payload = os.urandom(3 << 20)
    spec = RunSpec(argv=("/bin/sh", "-c", "wc -c; md5sum </dev/null >/dev/null"), rootfs=rootfs)
    assert execute(spec, stdin=payload).lines == [str(len(payload))]
    assert execute(spec).lines == ["0"]


def test_command_that_stops_reading_stdin_is_fine(rootfs: Path) -> None:
    spec = RunSpec(argv=("/bin/sh", "-c", "head -c 5"), rootfs=rootfs)
    assert execute(spec, stdin=b"x" * (4 << 20)).output == "xxxxx"


def test_command_starts_with_no_signal_ignored_or_blocked(rootfs: Path) -> None:
    result = execute(RunSpec(argv=("/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"),
                             rootfs=rootfs))
    assert result.lines == ["SigBlk:\t" + "0" * 16, "SigIgn:\t" + "0" * 16]


def test_background_processes_die_with_the_step(rootfs: Path) -> None:
    result = sh(rootfs, "sleep 98761 & sleep 98762 & (sleep 98763 &) ; echo started")
    assert result.lines == ["started"]
    assert processes_with("9876") == []


def test_a_step_killed_from_outside_reports_128_plus_signal(rootfs: Path) -> None:
    def kill_pid1() -> None:
        for _ in range(200):
            pids = processes_with("sleep 98770; echo")  # the shell, PID 1
            if pids and processes_with("98770\0"):  # and its sleep has started
                os.kill(pids[0], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_pid1)
    killer.start()
    result = sh(rootfs, "sleep 98770; echo not reached")
    killer.join()
    assert result.code == 128 + signal.SIGKILL
    assert processes_with("98770") == []


def test_timeout_kills_every_process_and_leaves_no_mounts(rootfs: Path) -> None:
    before = host_mountinfo(rootfs)
    started = time.monotonic()
    with pytest.raises(SandboxError, match=r"timed out after 0\.5s"):
        sh(rootfs, "sleep 98771 & sleep 98772", timeout=0.5,
           mounts=(TmpfsMount("/scratch"),))
    assert time.monotonic() - started < 5
    assert processes_with("9877") == []
    assert host_mountinfo(rootfs) == before
    assert not (rootfs / "scratch").exists()


def test_keyboard_interrupt_kills_the_step(rootfs: Path) -> None:
    before = host_mountinfo(rootfs)

    def interrupt(chunk: bytes) -> None:
        raise KeyboardInterrupt

    spec = RunSpec(argv=("/bin/sh", "-c", "sleep 98781 & echo ready; sleep 98782"),
                   rootfs=rootfs, mounts=(TmpfsMount("/scratch"),))
    with pytest.raises(KeyboardInterrupt):
        run(spec, output=interrupt)
    assert processes_with("9878") == []
    assert host_mountinfo(rootfs) == before
    assert not (rootfs / "scratch").exists()


def test_sigint_to_the_builder_kills_the_step(rootfs: Path) -> None:
    before = host_mountinfo(rootfs)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            sh(rootfs, "sleep 98791 & sleep 98792")
    finally:
        timer.cancel()
    assert processes_with("9879") == []
    assert host_mountinfo(rootfs) == before


def test_cancel_stops_the_step(rootfs: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    spec = RunSpec(argv=("/bin/sh", "-c", "sleep 98801"), rootfs=rootfs)
    with pytest.raises(SandboxError, match="cancelled"):
        run(spec, output=lambda chunk: None, cancel=cancel)
    assert processes_with("98801") == []


def test_steps_run_concurrently_from_threads(overlay_root: Path, plain_root: Path) -> None:
    results: dict[str, int] = {}

    def step(name: str, root: Path) -> None:
        results[name] = sh(root, f"sleep 0.5; exit {len(name)}").code

    threads = [threading.Thread(target=step, args=(name, root))
               for name, root in (("a", overlay_root), ("bb", plain_root), ("ccc", overlay_root))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"a": 1, "bb": 2, "ccc": 3}
    assert time.monotonic() - started < 1.4
