"""The step log store: head and tail kept, a marker where bytes were cut, atomic publishing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import CacheError
from cache.logs import StepLogs, log_path, read_index


def test_a_short_log_is_kept_whole(tmp_path: Path) -> None:
    logs = StepLogs(tmp_path, "b1", head_bytes=100, tail_bytes=50)
    logs.write(2, b"hello ")
    logs.write(2, b"world\n")
    assert not (tmp_path / "logs" / "b1").exists()  # not published while the build runs
    infos = logs.finish()
    assert infos[2].written == 12 and infos[2].cut == 0
    assert log_path(tmp_path, "b1", 2).read_bytes() == b"hello world\n"
    assert read_index(tmp_path, "b1") == infos


def test_a_long_log_keeps_head_and_tail_and_marks_the_cut(tmp_path: Path) -> None:
    logs = StepLogs(tmp_path, "b2", head_bytes=10, tail_bytes=5)
    data = bytes(range(48, 48 + 40))  # 40 distinct bytes
    for offset in range(0, 40, 3):  # arbitrary chunking must not matter
        logs.write(1, data[offset:offset + 3])
    info = logs.finish()[1]
    assert (info.written, info.cut, info.cut_at) == (40, 25, 10)
    kept = log_path(tmp_path, "b2", 1).read_bytes()
    assert kept.startswith(data[:10]) and kept.endswith(data[-5:])
    assert b"25 bytes of this step's output were cut here, from byte 10 on" in kept
    assert json.loads((tmp_path / "logs" / "b2" / "index.json").read_text())["1"]["cut"] == 25


def test_steps_have_separate_logs(tmp_path: Path) -> None:
    logs = StepLogs(tmp_path, "b3")
    logs.write(1, b"one\n")
    logs.write(3, b"three\n")
    logs.write(1, b"uno\n")
    logs.finish()
    assert log_path(tmp_path, "b3", 1).read_bytes() == b"one\nuno\n"
    assert log_path(tmp_path, "b3", 3).read_bytes() == b"three\n"
    assert read_index(tmp_path, "nothing") == {}


def test_a_log_that_cannot_be_written_is_reported_not_raised_mid_step(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("a file where the logs dir should be")
    logs = StepLogs(tmp_path, "b4")
    logs.write(1, b"output\n")  # the step goes on
    with pytest.raises(CacheError, match="step logs of build b4 are incomplete"):
        logs.finish()
