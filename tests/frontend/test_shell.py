"""Tests for builder/frontend/shell.py: BuildKit's own expansion data, then each rule alone.

How a pattern matches is tested in test_patterns.py; the pattern cases here check
that the lexer reads ``${V#p}``, ``${V/p/r}``… and hands the pattern over intact.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import DockerfileError, ExpansionError
from builder.frontend.shell import ExpansionResult, ShellLexer

# tests/conftest.py was already taken when this module was written, so the path is
# spelled here: shared/ sits beside the repo, in a checkout as in CI's fresh clone.
CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
SHELL_DATA = CONFORMANCE / "buildkit" / "shell"

LEXER = ShellLexer()


# --- BuildKit's conformance data -------------------------------------------------------

ENV_VAR_TEST_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_var_cases() -> list[object]:
    """envVarTest: ``PLATFORM|input|expected``; the A (all) and U (Unix) lines apply here."""
    cases: list[object] = []
    lines = (SHELL_DATA / "envVarTest").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("|")
        assert len(fields) == 3, f"envVarTest line {number} has {len(fields)} fields"
        platform, source, expected = (field.strip() for field in fields)
        if "A" in platform or "U" in platform:
            cases.append(pytest.param(source, expected, id=f"line{number}:{source}"))
    return cases


def _words_cases() -> list[object]:
    """wordsTest: ``ENV name=value`` lines build the environment; others are ``input | w1,w2``."""
    cases: list[object] = []
    env: dict[str, str] = {}
    lines = (SHELL_DATA / "wordsTest").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("ENV "):
            name, _, value = line[len("ENV ") :].lstrip(" ").partition("=")
            env[name] = value  # trailing spaces are part of the value
            continue
        fields = line.split("|")
        assert len(fields) == 2, f"wordsTest line {number} has {len(fields)} fields"
        source = fields[0].strip()
        expected = fields[1].lstrip(" ").split(",")
        cases.append(pytest.param(source, dict(env), expected, id=f"line{number}:{source}"))
    return cases


ENV_VAR_CASES = _env_var_cases()
WORDS_CASES = _words_cases()


def test_conformance_data_is_all_read() -> None:
    # Guards the parsers above: an empty parametrization would pass vacuously.
    assert len(ENV_VAR_CASES) > 200
    assert len(WORDS_CASES) > 20


@pytest.mark.parametrize(("source", "expected"), ENV_VAR_CASES)
def test_env_var_conformance(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ExpansionError):
            LEXER.process_word(source, ENV_VAR_TEST_ENV)
    else:
        assert LEXER.process_word(source, ENV_VAR_TEST_ENV) == expected


@pytest.mark.parametrize(("source", "env", "expected"), WORDS_CASES)
def test_words_conformance(source: str, env: dict[str, str], expected: list[str]) -> None:
    if expected == ["error"]:
        with pytest.raises(ExpansionError):
            LEXER.process_words(source, env)
    else:
        assert LEXER.process_words(source, env) == expected


# --- plain references --------------------------------------------------------------------


def expand(word: str, env: dict[str, str] | None = None, **options: Any) -> str:
    """Expand with a lexer made from ``options`` (ShellLexer's fields)."""
    return ShellLexer(**options).process_word(word, env or {})


def error_of(word: str, env: dict[str, str] | None = None, **options: Any) -> str:
    with pytest.raises(ExpansionError) as caught:
        expand(word, env, **options)
    return str(caught.value)


def test_dollar_name_expands_set_empty_and_unset() -> None:
    env = {"A": "x", "E": ""}
    assert expand("[$A][$E][$U]", env) == "[x][][]"
    assert expand("[${A}][${E}][${U}]", env) == "[x][][]"


def test_name_is_letters_digits_underscore_and_case_sensitive() -> None:
    env = {"a_1": "low", "A_1": "up", "한국": "k"}
    assert expand("$a_1-$A_1-$한국.", env) == "low-up-k."
    assert expand("$a_1x", env) == ""  # the name runs on: a_1x is unset


def test_dollar_before_non_name_is_literal() -> None:
    assert expand("$.") == "$."
    assert expand("a$") == "a$"
    assert expand("$ x") == "$ x"
    assert expand("$'q'") == "$q"  # the quote is processed after the plain "$"


def test_positional_and_special_parameters_are_never_set() -> None:
    env = {"PWD": "/home"}
    assert expand("[$1][$999x][${001}][$@@][$*][$#][$?][$-][$$][$!][$0]", env) == (
        "[][x][][@][][][][][][][]"
    )
    assert expand("${1:-one} ${#:-hash} ${@:+no}", env) == "one hash "
    result = LEXER.process_word_with_matches("$1$@$0", env)
    assert result.unmatched == frozenset({"1", "@", "0"})


def test_environment_values_are_not_rescanned() -> None:
    env = {"A": "$B 'q' \\x", "B": "no"}
    assert expand("$A", env) == "$B 'q' \\x"


# --- ${VAR op word} ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("${SET:-d}", "v"),
        ("${EMPTY:-d}", "d"),
        ("${UNSET:-d}", "d"),
        ("${SET-d}", "v"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${SET:+a}", "a"),
        ("${EMPTY:+a}", ""),
        ("${UNSET:+a}", ""),
        ("${SET+a}", "a"),
        ("${EMPTY+a}", "a"),
        ("${UNSET+a}", ""),
        ("${SET:?m}", "v"),
        ("${SET?m}", "v"),
        ("${EMPTY?m}", ""),
    ],
)
def test_default_and_alternative_forms_tell_empty_from_unset(word: str, expected: str) -> None:
    assert expand(word, {"SET": "v", "EMPTY": ""}) == expected


