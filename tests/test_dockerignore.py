"""builder/dockerignore.py: moby's ignore-file reading, patternmatcher and Go's filepath.Match."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.dockerignore import (
    BadPattern,
    IgnoreFileError,
    IgnoreRules,
    clean_path,
    glob_match,
    load_ignore,
    read_ignore_file,
)

# moby/patternmatcher ignorefile_test.go, plus the edges of its line handling.
READ_CASES = [
    (
        b"test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ",
        ("test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"),
    ),
    (b"\xef\xbb\xbf*.md\n", ("*.md",)),
    (b"a\r\nb\r\n", ("a", "b")),
    (b"  # not a comment\n", ("# not a comment",)),
    (b"#comment\n   \n\t\n", ()),
    (b"  spaced/  \n", ("spaced",)),
    (b"foo/../bar\n./baz\nx//y/\n", ("bar", "baz", "x/y")),
    (b"/\n", ("/",)),
    (b"!/a/b\n", ("!a/b",)),
]


@pytest.mark.parametrize(("data", "expected"), READ_CASES)
def test_read_ignore_file_follows_readall(data: bytes, expected: tuple[str, ...]) -> None:
    assert read_ignore_file(data) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "."),
        ("a//b", "a/b"),
        ("/../a", "/a"),
        ("../a/..", ".."),
        ("a/./b/", "a/b"),
        ("//x", "/x"),
        ("a/../../b", "../b"),
    ],
)
def test_clean_path_is_go_path_clean(path: str, expected: str) -> None:
    assert clean_path(path) == expected


# (patterns, path, excluded?)  The first block is the Dockerfile reference's examples.
MATCH_CASES = [
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/temp", True),
    (["*/temp*"], "temp", False),
    (["*/temp*"], "a/b/temp", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["temp?"], "tempa", True),
    (["temp?"], "tempab", False),
    (["**/*.go"], "main.go", True),
    (["**/*.go"], "a/b/c.go", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "other.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-x.md", False),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
    (["/foo/bar"], "foo/bar", True),
    (["foo/bar"], "foo/bar/baz", True),
    (["foo/bar"], "bar", False),
    # a pattern also excludes what is inside a matched directory
    (["foo"], "foo/x/y", True),
    (["foo"], "xfoo", False),
    (["*"], "anything/below", True),
    (["*", "!keep"], "keep", False),
    (["*", "!keep"], "keep/inside", False),
    (["*", "!keep/inside"], "keep/inside", False),
    (["*", "!keep/inside"], "keep/other", True),
    # ** forms (patternmatcher's exact / prefix / suffix / regexp kinds)
    (["**"], "a/b/c", True),
    (["foo/**"], "foo", False),
    (["foo/**"], "foo/x", True),
    (["foo/**"], "foox/x", False),
    (["**/foo"], "foo", True),
    (["**/foo"], "a/b/foo", True),
    (["**/foo"], "afoo", False),
    (["**foo"], "afoo", True),
    (["docs/**/*.md"], "docs/a.md", True),
    (["docs/**/*.md"], "docs/x/y/a.md", True),
    (["docs/**/*.md"], "other/docs/a.md", False),
    (["a**b"], "ab", True),
    (["a**b"], "ax/b", True),
    (["a**b"], "axb", False),
    (["a**"], "abc/def", True),
    (["**/x/**"], "a/x/b", True),
    # * and ? never cross "/", classes as filepath.Match
    (["*.txt"], "dir/a.txt", False),
    (["a?c"], "a/c", False),
    (["[a-c]?"], "b1", True),
    (["[a-c]?"], "d1", False),
    (["[^a]x"], "bx", True),
    (["[^a]x"], "ax", False),
    (["\\*"], "*", True),
    (["\\*"], "a", False),
    (["a.b"], "axb", False),
    (["f(o)+"], "f(o)+", True),
    (["$x{1}"], "$x{1}", True),
    # cleaning
    (["foo/../bar"], "bar", True),
    (["./baz/"], "baz", True),
    (["  padded  "], "padded", True),
    (["x", "!x"], "x", False),
]


@pytest.mark.parametrize(("patterns", "path", "expected"), MATCH_CASES)
def test_matches_like_patternmatcher(patterns: list[str], path: str, expected: bool) -> None:
    rules = IgnoreRules.from_patterns(read_ignore_file("\n".join(patterns).encode()))
    assert rules.matches(path) is expected


@pytest.mark.parametrize(("patterns", "path", "expected"), MATCH_CASES)
def test_walk_matching_agrees_with_parent_matching(
    patterns: list[str], path: str, expected: bool
) -> None:
    rules = IgnoreRules.from_patterns(read_ignore_file("\n".join(patterns).encode()))
    info: tuple[bool, ...] = ()
    parts = path.split("/")
    result = False
    for depth in range(1, len(parts) + 1):
        result, info = rules.match_with_parent("/".join(parts[:depth]), info)
    assert result is expected


def test_root_is_never_excluded() -> None:
    assert IgnoreRules.from_patterns(["*", "**"]).matches(".") is False


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["!"], 'illegal exclusion pattern: "!"'),
        (["["], "syntax error in pattern"),
        (["a\\"], "syntax error in pattern"),
        (["[]a]"], "syntax error in pattern"),
        (["ok", "[x-]"], "syntax error in pattern"),
    ],
)
def test_invalid_patterns_are_refused(patterns: list[str], message: str) -> None:
    with pytest.raises(IgnoreFileError, match=message.replace("[", r"\[")):
        IgnoreRules.from_patterns(patterns)


@pytest.mark.parametrize(
    ("patterns", "directory", "expected"),
    [
        (["foo"], "foo", False),
        (["foo", "!foo/bar"], "foo", True),
        (["foo", "!foo/bar/*"], "foo", True),
        (["foo", "!other/bar"], "foo", False),
        (["foo", "!**/keep"], "foo", True),
        (["foo", "!fo*/x"], "foo", True),
    ],
)
def test_excluded_directory_is_walked_only_if_an_exception_may_reach_inside(
    patterns: list[str], directory: str, expected: bool
) -> None:
    assert IgnoreRules.from_patterns(patterns).may_include_inside(directory) is expected


# Go's path/filepath match_test.go cases; None means ErrBadPattern.
GLOB_CASES = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("[]a]", "]", None),
    ("[-]", "-", None),
    ("[x-]", "x", None),
    ("[x-]", "-", None),
    ("[x-]", "z", None),
    ("[-x]", "x", None),
    ("[-x]", "-", None),
    ("[-x]", "a", None),
    ("\\", "a", None),
    ("[a-b-c]", "a", None),
    ("[", "a", None),
    ("[^", "a", None),
    ("[^bc", "a", None),
    ("a[", "a", None),
    ("a[", "ab", None),
    ("a[", "x", None),
    ("a/b[", "x", None),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), GLOB_CASES)
def test_glob_match_is_go_filepath_match(pattern: str, name: str, expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(BadPattern):
            glob_match(pattern, name)
    else:
        assert glob_match(pattern, name) is expected


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    (tmp_path / "build").mkdir()
    dockerfile = tmp_path / "build" / "app.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    (tmp_path / "build" / "app.Dockerfile.dockerignore").write_text("b\n")
    rules = load_ignore(tmp_path, dockerfile)
    assert (rules.matches("a"), rules.matches("b")) == (False, True)
    plain = load_ignore(tmp_path, tmp_path / "Dockerfile")
    assert (plain.matches("a"), plain.matches("b")) == (True, False)


def test_no_ignore_file_excludes_nothing(tmp_path: Path) -> None:
    rules = load_ignore(tmp_path, None)
    assert not rules
    assert rules.matches("Dockerfile") is False


def test_dockerfile_and_ignore_file_are_excluded_like_any_path(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    rules = load_ignore(tmp_path, tmp_path / "Dockerfile")
    assert rules.matches("Dockerfile") and rules.matches(".dockerignore")


def test_invalid_ignore_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("ok\n[\n")
    with pytest.raises(IgnoreFileError, match=r"\.dockerignore"):
        load_ignore(tmp_path, None)
