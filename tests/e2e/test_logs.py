"""Full step logs kept with the build record, and comparing two CI runs' metadata files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner, make_context

pytestmark = pytest.mark.root


def _last_build(pybuild: Runner) -> str:
    listing = json.loads(pybuild("builds", "--format", "json").stdout)
    return str(listing[0]["id"])


def test_builds_logs_prints_every_line_of_a_step(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\nRUN seq 1 3000\nENV X=1\nRUN echo second step; echo to stderr >&2\n"
    ))
    result = pybuild("build", "--progress", "quiet", str(context))
    assert result.returncode == 0, result.stderr
    build_id = _last_build(pybuild)
    first = pybuild("builds", "logs", build_id, "1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [str(n) for n in range(1, 3001)]
    both = pybuild("builds", "logs", build_id[:6])
    assert both.returncode == 0, both.stderr
    assert "==> step 1 [0] line 2: RUN seq 1 3000" in both.stdout
    assert "==> step 3 [0] line 4: RUN echo second step" in both.stdout
    assert "second step\n" in both.stdout and "to stderr\n" in both.stdout
    # A config-only step wrote nothing; a step number outside the build is refused.
    assert "wrote no output" in pybuild("builds", "logs", build_id, "2").stderr
    outside = pybuild("builds", "logs", build_id, "9")
    assert outside.returncode != 0 and "steps 1 to 3" in outside.stderr


def test_a_long_log_is_cut_in_the_middle_and_says_so(pybuild: Runner, tmp_path: Path) -> None:
    # 6 MB of output: more than the 4 MiB head plus the 1 MiB tail that are kept.
    context = make_context(tmp_path, (
        "FROM busybox\nRUN yes 0123456789 | head -c 6000000; echo; echo THE-END\n"
    ))
    assert pybuild("build", "--progress", "quiet", str(context)).returncode == 0
    log = pybuild("builds", "logs", _last_build(pybuild), "1").stdout
    assert log.startswith("0123456789\n0123456789\n")
    assert log.rstrip().endswith("THE-END")
    assert "bytes of this step's output were cut here, from byte 4194304 on" in log
    assert "the step wrote 6000009 bytes" in log
    assert 5_000_000 < len(log) < 5_300_000
    listing = pybuild("builds", "logs", _last_build(pybuild)).stdout
    assert "(6000009 bytes, 757129 bytes cut at byte 4194304)" in listing


def test_a_failed_build_keeps_its_logs(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN echo about to fail; exit 3\n")
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode != 0
    log = pybuild("builds", "logs", _last_build(pybuild), "1")
    assert log.stdout == "about to fail\n", log.stderr


def test_builds_compare_reads_two_metadata_files(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nCOPY a /a\nRUN cat /a > /b\nCOPY c /c\n",
                       {"a": "1", "c": "1"})
    first, second = tmp_path / "run1.json", tmp_path / "run2.json"
    assert pybuild("build", "--metadata-file", str(first), str(context)).returncode == 0
    (context / "c").write_text("2")
    assert pybuild("build", "--metadata-file", str(second), str(context)).returncode == 0
    compare = pybuild("builds", "compare", str(first), str(second), "--format", "json")
    assert compare.returncode == 0, compare.stderr
    report = json.loads(compare.stdout)
    assert [(row["first"], row["second"]) for row in report["steps"]] == [
        ("RUN", "CACHED"), ("RUN", "CACHED"), ("RUN", "RUN")
    ]
    document = json.loads(second.read_text())
    second_id = document["pybuild.build"]["id"]
    assert [step["hit_source"] for step in document["pybuild.build"]["step_records"]] == [
        "local", "local", ""
    ]
    assert report["totals"][second_id]["hits"] == 2
    assert report["totals"][second_id]["keyed"] == 3
    table = pybuild("builds", "compare", str(first), str(second))
    assert "2/3 hits (67%)" in table.stdout, table.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"containerimage.digest": "x"}')
    refused = pybuild("builds", "compare", str(first), str(bad))
    assert refused.returncode != 0
    assert "bad.json: not a pybuild --metadata-file" in refused.stderr
    assert "Traceback" not in refused.stderr
