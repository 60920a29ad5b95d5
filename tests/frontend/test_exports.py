"""The frontend package exports exactly its public names, each importable."""

from __future__ import annotations

import subprocess
import sys

import builder.frontend
from tests.conftest import REPO


def test_every_exported_name_resolves() -> None:
    for name in builder.frontend.__all__:
        assert getattr(builder.frontend, name) is not None, name


def test_exports_are_the_documented_set() -> None:
    assert sorted(builder.frontend.__all__) == [
        "Directive", "Heredoc", "Node", "ShellLexer", "SyntaxTree", "dump",
        "expand_instruction", "parse_dockerfile", "parse_instructions", "to_json_commands",
    ]


def test_parsing_does_not_import_lark_or_the_instruction_layer() -> None:
    code = (
        "import sys; from builder.frontend import parse_dockerfile; "
        "parse_dockerfile(b'FROM a\\nRUN <<EOF\\nx\\nEOF\\n'); "
        "print(sorted(m for m in sys.modules if m.startswith(('lark', 'builder.frontend.inst'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, cwd=REPO, check=True, text=True
    )
    assert result.stdout.strip() == "[]"
