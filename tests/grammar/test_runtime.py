"""The table-driven parser against Lark, the reference it was compiled from.

grammar/runtime.py must build exactly the tree ``Lark.parse`` builds (rule
names, children, token types, values and offsets) or refuse exactly the texts
Lark refuses, and only ever with GrammarSyntaxError.  The shipped tables must be
what grammar/compile.py makes of grammar/dockerfile.lark today.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grammar
from grammar import GrammarSyntaxError, TableParser, Token, Tree
from grammar.compile import compile_tables, find_start_symbols, render_tables

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAMMAR_PATH = Path(grammar.GRAMMAR_PATH)
TABLES_PATH = Path(grammar.TABLES_PATH)
STARTS = ("instruction", "exec_form")

# Characters the grammar treats specially, the words it knows, and a few it
# does not: BuildKit's extra spaces \x85 and \xa0, a Unicode space that \s
# matches but the gaps do not, control characters JSON strings refuse.
PIECES = [
    " ",
    "  ",
    "\t",
    "\x0b",
    "\x0c",
    "\r",
    "\n",
    "\x85",
    "\xa0",
    "\u3000",
    "\x00",
    "\x1f",
    "-",
    "--",
    '"',
    "'",
    "\\",
    "=",
    "a",
    "b",
    "R",
    "N",
    "0",
    "1",
    "9",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ".",
    "e",
    "E",
    "+",
    "/",
    "true",
    "false",
    "null",
    "RUN",
    "--from=",
    "\\u00e9",
    "\\n",
    "é",
]

HAND_PICKED = [
    "RUN --mount=type=cache,target=/x apt-get update && apt-get install -y foo",
    'COPY --from=x --chown="a b" src dst',
    "CMD --doit -- [ ]",
    '["a", "b"]',
    '[1, {"a": [true, null, -1.5e3]}]',
    '["a" "b"]',
    "[",
    "",
    " ",
    "RUN",
    "RUN ",
    "RUN\t\x0b\x0c\r --x",
    "RUN --x\x85--y\xa0args here",
    'RUN --x="unterminated',
    "RUN --x='a\\' b' c",
    "RUN --x=\\",
    "run\u3000x",
    ' [ "a" , "b" ] ',
    "[]",
    "{}",
    '{"a": 1, "b": {"c": []}}',
    '{"a" 1}',
    "[01]",
    "[-0.5E+10]",
    "[truefalse]",
    "[true, nul]",
    '["\\u00e9\\n"]',
    '["\x01"]',
    "[1,]",
    "[[[[[]]]]]",
    "true",
    '"just a string"',
    "-1",
]


@pytest.fixture(scope="module")
def reference() -> lark.Lark:
    """Lark itself, built as grammar/compile.py builds it."""
    text = GRAMMAR_PATH.read_bytes().decode("utf-8")
    return lark.Lark(text, parser="lalr", lexer="contextual", start=find_start_symbols(text))


def as_ours(node: Any) -> Tree | Token:
    """Lark's Tree or Token in the runtime's types (rule names are Tokens in Lark)."""
    if isinstance(node, lark.Token):
        assert node.start_pos is not None and node.end_pos is not None
        return Token(node.type, str(node), node.start_pos, node.end_pos)
    assert isinstance(node, lark.Tree)
    return Tree(str(node.data), tuple(as_ours(child) for child in node.children))


def assert_same_as_lark(reference: lark.Lark, text: str, start: str) -> None:
    """Both parse to the same tree, or both refuse (ours at the same offset)."""
    try:
        expected = as_ours(reference.parse(text, start=start))
    except lark.exceptions.UnexpectedInput as lark_error:
        with pytest.raises(GrammarSyntaxError) as caught:
            grammar.load_parser().parse(text, start)
        # Lark places an unexpected end at its last token; ours at len(text).
        lark_token = getattr(lark_error, "token", None)
        if lark_token is None or lark_token.type != "$END":
            assert caught.value.position == lark_error.pos_in_stream
        return
    assert grammar.load_parser().parse(text, start) == expected


def json_text() -> st.SearchStrategy[str]:
    """Valid JSON with varied spacing, so the exec form is mostly parsed, not refused."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(alphabet=st.sampled_from(["a", " ", '"', "\\", "\n", "é", "\x7f"]), max_size=4),
    )
    values = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
        ),
        max_leaves=8,
    )
    spacing = st.sampled_from([None, 0, 1, "\t", "\r\n"])
    return st.tuples(values, spacing, st.sampled_from([", ", ",", " ,\n"])).map(
        lambda drawn: json.dumps(drawn[0], indent=drawn[1], separators=(drawn[2], ":"))
    )


