"""BuildKit's shell patterns: the globs of ``${V#p}``, ``${V%p}``, ``${V/p/r}`` and what they do."""

# BuildKit does not match these globs itself: it converts each one to a Go regexp
# (frontend/dockerfile/shell/lex.go, convertShellPatternToRegex) and lets RE2 answer.
# So a glob has "*" and "?" only, with no bracket expressions ("[" and "]" are plain
# characters), neither wildcard crosses a newline (they become the regexp "."), and
# which match wins is the regexp's choice.  This module gives the same answers without
# a regexp engine; see _GlobMatcher for why.

from __future__ import annotations

# typing is imported for the type checker only: it costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

from builder.frontend.gotext import as_runes

__all__ = ["PatternError", "replace", "trim"]

# What Go prints where it formats "no rune": %c of EOF.
_NO_RUNE = "\ufffd"

_as_runes = as_runes


class PatternError(ValueError):
    """A pattern BuildKit refuses to compile, with BuildKit's message.

    Not a :class:`builder.errors.PybuildError`: the message names no word or line.
    The caller knows the word being expanded and wraps this in its own error.
    """


def trim(value: str, pattern: str, *, from_end: bool, longest: bool) -> str:
    """``${V#p}`` / ``${V##p}``, or with ``from_end`` ``${V%p}`` / ``${V%%p}``.

    ``pattern`` is the text after the operator, escapes kept (``\\*`` is a literal
    star).  Returns ``value`` unchanged when the pattern does not match there.
    Raises :class:`PatternError` for a malformed pattern, even if ``value`` is empty.
    """
    if from_end:
        # A regexp cannot ask for the shortest match that ends at the end, so BuildKit
        # reverses value and pattern and trims a prefix.  We take the same route: it
        # decides which match wins, error messages quote the reversed pattern, and the
        # rune reversal turns invalid bytes in the value into U+FFFD.
        pattern = _reverse_pattern(_as_runes(pattern))
        value = _as_runes(value)[::-1]
    end = _GlobMatcher(_parse(pattern), value, greedy=longest).match_at(0)
    if end is not None:
        value = value[end:]
    return value[::-1] if from_end else value


def replace(value: str, pattern: str, replacement: str, *, every: bool) -> str:
    """``${V/p/r}``, or with ``every`` ``${V//p/r}``: replace the leftmost match(es).

    With ``every`` the replacement is a Go template (``$0`` is the match, see
    _expand_template), because BuildKit uses ReplaceAllString there; the single
    form splices ``replacement`` in as it is.  Raises :class:`PatternError` for a
    malformed pattern, even if ``value`` is empty.
    """
    matcher = _GlobMatcher(_parse(pattern), value, greedy=True)
    if every:
        return _replace_all(matcher, value, replacement)
    found = matcher.search(0)
    if found is None:
        return value
    start, end = found
    return value[:start] + replacement + value[end:]


# Glob tokens: (kind, character); the character is set for literals only.
_LITERAL, _ANY_CHAR, _ANY_RUN = 0, 1, 2
_Token: TypeAlias = "tuple[int, str]"


def _parse(pattern: str) -> tuple[_Token, ...]:
    """Parse a glob as BuildKit's convertShellPatternToRegex does.

    ``\\`` escapes only ``*``, ``?`` and ``\\``, and is dropped before ``}`` and
    ``/`` (which needed it to get past the ``${…}`` reader); any other escape,
    or one at the end, is an error.  This is always ``\\``, whatever the
    Dockerfile's escape character.
    """
    # This pass has its own Go scanner, which drops a leading byte-order mark too.
    runes = _as_runes(pattern).removeprefix("\ufeff")
    tokens: list[_Token] = []
    index = 0
    while index < len(runes):
        char = runes[index]
        index += 1
        if char == "*":
            tokens.append((_ANY_RUN, ""))
        elif char == "?":
            tokens.append((_ANY_CHAR, ""))
        elif char != "\\":
            tokens.append((_LITERAL, char))
        else:
            escaped = runes[index : index + 1]
            if escaped in ("}", "/"):
                continue
            index += 1
            if escaped not in ("*", "?", "\\"):
                raise PatternError(
                    f"invalid pattern ({pattern}) in substitution: "
                    f"invalid escape '\\{escaped or _NO_RUNE}'"
                )
            tokens.append((_LITERAL, escaped))
    return tuple(tokens)


