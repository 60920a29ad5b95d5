"""The Dockerfile grammar, and the Lark-free parser that runs its precompiled tables.

``dockerfile.lark`` is the source of truth; ``dockerfile.tables.json`` is what
``python -m grammar.compile`` made of it with Lark.  Importing this package and
parsing never imports Lark, unless the shipped tables are missing or stale.
"""

from __future__ import annotations

import functools
import json
import os

# typing is imported for the type checker only: it costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from grammar.runtime import (
    TABLES_FORMAT,
    GrammarSyntaxError,
    TableParser,
    Token,
    Tree,
    grammar_digest,
)

__all__ = [
    "GRAMMAR_PATH",
    "TABLES_PATH",
    "GrammarSyntaxError",
    "TableParser",
    "Token",
    "Tree",
    "load_parser",
]

# Plain strings, not pathlib: importing pathlib costs start-up time that
# `pybuild parse` cannot spare.
GRAMMAR_PATH = os.path.join(os.path.dirname(__file__), "dockerfile.lark")
TABLES_PATH = os.path.join(os.path.dirname(__file__), "dockerfile.tables.json")


@functools.cache
def load_parser() -> TableParser:
    """The parser for GRAMMAR_PATH, built once per process.

    Uses the shipped tables when they were compiled from the grammar as it is
    now; otherwise (someone edited the grammar and has not run
    ``python -m grammar.compile`` yet) compiles them with Lark in memory.  It
    never writes into the package, which may be read-only once installed.
    """
    return TableParser.from_tables(_read_tables(GRAMMAR_PATH, TABLES_PATH))


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _read_grammar_text(grammar_path: str | os.PathLike[str]) -> str:
    """The grammar exactly as stored: no newline translation, so the digest is the file's."""
    return _read_bytes(grammar_path).decode("utf-8")


def _read_tables(
    grammar_path: str | os.PathLike[str], tables_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """The tables for the grammar at ``grammar_path``: from ``tables_path`` if current."""
    grammar_text = _read_grammar_text(grammar_path)
    try:
        tables: Any = json.loads(_read_bytes(tables_path))
    except (OSError, ValueError):
        tables = None
    if (
        isinstance(tables, dict)
        and tables.get("format") == TABLES_FORMAT
        and tables.get("grammar_digest") == grammar_digest(grammar_text)
    ):
        return tables
    # Imported here only: grammar.compile imports Lark.
    from grammar.compile import compile_tables

    return compile_tables(grammar_text)