def test_required_forms_fail_with_buildkits_messages() -> None:
    env = {"EMPTY": "", "ARG": "x"}
    assert (
        error_of("${UNSET?}", env)
        == 'failed to process "${UNSET?}": UNSET: is not allowed to be unset'
    )
    assert error_of("${UNSET:?}", env) == (
        'failed to process "${UNSET:?}": UNSET: is not allowed to be unset'
    )
    assert error_of("${EMPTY:?}", env) == (
        'failed to process "${EMPTY:?}": EMPTY: is not allowed to be empty'
    )
    assert (
        error_of("${UNSET?say $ARG}", env) == 'failed to process "${UNSET?say $ARG}": UNSET: say x'
    )


def test_nested_expansions_in_words() -> None:
    env = {"B": "bee", "E": ""}
    assert expand("${A:-${B}}", env) == "bee"
    assert expand("${A:-${E:-${C:-deep}}}!", env) == "deep!"
    assert expand("${B:+<${B}>}", env) == "<bee>"
    assert expand("${A:-\"q u\" '$B' \\}}", env) == "q u $B }"


def test_closing_brace_is_the_first_unquoted_one() -> None:
    assert expand("${A:-b {c}d}") == "b {cd}"
    assert expand('${A:-"}"}') == "}"


@pytest.mark.parametrize(
    ("word", "value", "expected"),
    [
        ("${V#*/}", "/a/b/c", "a/b/c"),
        ("${V##*/}", "/a/b/c", "c"),
        ("${V%/*}", "/a/b/c", "/a/b"),
        ("${V%%/*}", "/a/b/c", ""),
        ("${V#?}", "abc", "bc"),
        ("${V%??}", "abc", "a"),
        ("${V#x}", "abc", "abc"),
        ("${V#}", "abc", "abc"),
        ("${V#*}", "abc", "abc"),
        ("${V##*}", "abc", ""),
        ("${V%.tar.gz}", "a.tar.gz", "a"),
        ("${V#\\*}", "**x", "*x"),
        ("${V##\\**}", "**x", ""),
        ("${V%%\\**\\*}", "a***yy*", "a"),
        ("${V#?\\?}", "???y", "?y"),
        ("${V#a\\}b}", "a}bc", "c"),
        ("${V#\\\\}", "\\x", "x"),
        ("${V#[ab]}", "[ab]c", "c"),  # no bracket expressions in BuildKit: "[" is literal
        ("${V#[ab]}", "ac", "ac"),
        ("${V##*}", "ab\ncd", "\ncd"),  # "*" is the regexp ".*", which stops at a newline
        ("${V%%*}", "ab\ncd", "ab\n"),
        ("${V#$P}", "xxyy", "yy"),  # "##" can come from an expansion: P is "#*x"
    ],
)
def test_prefix_and_suffix_trimming(word: str, value: str, expected: str) -> None:
    assert expand(word, {"V": value, "P": "#*x"}) == expected