class _GlobMatcher:
    """Where one glob matches in one text, as Go's regexp would answer.

    BuildKit compiles the glob to a regexp (``*`` → ``.*``, or ``.*?`` for the
    shortest forms; ``?`` → ``.``) and takes RE2's leftmost match, preferring what a
    backtracking engine finds first: each ``*`` as long (or short) as still lets
    the rest match.  Python's ``re`` would agree but can backtrack exponentially on
    ``*a*a*a…b``.  Instead one backward pass marks, per glob position and text
    position, whether the rest of the glob can match from there; a forward walk
    then makes each ``*``'s preferred choice directly.  O(len(glob) × len(text)).
    """

    __slots__ = ("_can_finish", "_greedy", "_text", "_tokens")

    def __init__(self, tokens: tuple[_Token, ...], text: str, *, greedy: bool) -> None:
        self._tokens = tokens
        # Go's regexp reads an invalid byte as U+FFFD; callers still slice the original.
        self._text = text = _as_runes(text)
        self._greedy = greedy
        size = len(text)
        newlines = [index for index, char in enumerate(text) if char == "\n"]
        # after[p] == 1: the tokens after this one match some prefix of text[p:].
        after = bytearray(b"\x01") * (size + 1)
        tables = [after]
        for kind, char in reversed(tokens):
            if kind == _LITERAL:
                here = bytearray(size + 1)
                index = text.find(char)
                while index >= 0:
                    here[index] = after[index + 1]
                    index = text.find(char, index + 1)
            elif kind == _ANY_CHAR:
                here = after[1:] + b"\x00"
                for index in newlines:
                    here[index] = 0
            else:
                here = bytearray(size + 1)
                reachable = here[size] = after[size]
                for index in range(size - 1, -1, -1):
                    reachable = after[index] if text[index] == "\n" else reachable | after[index]
                    here[index] = reachable
            tables.append(here)
            after = here
        tables.reverse()
        self._can_finish = tables

    def match_at(self, start: int) -> int | None:
        """End of the preferred match that starts at ``start``, if there is one."""
        if not self._can_finish[0][start]:
            return None
        text, position = self._text, start
        for index, (kind, _) in enumerate(self._tokens):
            if kind != _ANY_RUN:
                position += 1
                continue
            line_end = text.find("\n", position)
            limit = (len(text) if line_end < 0 else line_end) + 1
            rest = self._can_finish[index + 1]
            position = (
                rest.rfind(1, position, limit) if self._greedy else rest.find(1, position, limit)
            )
        return position

    def search(self, start: int) -> tuple[int, int] | None:
        """The leftmost match that starts at or after ``start``, as (start, end)."""
        found = self._can_finish[0].find(1, start)
        if found < 0:
            return None
        end = self.match_at(found)
        return None if end is None else (found, end)


def _reverse_pattern(pattern: str) -> str:
    """Reverse a glob, keeping each ``\\x`` pair in order: ``a\\*c`` → ``c\\*a``."""
    pieces: list[str] = []
    index = 0
    while index < len(pattern):
        width = 2 if pattern[index] == "\\" and index + 1 < len(pattern) else 1
        pieces.append(pattern[index : index + width])
        index += width
    return "".join(reversed(pieces))


def _replace_all(matcher: _GlobMatcher, value: str, template: str) -> str:
    """``${V//p/r}``: Go's Regexp.ReplaceAllString, empty-match rules included.

    An empty match right after a match is not replaced (so ``*`` over "ab" gives one
    replacement, not two), and the replacement is a Go template (see _expand_template).
    """
    out: list[str] = []
    last_end = 0
    search_from = 0
    while search_from <= len(value):
        found = matcher.search(search_from)
        if found is None:
            break
        start, end = found
        out.append(value[last_end:start])
        if end > last_end or start == 0:
            out.append(_expand_template(template, value[start:end]))
        last_end = end
        search_from = max(search_from + 1, end)
    out.append(value[last_end:])
    return "".join(out)


def _expand_template(template: str, whole_match: str) -> str:
    """Go's Regexp.Expand for a regexp without groups, as ReplaceAllString applies it.

    ``$0`` / ``${0}`` give the whole match; any other well-formed ``$name`` or
    ``${name}`` gives nothing; ``$$`` gives ``$``; a ``$`` that starts no reference
    stays.  Only the ``//`` form goes through this; ``${V/p/r}`` inserts r as is.
    """
    out: list[str] = []
    rest = template
    while (dollar := rest.find("$")) >= 0:
        out.append(rest[:dollar])
        rest = rest[dollar + 1 :]
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        braced = rest.startswith("{")
        body = rest[1:] if braced else rest
        length = 0
        while length < len(body) and (
            body[length].isalpha() or body[length].isdecimal() or body[length] == "_"
        ):
            length += 1
        if length == 0 or (braced and body[length : length + 1] != "}"):
            out.append("$")
            continue
        if body[:length] == "0":
            out.append(whole_match)
        rest = body[length + 1 :] if braced else body[length:]
    out.append(rest)
    return "".join(out)