def instruction_text() -> st.SearchStrategy[str]:
    """Keyword, gaps, flags (quoted, escaped, unterminated) and arguments."""
    word = st.lists(st.sampled_from(PIECES + ["x", "y"]), min_size=1, max_size=6).map("".join)
    gap = st.sampled_from([" ", "\t", "\x0b", "\x0c", "\r", "\n", "\x85", "\xa0", " \n "])
    flag = st.one_of(word.map(lambda w: "--" + w), st.just("--"), st.just('--a="b c'))
    parts = st.lists(st.tuples(gap, st.one_of(flag, word)), max_size=5)
    return st.tuples(st.sampled_from(["RUN", "copy", "x"]), parts).map(
        lambda drawn: drawn[0] + "".join(g + w for g, w in drawn[1])
    )


SETTINGS = settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_shipped_tables_match_grammar() -> None:
    """Fails when the grammar changed and ``python -m grammar.compile`` was not run."""
    grammar_text = GRAMMAR_PATH.read_bytes().decode("utf-8")
    shipped_text = TABLES_PATH.read_text(encoding="utf-8")
    shipped = json.loads(shipped_text)
    assert shipped["grammar_digest"] == grammar.runtime.grammar_digest(grammar_text), (
        "grammar/dockerfile.tables.json is stale: run python -m grammar.compile"
    )
    assert compile_tables(grammar_text) == shipped
    assert render_tables(shipped) == shipped_text


def test_compile_check_passes_whatever_hash_seed() -> None:
    """Lark numbers states in set order; the JSON must not depend on it."""
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-m", "grammar.compile", "--check"],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


def test_start_symbols_are_the_grammar_entry_points() -> None:
    assert grammar.load_parser().start_symbols == ("exec_form", "instruction")


@pytest.mark.parametrize("text", HAND_PICKED)
@pytest.mark.parametrize("start", STARTS)
def test_parse_matches_lark_hand_picked(reference: lark.Lark, text: str, start: str) -> None:
    assert_same_as_lark(reference, text, start)


@SETTINGS
@given(
    text=st.lists(st.sampled_from(PIECES), max_size=25).map("".join), start=st.sampled_from(STARTS)
)
def test_parse_matches_lark_any_text(reference: lark.Lark, text: str, start: str) -> None:
    assert_same_as_lark(reference, text, start)


@SETTINGS
@given(text=json_text())
def test_parse_matches_lark_json(reference: lark.Lark, text: str) -> None:
    assert_same_as_lark(reference, text, "exec_form")
    assert_same_as_lark(reference, "[" + text + "]", "exec_form")


@SETTINGS
@given(text=instruction_text())
def test_parse_matches_lark_instruction_lines(reference: lark.Lark, text: str) -> None:
    assert_same_as_lark(reference, text, "instruction")


# A grammar using what dockerfile.lark does not (yet): keywords that a regexp
# terminal also matches (Lark's "unless" renaming), %ignore, !rules, aliases,
# priorities, an inlined start body.  Its parses must match Lark's too.
TOY_GRAMMAR = r"""
start: _stmt*
_stmt: assign | if_stmt | shout
if_stmt: "if" NAME "then" _stmt
assign: NAME "=" value ";"
!shout: "print" value ";"
?value: NAME | NUMBER | pair
pair: "(" value "," value ")" -> tuple
NAME: /[a-z]+/
NUMBER.2: /[0-9]+/
COMMENT: /#[^\n]*/
%ignore COMMENT
%ignore /[ \t\n]+/
"""
TOY_STATEMENTS = [
    "x = 1;",
    "if x then ",
    "print (1, y);",
    "iffy=(x,(2,3));",
    " #c\n",
    "thenx = 9;",
    "x",
]
TOY_PIECES = [
    "if",
    "then",
    "print",
    "x",
    "iffy",
    "=",
    ";",
    "(",
    ")",
    ",",
    "1",
    "23",
    " ",
    "\n",
    "#c\n",
    "%",
]


@pytest.fixture(scope="module")
def toy() -> tuple[lark.Lark, TableParser]:
    reference = lark.Lark(TOY_GRAMMAR, parser="lalr", lexer="contextual", start=["start"])
    return reference, TableParser.from_tables(compile_tables(TOY_GRAMMAR))


def test_toy_grammar_tables_cover_unless_and_ignore() -> None:
    tables = compile_tables(TOY_GRAMMAR)
    name = next(terminal for terminal in tables["terminals"] if terminal["name"] == "NAME")
    assert {swallowed for swallowed, _embed in name["unless"]} == {"IF", "THEN", "PRINT"}
    assert len(tables["ignore"]) == 2 and tables["start"] == ["start"]


@pytest.mark.parametrize(
    "text",
    [
        "if x then y = 1;",
        "print (1, x);",
        "iffy = (x, (1, 23)); # c\n if a then if b then print b;",
        "if = 1;",
        "print print;",
        "x = ;",
        "",
    ],
)
def test_toy_grammar_matches_lark_hand_picked(
    toy: tuple[lark.Lark, TableParser], text: str
) -> None:
    assert_toy_same_as_lark(toy, text)


@SETTINGS
@given(
    text=st.one_of(
        st.lists(st.sampled_from(TOY_PIECES), max_size=20).map(" ".join),
        st.lists(st.sampled_from(TOY_STATEMENTS), max_size=6).map("".join),
    )
)
def test_toy_grammar_matches_lark(toy: tuple[lark.Lark, TableParser], text: str) -> None:
    assert_toy_same_as_lark(toy, text)


