"""Docker's ignore-file rules: reading ``.dockerignore`` and matching paths against it.

The rules are those of moby/patternmatcher (``ignorefile.ReadAll`` and
``PatternMatcher``) as BuildKit's context transfer (tonistiigi/fsutil) uses
them, reimplemented here:

* A line whose first byte is ``#`` is a comment (``  # x`` is a pattern).
  A UTF-8 byte-order mark on the first line is dropped.  Each pattern is
  trimmed of white space, cleaned like Go's ``filepath.Clean`` and loses a
  leading ``/``; blank lines are skipped.
* ``!`` starts an exception; the last pattern that matches a path decides.
* ``*`` and ``?`` never match ``/``; ``**`` matches any number of
  directories, including none; ``[...]`` is a class as in ``filepath.Match``.
* A path is also excluded when one of its parent directories is; an
  exception can re-include something inside an excluded directory, so such
  a directory is still walked (:meth:`IgnoreRules.may_include_inside`).

Where Docker compiles a pattern to a Go regular expression, this module
matches with ``filepath.Match`` semantics instead, which agree except for
patterns nobody writes on purpose: ``\\n``-style escapes (a regexp escape in
Docker, the literal letter here) and POSIX classes such as ``[[:alpha:]]``.

BuildKit excludes the Dockerfile and the ignore file like any other path
when they match: both are still read by the builder (they travel separately
from the context), but ``COPY``/``ADD`` do not see them.  The classic
builder's special case that re-added them is gone, so there is none here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from builder.errors import IgnoreFileError

__all__ = [
    "BadPattern",
    "IgnoreFileError",
    "IgnoreRules",
    "MatchInfo",
    "clean_path",
    "glob_match",
    "load_ignore",
    "read_ignore_file",
]

MatchInfo = tuple[bool, ...]
"""Per pattern, whether it matched a parent directory (fsutil's MatchInfo)."""

_BOM = b"\xef\xbb\xbf"
_NO_PARENT: MatchInfo = ()


class BadPattern(ValueError):
    """A glob that Go's ``filepath.Match`` refuses; the message is Go's."""

    def __init__(self) -> None:
        super().__init__("syntax error in pattern")


def clean_path(path: str) -> str:
    """Go's ``path.Clean``: one slash between names, no ``.``, ``..`` folded, "." if empty."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_ignore_file(data: bytes) -> tuple[str, ...]:
    """The patterns of an ignore file, as moby's ``ignorefile.ReadAll`` returns them."""
    data = data.removeprefix(_BOM)
    patterns: list[str] = []
    # bufio.ScanLines: split on \n, drop one trailing \r.
    for raw in data.split(b"\n"):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.startswith(b"#"):
            continue
        pattern = raw.decode("utf-8", "surrogateescape").strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return tuple(patterns)


def load_ignore(context_dir: Path, dockerfile_path: Path | None) -> IgnoreRules:
    """The rules for a build: ``<Dockerfile>.dockerignore`` beside the Dockerfile, else
    ``<context>/.dockerignore``, else none.

    Like BuildKit, the Dockerfile-specific file wins outright (the two are not
    merged), and neither the Dockerfile nor the ignore file is exempt.
    """
    candidates = []
    if dockerfile_path is not None:
        candidates.append(dockerfile_path.with_name(dockerfile_path.name + ".dockerignore"))
    candidates.append(context_dir / ".dockerignore")
    for candidate in candidates:
        try:
            data = candidate.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:
            raise IgnoreFileError(f"reading {candidate}: {err.strerror}") from err
        try:
            return IgnoreRules.from_patterns(read_ignore_file(data))
        except IgnoreFileError as err:
            raise IgnoreFileError(f"{candidate}: {err}") from err
    return IgnoreRules.from_patterns(())


class _Kind(Enum):
    EXACT = 1
    PREFIX = 2
    SUFFIX = 3
    REGEXP = 4


@dataclass(frozen=True, slots=True)
class _Pattern:
    """One compiled pattern; ``text`` is the cleaned pattern without its ``!``."""

    text: str
    exclusion: bool
    kind: _Kind
    regexp: re.Pattern[str] | None

    def matches(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None

    def without_trailing_glob(self) -> str:
        """fsutil's patternWithoutTrailingGlob: the directory part a pattern is anchored to."""
        text = self.text.removesuffix("/**")
        return text.removesuffix("/*")


@dataclass(frozen=True, slots=True)
class IgnoreRules:
    """Compiled ignore patterns, in file order; empty rules exclude nothing.

    ``only_prefix_exceptions`` is fsutil's ``onlyPrefixExcludeExceptions``:
    every exception is a plain path (perhaps ending in ``/*`` or ``/**``), so
    an excluded directory needs walking only if an exception lies inside it.
    """

    patterns: tuple[_Pattern, ...]
    has_exceptions: bool
    only_prefix_exceptions: bool

    @classmethod
    def from_patterns(cls, patterns: tuple[str, ...] | list[str]) -> IgnoreRules:
        """Compile as ``patternmatcher.New``: trim, clean, split off ``!``, check syntax."""
        compiled: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = clean_path(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise IgnoreFileError('illegal exclusion pattern: "!"')
                text = text[1:]
            try:
                glob_match(text, ".")
            except BadPattern as err:
                raise IgnoreFileError(f"invalid pattern {text!r}: {err}") from err
            compiled.append(_compile(text, exclusion))
        only_prefix = not any(
            p.exclusion and any(c in p.without_trailing_glob() for c in "*[]?^\\") for p in compiled
        )
        return cls(tuple(compiled), any(p.exclusion for p in compiled), only_prefix)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """Whether ``path`` (relative, slash-separated) is excluded, its parents included.

        This is ``MatchesOrParentMatches``: each pattern is tried against the
        path and against each of its parent directories.
        """
        path = clean_path(path)
        if path == ".":
            return False
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.matches(path)
            if not hit:
                hit = any(pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def match_with_parent(
        self, path: str, parent: MatchInfo = _NO_PARENT
    ) -> tuple[bool, MatchInfo]:
        """``MatchesUsingParentResults``: match ``path`` reusing its parent's per-pattern results.

        Walkers call this top-down, passing each directory's MatchInfo to its
        children; a pattern that matched a parent matches the child too.
        """
        matched = False
        info: list[bool] = []
        for index, pattern in enumerate(self.patterns):
            hit = bool(parent) and parent[index]
            if not hit:
                if pattern.exclusion != matched:
                    info.append(False)
                    continue
                hit = pattern.matches(path)
                if not hit and not parent:
                    parents = path.split("/")[:-1]
                    hit = any(
                        pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents))
                    )
            info.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, tuple(info)

    def may_include_inside(self, directory: str) -> bool:
        """Whether an excluded ``directory`` must still be walked for re-included paths.

        False only when fsutil would skip it: there are no exceptions, or every
        exception is a plain path outside the directory.
        """
        if not self.has_exceptions:
            return False
        if not self.only_prefix_exceptions:
            return True
        prefix = directory + "/"
        return any(
            (p.without_trailing_glob() + "/").startswith(prefix)
            for p in self.patterns
            if p.exclusion
        )


def _compile(text: str, exclusion: bool) -> _Pattern:
    """Classify a cleaned pattern exactly as patternmatcher's ``compile`` does."""
    kind = _Kind.EXACT
    regexp = "^"
    index = 0
    first = True
    length = len(text)
    while index < length:
        char = text[index]
        index += 1
        if char == "*":
            if index < length and text[index] == "*":
                index += 1
                if index < length and text[index] == "/":
                    index += 1
                if index >= length:
                    # "**" at the end matches everything below, as in .gitignore.
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        regexp += ".*"
                        kind = _Kind.REGEXP
                else:
                    regexp += "(?:.*/)?"
                    kind = _Kind.REGEXP
                if first:
                    kind = _Kind.SUFFIX
            else:
                regexp += "[^/]*"
                kind = _Kind.REGEXP
        elif char == "?":
            regexp += "[^/]"
            kind = _Kind.REGEXP
        elif char == "\\":
            if index < length:
                regexp += re.escape(text[index])
                index += 1
                kind = _Kind.REGEXP
            else:
                regexp += re.escape("\\")
        elif char == "[":
            class_text, index = _class_regexp(text, index)
            regexp += class_text
            kind = _Kind.REGEXP
        else:
            regexp += re.escape(char)
        first = False
    compiled = re.compile(regexp + r"\Z") if kind is _Kind.REGEXP else None
    return _Pattern(text, exclusion, kind, compiled)


def _class_regexp(text: str, index: int) -> tuple[str, int]:
    """A ``[...]`` class (opened just before ``index``) as a Python regexp class."""
    negated = index < len(text) and text[index] == "^"
    if negated:
        index += 1
    ranges: list[str] = []
    while True:
        if index < len(text) and text[index] == "]" and ranges:
            index += 1
            break
        low, index = _class_char(text, index)
        high = low
        if text[index] == "-":
            high, index = _class_char(text, index + 1)
        ranges.append(re.escape(low) + ("-" + re.escape(high) if high != low else ""))
    return ("[^" if negated else "[") + "".join(ranges) + "]", index


def _class_char(text: str, index: int) -> tuple[str, int]:
    # The pattern passed glob_match's syntax check, so no bounds check is needed.
    if text[index] == "\\":
        index += 1
    return text[index], index + 1


def glob_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` on Linux: ``*``/``?`` stop at ``/``, ``[...]`` classes, ``\\`` escapes.

    Raises :class:`BadPattern` for a malformed pattern even when the name
    does not match, as Go does since 1.16.
    """
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            # A trailing star matches the rest unless that crosses a "/".
            return "/" not in name
        rest = _match_chunk(chunk, name)
        if rest is not None and (rest == "" or pattern):
            name = rest
            continue
        if star:
            rest = _match_after_star(chunk, name, is_last=not pattern)
            if rest is not None:
                name = rest
                continue
        # No match: still report a syntax error anywhere in the rest.
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return name == ""


def _match_after_star(chunk: str, name: str, *, is_last: bool) -> str | None:
    """Let the star eat 1, 2, ... characters (never "/") until ``chunk`` matches."""
    for skip in range(len(name)):
        if name[skip] == "/":
            return None
        rest = _match_chunk(chunk, name[skip + 1 :])
        if rest is not None and not (is_last and rest):
            return rest
    return None


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if index + 1 < len(pattern):
                index += 1
        elif char == "[":
            in_range = True
        elif char == "]":
            in_range = False
        elif char == "*" and not in_range:
            break
        index += 1
    return star, pattern[:index], pattern[index:]


def _match_chunk(chunk: str, name: str) -> str | None:
    """The rest of ``name`` after ``chunk`` matched its start, or None; checks syntax fully."""
    failed = False
    while chunk:
        if not failed and not name:
            failed = True
        char = chunk[0]
        if char == "[":
            rune = ""
            if not failed:
                rune, name = name[0], name[1:]
            chunk = chunk[1:]
            negated = chunk.startswith("^")
            if negated:
                chunk = chunk[1:]
            found = False
            count = 0
            while True:
                if chunk.startswith("]") and count > 0:
                    chunk = chunk[1:]
                    break
                low, chunk = _escaped(chunk)
                high = low
                if chunk[0] == "-":
                    high, chunk = _escaped(chunk[1:])
                if not failed and low <= rune <= high:
                    found = True
                count += 1
            if found == negated:
                failed = True
        elif char == "?":
            if not failed:
                if name[0] == "/":
                    failed = True
                name = name[1:]
            chunk = chunk[1:]
        else:
            if char == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPattern()
            if not failed:
                if chunk[0] != name[0]:
                    failed = True
                name = name[1:]
            chunk = chunk[1:]
    return None if failed else name


def _escaped(chunk: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPattern()
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern()
    rest = chunk[1:]
    if not rest:
        raise BadPattern()
    return chunk[0], rest
