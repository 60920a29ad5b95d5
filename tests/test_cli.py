"""The command line: `pybuild parse` and `python -m builder`, as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder import cli
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "hello" / "Dockerfile"


def _pybuild(*args: str, stdin: bytes = b"", cwd: Path = REPO) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
        timeout=60,
    )


def test_parse_dump_of_the_example() -> None:
    result = _pybuild("parse", "-f", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == '(arg "BASE=busybox")'
    assert '(from "${BASE}:latest" "AS" "build")' in lines
    assert '(copy ["--from=build" "--chown=app:app"] "/opt/app" "/opt/app")' in lines
    assert lines[-1] == '(cmd "--verbose")'


def test_parse_json_of_the_example() -> None:
    result = _pybuild("parse", "--format", "json", "-f", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    commands = json.loads(result.stdout)
    run_heredoc = next(c for c in commands if c["cmd"] == "RUN" and c["heredocs"])
    assert run_heredoc["heredocs"] == [
        {"name": "EOF", "content": 'echo "built version $APP_VERSION" > build-info.txt\n'}
    ]
    healthcheck = next(c for c in commands if c["cmd"] == "HEALTHCHECK")
    assert healthcheck == {
        "cmd": "HEALTHCHECK", "sub_cmd": None, "json": True, "flags": ["--interval=30s", "--timeout=3s"],
        "value": ["CMD", "hello"], "start_line": 37, "end_line": 38, "heredocs": [],
    }


def test_parse_reads_standard_input() -> None:
    result = _pybuild("parse", "-f", "-", stdin=b"FROM busybox\nRUN echo hi\n")
    assert result.stdout == b'(from "busybox")\n(run "echo hi")\n'


def test_parse_defaults_to_dockerfile_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    result = _pybuild("parse", cwd=tmp_path)
    assert result.stdout == b'(from "scratch")\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"FROM busybox\nRUNN echo hi\n", "<stdin>:2: unknown instruction: RUNN (did you mean RUN?)"),
        (b"FROM busybox\nCOPY --frm=a b c\n", "<stdin>:2: unknown flag: --frm"),
        (b"FROM busybox\nCMD [\"a\", 1]\n", "<stdin>:2: when using JSON array syntax"),
        (b"FROM a\nRUN <<EOF\nno end\n", "<stdin>:2-3: unterminated heredoc"),
        (b"# just a comment\n", "file with no instructions"),
    ],
)
def test_refusal_names_the_line_without_a_traceback(text: bytes, expected: str) -> None:
    result = _pybuild("parse", "--check", "-f", "-", stdin=text)
    assert result.returncode == cli.EXIT_ERROR
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert stderr.startswith("error: ")
    assert expected in stderr
    assert "Traceback" not in stderr


def test_refusal_shows_the_offending_lines() -> None:
    result = _pybuild("parse", "--check", "-f", "-", stdin=b"FROM a\nRUNN \\\n  x\n")
    assert result.stderr.decode().splitlines()[1:] == [" 2 | RUNN \\", " 3 |   x"]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _pybuild("parse", "-f", str(tmp_path / "nope"))
    assert result.returncode == cli.EXIT_ERROR
    assert b"No such file or directory" in result.stderr
    assert b"Traceback" not in result.stderr


def test_unknown_command_line_flag_is_a_usage_error() -> None:
    result = _pybuild("parse", "--frobnicate")
    assert result.returncode == cli.EXIT_USAGE
    assert b"--frobnicate" in result.stderr


def test_binary_file_is_refused_without_a_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "Dockerfile"
    binary.write_bytes(bytes(range(256)) * 64)
    result = _pybuild("parse", "--check", "-f", str(binary))
    assert result.returncode in (cli.EXIT_OK, cli.EXIT_ERROR)
    assert b"Traceback" not in result.stderr


def test_main_returns_exit_codes_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["parse", "-f", str(EXAMPLE)]) == cli.EXIT_OK
    assert "(entrypoint" in capsys.readouterr().out


@pytest.mark.slow
def test_installed_wheel_ships_the_grammar_and_parses(tmp_path: Path) -> None:
    """The grammar and its tables are package data: a wheel alone must parse."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the checkout")
    source = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(REPO), str(source)], check=True)
    # Take the working tree as it is, committed or not.
    for path in ("builder", "grammar", "cache", "pyproject.toml", "README.md"):
        if (REPO / path).is_dir():
            shutil.copytree(REPO / path, source / path, dirs_exist_ok=True)
        else:
            shutil.copy2(REPO / path, source / path)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("pybuild-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "grammar/dockerfile.lark" in names
    assert "grammar/dockerfile.tables.json" in names
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    result = subprocess.run(
        [sys.executable, "-c",
         ("import grammar, builder.cli, sys; "
         "assert grammar.__file__.startswith(sys.argv[1]), grammar.__file__; "
         "sys.exit(builder.cli.main(['parse', '-f', sys.argv[2]]))"),
         str(unpacked), str(EXAMPLE)],
        capture_output=True, env=env, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b'(arg "BASE=busybox")\n')
