"""Build checks through the CLI: ``pybuild build --check`` and the warnings after a build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner

pytestmark = pytest.mark.root

WARNED = (
    "FROM busybox AS Base\n"
    "COPY app.txt /app.txt\n"
    "RUN cat /app.txt\n"
    "CMD cat /app.txt\n"
)
CLEAN = 'FROM busybox AS base\nCOPY app.txt /app.txt\nCMD ["cat", "/app.txt"]\n'


def _context(tmp_path: Path, dockerfile: str) -> Path:
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    (context / "app.txt").write_text("app\n")
    return context


def test_check_prints_warnings_and_builds_nothing(pybuild: Runner, tmp_path: Path) -> None:
    context = _context(tmp_path, WARNED)
    result = pybuild("build", "--check", "-t", "app", str(context))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "WARNING: StageNameCasing - Stage names should be lowercase\n"
        "Stage name 'Base' should be lowercase\n"
        "Dockerfile:1\n"
    )
    assert "WARNING: JSONArgsRecommended" in result.stdout
    assert " 4 | >>> CMD cat /app.txt" in result.stdout
    assert result.stdout.endswith("Check complete, 2 warnings have been found!\n")
    assert pybuild("inspect", "app").returncode != 0  # nothing was built or tagged


def test_check_of_a_clean_dockerfile(pybuild: Runner, tmp_path: Path) -> None:
    result = pybuild("build", "--check", str(_context(tmp_path, CLEAN)))
    assert (result.returncode, result.stdout) == (0, "Check complete, no warnings found.\n")


def test_check_with_error_true_exits_1(pybuild: Runner, tmp_path: Path) -> None:
    context = _context(tmp_path, "# check=error=true\n" + WARNED)
    result = pybuild("build", "--check", str(context))
    assert result.returncode == 1
    assert "Check complete, 2 warnings have been found!" in result.stdout
    assert result.stderr.strip() == (
        "error: lint violation found for rules: StageNameCasing, JSONArgsRecommended"
    )
    skipped = _context(tmp_path, "# check=error=true;skip=StageNameCasing,JSONArgsRecommended\n"
                       + WARNED)
    assert pybuild("build", "--check", str(skipped)).returncode == 0


def test_check_of_a_broken_dockerfile_is_an_error(pybuild: Runner, tmp_path: Path) -> None:
    result = pybuild("build", "--check", str(_context(tmp_path, "FROM busybox\nRUNN x\n")))
    assert result.returncode == 1
    assert "unknown instruction: RUNN" in result.stderr


def test_warnings_are_printed_after_a_build_and_after_a_cached_one(
    pybuild: Runner, tmp_path: Path
) -> None:
    context = _context(tmp_path, WARNED)
    expected = (
        "2 warnings found:\n"
        " - StageNameCasing: Stage name 'Base' should be lowercase (line 1)\n"
        " - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended "
        "behavior related to OS signals (line 4)\n"
    )
    first = pybuild("build", "--progress", "plain", "-t", "app", str(context))
    assert first.returncode == 0, first.stderr
    assert first.stderr.endswith(expected)
    # Answered from the journal: the warnings still come.
    again = pybuild("build", "--progress", "plain", "-t", "app", str(context))
    assert again.returncode == 0, again.stderr
    assert again.stderr.endswith(expected)
    clean = _context(tmp_path, CLEAN)
    quiet = pybuild("build", "--progress", "plain", "-t", "app", str(clean))
    assert quiet.returncode == 0
    assert "warning" not in quiet.stderr


def test_rawjson_reports_warnings_as_events(pybuild: Runner, tmp_path: Path) -> None:
    result = pybuild("build", "--progress", "rawjson", str(_context(tmp_path, WARNED)))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    warnings = [event for event in events if event["event"] == "warning"]
    assert [(event["rule"], event["line"]) for event in warnings] == [
        ("StageNameCasing", 1), ("JSONArgsRecommended", 4)
    ]


def test_error_true_fails_the_build_before_any_step(pybuild: Runner, tmp_path: Path) -> None:
    context = _context(tmp_path, "# check=error=true\n" + WARNED)
    result = pybuild("build", "--progress", "plain", "-t", "app", str(context))
    assert result.returncode == 1
    assert "RUN cat" not in result.stderr  # no step started
    assert result.stderr.endswith(
        " - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended "
        "behavior related to OS signals (line 5)\n"
        "error: lint violation found for rules: StageNameCasing, JSONArgsRecommended\n"
    )
    assert pybuild("inspect", "app").returncode != 0


def test_undefined_var_with_a_suggestion(pybuild: Runner, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nENV APP=/app\nENV SEARCH=$PATH\nCOPY app.txt $APP/$APPP/\n"
    result = pybuild("build", "--check", str(_context(tmp_path, dockerfile)))
    assert result.returncode == 0
    assert "Usage of undefined variable '$APPP' (did you mean $APP?)" in result.stdout
    assert "variable '$PATH'" not in result.stdout
    assert result.stdout.endswith("Check complete, 1 warning has been found!\n")