def test_trimming_an_unset_variable_gives_empty() -> None:
    assert expand("[${U#*}][${U%%x}]") == "[][]"


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("${V/o/0}", "f0o/boo"),
        ("${V//o/0}", "f00/b00"),
        ("${V/o*/_}", "f_"),
        ("${V//?/.}", "......."),
        ("${V/x/y}", "foo/boo"),
        ("${V//\\//-}", "foo-boo"),
        ("${V/#/x}", "foo/boo"),  # no anchors: "#" is a literal that is not there
        ("${V///}", "foo/boo"),
        ("${V//o/}", "f/b"),
        ("${V/$EMPTY/<>}", "<>foo/boo"),
        ("${V//*/x}", "x"),  # Go skips the empty match at the end of a match
        ("${V//o/'[$0]'}", "f[o][o]/b[o][o]"),  # "//" applies Go's Expand: $0 is the match
        ("${V//o/'$$'}", "f$$/b$$"),
        ("${V/o/'[$0]'}", "f[$0]o/boo"),  # "/" inserts the replacement as it is
        ("${V//o/\\x}", "f\\x\\x/b\\x\\x"),  # the replacement keeps its escapes
    ],
)
def test_pattern_replacement(word: str, expected: str) -> None:
    assert expand(word, {"V": "foo/boo", "EMPTY": ""}) == expected


def test_replacement_empty_pattern_replace_all_inserts_between_characters() -> None:
    assert expand("${V//$E/-}", {"V": "ab", "E": ""}) == "-a-b-"


def test_replacement_across_newlines() -> None:
    assert expand("${V//*/x}", {"V": "a\nb"}) == "x\nx"


# --- quotes and escapes ---------------------------------------------------------------------


def test_single_quotes_keep_everything() -> None:
    assert expand("'$A \\x \"q\"'", {"A": "no"}) == '$A \\x "q"'
    assert expand("a'b'c") == "abc"


def test_double_quotes_expand_and_escape_only_quote_dollar_escape() -> None:
    env = {"A": "v"}
    assert expand('"$A \\$A \\" \\\\ \\t \'x\'"', env) == "v $A \" \\ \\t 'x'"


def test_escape_outside_quotes_takes_next_character_literally() -> None:
    assert expand("\\$A\\'\\\"\\t\\\\", {"A": "v"}) == "$A'\"t\\"


def test_escape_at_end_is_dropped() -> None:
    assert expand("abc\\") == "abc"
    assert expand("abc\\", raw_escapes=True) == "abc\\"


def test_backtick_escape_directive() -> None:
    env = {"A": "v"}
    assert expand("`$A", env, escape="`") == "$A"
    assert expand("C:\\dir\\$A", env, escape="`") == "C:\\dir\\v"
    assert expand('"a`"b`$A"', env, escape="`") == 'a"b$A'
    assert expand("a`", escape="`") == "a"
    assert ShellLexer(escape="`").process_words("a` b c", {}) == ["a b", "c"]


