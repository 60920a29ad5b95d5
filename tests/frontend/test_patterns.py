"""Tests for builder/frontend/patterns.py: globs, trimming and replacing as BuildKit does them."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import PybuildError
from builder.frontend import patterns


def test_public_names_are_exactly_the_shell_lexers_needs() -> None:
    assert sorted(patterns.__all__) == ["PatternError", "replace", "trim"]
    assert all(hasattr(patterns, name) for name in patterns.__all__)


def test_pattern_error_is_left_for_the_caller_to_wrap() -> None:
    # It names no word or line, so it must not reach the CLI as a PybuildError.
    assert issubclass(patterns.PatternError, ValueError)
    assert not issubclass(patterns.PatternError, PybuildError)


# --- trim ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "pattern", "from_end", "longest", "expected"),
    [
        ("/a/b/c", "*/", False, False, "a/b/c"),
        ("/a/b/c", "*/", False, True, "c"),
        ("/a/b/c", "/*", True, False, "/a/b"),
        ("/a/b/c", "/*", True, True, ""),
        ("abc", "?", False, False, "bc"),
        ("abc", "??", True, False, "a"),
        ("abc", "x", False, False, "abc"),
        ("abc", "", False, True, "abc"),
        ("abc", "*", False, False, "abc"),
        ("abc", "*", False, True, ""),
        ("a.tar.gz", ".tar.gz", True, False, "a"),
    ],
)
def test_trim_removes_the_shortest_or_longest_match_at_either_end(
    value: str, pattern: str, from_end: bool, longest: bool, expected: str
) -> None:
    assert patterns.trim(value, pattern, from_end=from_end, longest=longest) == expected


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [
        ("**x", "\\*", "*x"),
        ("???y", "?\\?", "?y"),
        ("\\x", "\\\\", "x"),
        ("a}bc", "a\\}b", "c"),  # "\}" got past the ${…} reader; the escape is dropped
        ("a/bc", "a\\/b", "c"),
        ("[ab]c", "[ab]", "c"),  # no bracket expressions in BuildKit: "[" is literal
        ("ac", "[ab]", "ac"),
    ],
)
def test_trim_pattern_escapes_and_literal_brackets(value: str, pattern: str, expected: str) -> None:
    assert patterns.trim(value, pattern, from_end=False, longest=False) == expected


def test_trim_from_end_keeps_escape_pairs_in_order_when_reversing() -> None:
    assert patterns.trim("a***yy*", "\\**\\*", from_end=True, longest=True) == "a"
    assert patterns.trim("xa*c", "a\\*c", from_end=True, longest=False) == "x"


def test_wildcards_stop_at_a_newline() -> None:
    # "*" and "?" become the regexp ".", which does not match a newline.
    assert patterns.trim("ab\ncd", "*", from_end=False, longest=True) == "\ncd"
    assert patterns.trim("ab\ncd", "*", from_end=True, longest=True) == "ab\n"
    assert patterns.trim("\nb", "?", from_end=False, longest=False) == "\nb"


def test_leading_byte_order_mark_of_a_pattern_is_dropped() -> None:
    assert patterns.trim("ab", "\ufeffa", from_end=False, longest=False) == "b"
    assert patterns.trim("a\ufeffb", "a\ufeff", from_end=False, longest=False) == "b"


def test_an_invalid_byte_is_one_character_and_suffix_trimming_reads_it_as_u_fffd() -> None:
    assert patterns.trim("\udcffb", "?", from_end=False, longest=False) == "b"
    assert patterns.trim("\udcffb", "a", from_end=False, longest=False) == "\udcffb"
    # BuildKit reverses the value as runes for "%", so the byte comes back as U+FFFD.
    assert patterns.trim("a\udcffb", "b", from_end=True, longest=False) == "a\ufffd"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "from_end", "message"),
    [
        ("\\x", False, "invalid pattern (\\x) in substitution: invalid escape '\\x'"),
        ("a\\q", False, "invalid pattern (a\\q) in substitution: invalid escape '\\q'"),
        ("\\", False, "invalid pattern (\\) in substitution: invalid escape '\\\ufffd'"),
        # "%" works on the reversed pattern, and BuildKit's message quotes that.
        ("a\\x", True, "invalid pattern (\\xa) in substitution: invalid escape '\\x'"),
    ],
)
def test_bad_escapes_fail_with_buildkits_messages(
    pattern: str, from_end: bool, message: str
) -> None:
    with pytest.raises(patterns.PatternError) as caught:
        patterns.trim("value", pattern, from_end=from_end, longest=False)
    assert str(caught.value) == message


def test_bad_patterns_fail_even_against_an_empty_value() -> None:
    with pytest.raises(patterns.PatternError):
        patterns.trim("", "\\x", from_end=False, longest=True)
    for every in (False, True):
        with pytest.raises(patterns.PatternError):
            patterns.replace("", "\\x", "y", every=every)


# --- replace ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "replacement", "every", "expected"),
    [
        ("o", "0", False, "f0o/boo"),
        ("o", "0", True, "f00/b00"),
        ("o*", "_", False, "f_"),
        ("?", ".", True, "......."),
        ("x", "y", False, "foo/boo"),
        ("/", "-", True, "foo-boo"),
        ("#", "x", False, "foo/boo"),  # no anchors: "#" is a literal that is not there
        ("o", "", True, "f/b"),
        ("", "<>", False, "<>foo/boo"),
        ("*", "x", True, "x"),  # Go skips the empty match at the end of a match
    ],
)
def test_replace_first_or_every_leftmost_match(
    pattern: str, replacement: str, every: bool, expected: str
) -> None:
    assert patterns.replace("foo/boo", pattern, replacement, every=every) == expected


def test_replace_every_empty_match_inserts_between_characters() -> None:
    assert patterns.replace("ab", "", "-", every=True) == "-a-b-"


def test_replace_every_across_newlines() -> None:
    assert patterns.replace("a\nb", "*", "x", every=True) == "x\nx"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("[$0]", "f[o][o]"),
        ("[${0}]", "f[o][o]"),
        ("$$", "f$$"),
        ("<$1>", "f<><>"),  # a well-formed name that is no group gives nothing
        ("<${x}>", "f<><>"),
        ("<$0x>", "f<><>"),  # the name is "0x", not "0"
        ("<$한>", "f<><>"),
        ("${0", "f${0${0"),  # a "$" that starts no reference stays
        ("$", "f$$"),
        ("$}", "f$}$}"),
        ("${}", "f${}${}"),
        ("a$-b", "fa$-ba$-b"),
    ],
)
def test_replace_every_expands_the_replacement_as_a_go_template(
    template: str, expected: str
) -> None:
    assert patterns.replace("foo", "o", template, every=True) == expected


def test_replace_first_inserts_the_replacement_as_it_is() -> None:
    assert patterns.replace("foo", "o", "[$0]$$", every=False) == "f[$0]$$o"


# --- robustness ------------------------------------------------------------------------------


def _trim_longest_suffix(value: str) -> str:
    return patterns.trim(value, "*a" * 40 + "*b", from_end=True, longest=True)


def _trim_shortest_prefix(value: str) -> str:
    return patterns.trim(value, "*a" * 40 + "*b", from_end=False, longest=False)


def _replace_every_star_run(value: str) -> str:
    return patterns.replace(value, "*a" * 30 + "*", "y", every=True)


def _replace_every_long_any_run(value: str) -> str:
    return patterns.replace(value, "?" * 200 + "*b", "y", every=True)


@pytest.mark.parametrize(
    "operation",
    [
        _trim_longest_suffix,
        _trim_shortest_prefix,
        _replace_every_star_run,
        _replace_every_long_any_run,
    ],
)
def test_patterns_that_backtrack_exponentially_in_a_regexp_finish_fast(
    operation: Callable[[str], str],
) -> None:
    started = time.perf_counter()
    operation("a" * 600)
    assert time.perf_counter() - started < 2.0


# --- the glob matcher against Python's regexp engine ------------------------------------------
# BuildKit compiles a glob to a Go regexp and takes the leftmost-first match.  Python's re
# makes the same choices for these regexps, so on small inputs (where its backtracking is
# cheap) it is an independent reference for the matcher.

SMALL_PATTERN = st.text(alphabet=st.sampled_from(list("ab.**??")), max_size=7)
SMALL_VALUE = st.text(alphabet=st.sampled_from(list("ab.\n")), max_size=14)


def _glob_regex(pattern: str, *, greedy: bool) -> re.Pattern[str]:
    star = ".*" if greedy else ".*?"
    parts = [star if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts))


def _reference_trim(value: str, pattern: str, *, from_end: bool, longest: bool) -> str:
    if from_end:
        value, pattern = value[::-1], pattern[::-1]
    found = _glob_regex(pattern, greedy=longest).match(value)
    rest = value[found.end() :] if found else value
    return rest[::-1] if from_end else rest


def _reference_replace_all(value: str, pattern: str, replacement: str) -> str:
    """Go's ReplaceAllString loop on Python's re (whose own sub differs on empty matches)."""
    regex = _glob_regex(pattern, greedy=True)
    out, last_end, search_from = [], 0, 0
    while search_from <= len(value):
        found = regex.search(value, search_from)
        if found is None:
            break
        out.append(value[last_end : found.start()])
        if found.end() > last_end or found.start() == 0:
            out.append(replacement)
        last_end = found.end()
        search_from = max(search_from + 1, found.end())
    out.append(value[last_end:])
    return "".join(out)


@settings(max_examples=500, database=None, deadline=None)
@given(value=SMALL_VALUE, pattern=SMALL_PATTERN)
def test_trimming_agrees_with_a_regexp_engine(value: str, pattern: str) -> None:
    for from_end in (False, True):
        for longest in (False, True):
            expected = _reference_trim(value, pattern, from_end=from_end, longest=longest)
            assert patterns.trim(value, pattern, from_end=from_end, longest=longest) == expected


@settings(max_examples=500, database=None, deadline=None)
@given(value=SMALL_VALUE, pattern=SMALL_PATTERN, replacement=st.sampled_from(["", "x", "yy"]))
def test_replacement_agrees_with_a_regexp_engine(
    value: str, pattern: str, replacement: str
) -> None:
    found = _glob_regex(pattern, greedy=True).search(value)
    first = value if found is None else value[: found.start()] + replacement + value[found.end() :]
    assert patterns.replace(value, pattern, replacement, every=False) == first
    expected_all = _reference_replace_all(value, pattern, replacement)
    assert patterns.replace(value, pattern, replacement, every=True) == expected_all