def assert_toy_same_as_lark(toy: tuple[lark.Lark, TableParser], text: str) -> None:
    reference, ours = toy
    try:
        expected = as_ours(reference.parse(text))
    except lark.exceptions.UnexpectedInput:
        with pytest.raises(GrammarSyntaxError):
            ours.parse(text, "start")
        return
    assert ours.parse(text, "start") == expected


def test_compile_refuses_placeholders() -> None:
    with pytest.raises(ValueError, match="placeholders"):
        compile_tables('start: "a" [B] "c"\nB: "b"\n')


def test_parse_tree_shape_instruction() -> None:
    tree = grammar.load_parser().parse('COPY --from=x --chown="a b" src dst', "instruction")
    assert tree == Tree(
        "instruction",
        (
            Token("KEYWORD", "COPY", 0, 4),
            Token("FLAG", "--from=x", 5, 13),
            Token("FLAG", '--chown="a b"', 14, 27),
            Token("ARGUMENTS", "src dst", 28, 35),
        ),
    )


def test_parse_error_reports_position_and_expected() -> None:
    with pytest.raises(GrammarSyntaxError) as caught:
        grammar.load_parser().parse('["a" "b"]', "exec_form")
    error = caught.value
    assert (error.position, error.expected, error.text) == (
        5,
        frozenset({"COMMA", "RSQB"}),
        '["a" "b"]',
    )
    assert "offset 5" in str(error)
    assert pickle.loads(pickle.dumps(error)).expected == error.expected


def test_parse_error_at_end_of_text() -> None:
    with pytest.raises(GrammarSyntaxError) as caught:
        grammar.load_parser().parse("[", "exec_form")
    assert caught.value.position == 1
    assert "RSQB" in caught.value.expected


def test_parse_unknown_start_is_value_error() -> None:
    with pytest.raises(ValueError, match="no start symbol"):
        grammar.load_parser().parse("RUN", "json_value")


def test_parse_deep_nesting_unclosed_raises_syntax_error_quickly() -> None:
    began = time.perf_counter()
    with pytest.raises(GrammarSyntaxError) as caught:
        grammar.load_parser().parse("[" * 100_000, "exec_form")
    assert caught.value.position == 100_000
    assert time.perf_counter() - began < 5


def test_parse_deep_nesting_closed_builds_tree_without_recursion() -> None:
    depth = 100_000
    tree = grammar.load_parser().parse("[" * depth + "]" * depth, "exec_form")
    node: Tree | Token = tree.children[0]
    levels = 0
    while isinstance(node, Tree) and node.children:
        node = node.children[0]
        levels += 1
    assert isinstance(node, Tree) and node.rule == "json_array" and levels == depth - 1


def test_parse_long_array_is_linear() -> None:
    text = "[" + ", ".join(['"x"'] * 50_000) + "]"
    began = time.perf_counter()
    tree = grammar.load_parser().parse(text, "exec_form")
    assert time.perf_counter() - began < 5
    array = tree.children[0]
    assert isinstance(array, Tree) and len(array.children) == 50_000


def test_import_and_parse_without_lark() -> None:
    script = (
        "import sys, grammar\n"
        "grammar.load_parser().parse('RUN --mount=type=cache,target=/x make', 'instruction')\n"
        "grammar.load_parser().parse('[\"a\", {\"b\": [1, true]}]', 'exec_form')\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'lark'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_read_tables_compiles_in_memory_when_stale(tmp_path: Path) -> None:
    edited = tmp_path / "dockerfile.lark"
    edited.write_bytes(GRAMMAR_PATH.read_bytes() + b"\n// an edit\n")
    stale = tmp_path / "dockerfile.tables.json"
    stale.write_bytes(TABLES_PATH.read_bytes())
    tables = grammar._read_tables(edited, stale)
    assert tables["grammar_digest"] == grammar.runtime.grammar_digest(
        edited.read_bytes().decode("utf-8")
    )
    assert stale.read_bytes() == TABLES_PATH.read_bytes()
    parser = TableParser.from_tables(tables)
    assert parser.parse("RUN x", "instruction").rule == "instruction"


def test_read_tables_compiles_in_memory_when_missing(tmp_path: Path) -> None:
    tables = grammar._read_tables(GRAMMAR_PATH, tmp_path / "missing.json")
    assert tables == json.loads(TABLES_PATH.read_text(encoding="utf-8"))
    assert not (tmp_path / "missing.json").exists()


def test_exported_members() -> None:
    exported = {name for name in dir(grammar) if not name.startswith("_")}
    assert set(grammar.__all__) <= exported
    assert set(grammar.__all__) == {
        "GRAMMAR_PATH",
        "TABLES_PATH",
        "GrammarSyntaxError",
        "TableParser",
        "Token",
        "Tree",
        "load_parser",
    }