def test_unterminated_quotes_fail_with_buildkits_messages() -> None:
    assert error_of("'abc") == (
        'failed to process "\'abc": '
        "unexpected end of statement while looking for matching single-quote"
    )
    assert error_of('"abc\\"') == (
        'failed to process "\\"abc\\\\\\"": '
        "unexpected end of statement while looking for matching double-quote"
    )


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${", "syntax error: missing '}'"),
        ("${}", "syntax error: bad substitution"),
        ("${:-x}", "syntax error: bad substitution"),
        ("${{a}", "syntax error: bad substitution"),
        ("${a:-b", "syntax error: missing '}'"),
        ("${a:-'b}", "syntax error: missing '}'"),
        ("${a:", "syntax error: missing '}'"),
        ("${a", "unsupported modifier (\ufffd) in substitution"),  # as BuildKit prints it
        ("${a=b}", "unsupported modifier (=) in substitution"),
        ("${a:=b}", "unsupported modifier (:=) in substitution"),
        ("${a:#b}", "unsupported modifier (:#) in substitution"),
        ("${a.}", "unsupported modifier (.) in substitution"),
        ("${a/b}", "syntax error: missing '/' in ${}"),
        ("${a/b/c", "syntax error: missing '}'"),
        ("${V#\\x}", "invalid pattern (\\x) in substitution: invalid escape '\\x'"),
        ("${V%a\\x}", "invalid pattern (\\xa) in substitution: invalid escape '\\x'"),
        ("${V#$B}", "invalid pattern (\\) in substitution: invalid escape '\\\ufffd'"),
        ("${a:-${b?oops}}", "b: oops"),
    ],
)
def test_syntax_errors(word: str, message: str) -> None:
    quoted = '"' + word.replace("\\", "\\\\") + '"'  # Go's %q; these words have no '"'
    assert error_of(word, {"V": "v", "B": "\\"}) == f"failed to process {quoted}: {message}"


def test_expansion_error_is_a_dockerfile_error() -> None:
    with pytest.raises(DockerfileError):
        LEXER.process_word("${", {})


def test_leading_byte_order_mark_is_dropped() -> None:
    assert expand("\ufeffa\ufeff") == "a\ufeff"


# --- word splitting --------------------------------------------------------------------------


def test_words_split_on_unquoted_space_and_expansions_only() -> None:
    env = {"S": " a  b ", "E": ""}
    assert LEXER.process_words("x$S'y z'", env) == ["x", "a", "b", "y z"]
    assert LEXER.process_words('x"$S"y', env) == ["x a  b y"]
    assert LEXER.process_words("a\\ b\tc\nd", env) == ["a b", "c", "d"]
    assert LEXER.process_words("${E:-p q}", env) == ["p", "q"]


def test_words_drop_empty_quoted_words() -> None:
    # BuildKit emits only words with characters, unlike sh where "" is an empty argument.
    assert LEXER.process_words("a \"\" b ''", {}) == ["a", "b"]
    assert LEXER.process_words('""', {}) == []


def test_words_split_on_go_white_space_only() -> None:
    # U+001C is white space to Python's str.split but not to Go's unicode.IsSpace.
    assert LEXER.process_words("a\x1cb\u00a0c\u3000d", {}) == ["a\x1cb", "c", "d"]


def test_process_word_keeps_white_space() -> None:
    assert LEXER.process_word("  a  $S ", {"S": " b "}) == "  a   b  "


# --- options -----------------------------------------------------------------------------------


def test_raw_quotes_keep_quote_characters() -> None:
    assert expand("a'b'\"$A\"", {"A": "v"}, raw_quotes=True) == "a'b'\"v\""


def test_raw_escapes_keep_escape_characters() -> None:
    assert expand("\\$A\\x", {"A": "v"}, raw_escapes=True) == "\\$A\\x"
    # Quirk kept from BuildKit: inside double quotes an escape that escapes nothing
    # is written twice in raw mode.
    assert expand('"\\t\\""', raw_escapes=True) == '\\\\t\\"'


