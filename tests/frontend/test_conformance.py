"""BuildKit's own parser test data and the real-world corpus, read by our parser.

Every case of ``conformance/buildkit/parser/testfiles`` must dump exactly as
its ``result`` file; every negative case must be refused; every file of the
real-world corpus must give exactly what BuildKit's parser gave
(``realworld/oracle.json``), refusals included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import ParseError
from builder.frontend.parser import parse_dockerfile
from builder.frontend.render import dump, to_json_commands
from tests.conftest import CONFORMANCE, REPO
from tests.frontend.oracle_view import as_oracle_sees

PARSER_DATA = CONFORMANCE / "buildkit" / "parser"
REALWORLD = CONFORMANCE / "realworld"
ORACLE: dict[str, dict[str, object]] = json.loads((REALWORLD / "oracle.json").read_text())


def _cases(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir())


@pytest.mark.parametrize("case", _cases(PARSER_DATA / "testfiles"), ids=lambda path: path.name)
def test_dump_matches_buildkit_result(case: Path) -> None:
    tree = parse_dockerfile((case / "Dockerfile").read_bytes())
    assert dump(tree) == (case / "result").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "case", _cases(PARSER_DATA / "testfiles-negative"), ids=lambda path: path.name
)
def test_negative_case_is_refused(case: Path) -> None:
    with pytest.raises(ParseError) as caught:
        parse_dockerfile((case / "Dockerfile").read_bytes())
    assert caught.value.location is not None


def test_line_numbers_match_buildkit() -> None:
    # The same expectations as BuildKit's TestParseLineNumbers for this file.
    tree = parse_dockerfile((PARSER_DATA / "testfile-line" / "Dockerfile").read_bytes())
    spans = [(node.start_line, node.end_line) for node in tree.nodes]
    assert spans == [(5, 5), (11, 12), (17, 31)]


@pytest.mark.oracle
def test_testfile_line_matches_oracle() -> None:
    dockerfile = pytest.importorskip("dockerfile")
    data = (PARSER_DATA / "testfile-line" / "Dockerfile").read_bytes()
    expected = [(cmd.start_line, cmd.end_line) for cmd in dockerfile.parse_string(data.decode())]
    tree = parse_dockerfile(data)
    assert [(node.start_line, node.end_line) for node in tree.nodes] == expected


@pytest.mark.parametrize("name", sorted(ORACLE), ids=lambda name: name[:90])
def test_realworld_file_matches_oracle(name: str) -> None:
    expected = ORACLE[name]
    data = (REALWORLD / "files" / name).read_bytes()
    if not expected["ok"]:
        with pytest.raises(ParseError):
            parse_dockerfile(data)
        return
    assert as_oracle_sees(to_json_commands(parse_dockerfile(data))) == expected["commands"]


def test_cli_json_equals_oracle_for_a_realworld_file() -> None:
    name = "docker-library__python__3.12__slim-bookworm__Dockerfile.Dockerfile"
    if name not in ORACLE:
        name = next(key for key, value in ORACLE.items() if value["ok"])
    result = subprocess.run(
        [sys.executable, "-m", "builder", "parse", "--format", "json", "-f",
         str(REALWORLD / "files" / name)],
        capture_output=True,
        cwd=REPO,
        check=True,
    )
    assert json.loads(result.stdout) == ORACLE[name]["commands"]


def test_cli_refuses_what_buildkit_refuses() -> None:
    refused = next(key for key, value in ORACLE.items() if not value["ok"])
    result = subprocess.run(
        [sys.executable, "-m", "builder", "parse", "-f", str(REALWORLD / "files" / refused)],
        capture_output=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == b""
    assert b"error:" in result.stderr
    assert b"Traceback" not in result.stderr