def test_skip_process_quotes_treats_quotes_as_text() -> None:
    assert expand("'$A' \"x", {"A": "v"}, skip_process_quotes=True) == "'v' \"x"


def test_skip_unset_env_keeps_references_to_unset_names() -> None:
    env = {"A": "v"}
    assert expand("$A $U ${U} ${U:-d} ${A:-d}", env, skip_unset_env=True) == "v $U ${U} ${U:-d} v"
    assert expand("${U?boom} ${U#*x}", env, skip_unset_env=True) == "${U?boom} ${U#*x}"
    # BuildKit writes "//" back with a single "/".
    assert expand("${U//a/b}", env, skip_unset_env=True) == "${U/a/b}"


def test_matched_and_unmatched_names() -> None:
    env = {"FOO": "x", "BAR": ""}
    result = LEXER.process_word_with_matches("${FOO:-a} ${BAR-b} ${BAZ:-$QUX} '$NOT'", env)
    assert result == ExpansionResult(
        word="x   $NOT", matched=frozenset({"FOO", "BAR"}), unmatched=frozenset({"BAZ", "QUX"})
    )
    assert LEXER.process_word_with_matches("plain", env) == ExpansionResult(
        "plain", frozenset(), frozenset()
    )


def test_lexer_is_a_frozen_value_with_a_checked_escape() -> None:
    with pytest.raises(FrozenInstanceError):
        LEXER.escape = "`"  # type: ignore[misc]
    with pytest.raises(ValueError, match="escape"):
        ShellLexer(escape="$")


# --- robustness ----------------------------------------------------------------------------------


def test_deep_nesting_does_not_hit_the_recursion_limit() -> None:
    depth = 5000
    assert expand("${A:-" * depth + "x" + "}" * depth) == "x"
    assert expand('"${A:-' * depth + "y" + '}"' * depth) == "y"


FUZZ_ALPHABET = st.sampled_from(
    list("$${}{}''\"\"\\\\``#%/*?[]:-+=!@ \n\tab_09") + ["한", "\u00a0", "\ufeff", "\udcff"]
)
FUZZ_ENV = st.dictionaries(
    st.sampled_from(["a", "b", "_", "1", "@", "한"]),
    st.text(alphabet=st.sampled_from(list("ab *?\\$#%/\n")), max_size=12),
    max_size=4,
)
FUZZ_SETTINGS = settings(
    max_examples=400,
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ_SETTINGS
@given(
    word=st.text(alphabet=FUZZ_ALPHABET, max_size=300),
    env=FUZZ_ENV,
    escape=st.sampled_from(["\\", "`"]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
def test_any_text_expands_or_raises_expansion_error(
    word: str, env: dict[str, str], escape: str, flags: tuple[bool, bool, bool, bool]
) -> None:
    lexer = ShellLexer(escape, *flags)
    try:
        result = lexer.process_word_with_matches(word, env)
    except ExpansionError:
        with pytest.raises(ExpansionError):
            lexer.process_words(word, env)
        return
    assert isinstance(result.word, str)
    assert lexer.process_word(word, env) == result.word
    assert all(isinstance(w, str) and w for w in lexer.process_words(word, env))
    assert result.matched <= set(env)
    assert not result.unmatched & set(env)


@FUZZ_SETTINGS
@given(
    name=st.sampled_from(["a", "b"]),
    operator=st.sampled_from(["#", "##", "%", "%%", "/", "//", ":-", "-", ":+", "+", ":?", "?"]),
    body=st.text(alphabet=FUZZ_ALPHABET, max_size=60),
    env=FUZZ_ENV,
)
def test_any_substitution_body_expands_or_raises_expansion_error(
    name: str, operator: str, body: str, env: dict[str, str]
) -> None:
    try:
        LEXER.process_word("${" + name + operator + body + "}", env)
    except ExpansionError:
        pass
