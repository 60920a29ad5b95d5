"""Dockerfile word expansion: quotes, escapes and ``$VAR`` forms, read as BuildKit reads them.

BuildKit does not run a shell to expand the arguments of ENV, ARG, COPY, EXPOSE…; it
runs its own small lexer (moby/buildkit frontend/dockerfile/shell/lex.go) that imitates
sh closely but not exactly.  This module reproduces that lexer, quirks included,
because a Dockerfile must mean the same here as there.  Each quirk kept on purpose
is noted where it happens.

The patterns of ``${V#p}``, ``${V%p}`` and ``${V/p/r}`` are matched in
:mod:`builder.frontend.patterns`; this module reads them out of the word, escapes
kept, and hands them over as text.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass

# typing is imported for the type checker only: it costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

from builder.errors import ExpansionError
from builder.frontend import patterns
from builder.frontend.gotext import GO_SPACE, as_runes, go_quote

__all__ = ["ExpansionResult", "ShellLexer"]

# sh's special parameters.  A Dockerfile never sets them, so they expand like any
# unset variable.  "0" is listed, but a digit starts a positional name first.
_SPECIAL_PARAMS = frozenset("@*#?-$!0")

# What Go prints where it formats "no rune": string(rune(-1)) and %c of EOF.
_NO_RUNE = "\ufffd"

_as_runes = as_runes


@dataclass(frozen=True, slots=True)
class ExpansionResult:
    """An expanded word and the variable names it referenced.

    BuildKit's linter uses ``unmatched`` to warn about misspelt names.
    """

    word: str
    matched: frozenset[str]  # referenced and set (possibly to "")
    unmatched: frozenset[str]  # referenced and not set


@dataclass(frozen=True, slots=True)
class ShellLexer:
    """BuildKit's ``shell.Lex``: expands one word against an environment.

    ``escape`` is the Dockerfile's escape character, a backslash or a backtick.  The flags
    are BuildKit's, for callers that must see the text less processed:
    ``raw_quotes`` / ``raw_escapes`` keep quote / escape characters in the output,
    ``skip_process_quotes`` treats quotes as ordinary characters, and
    ``skip_unset_env`` leaves a reference to an unset variable as it was written.

    Every method raises :class:`ExpansionError`, and nothing else, for a word it
    cannot expand; the message is BuildKit's (``failed to process "…": …``).
    """

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_process_quotes: bool = False
    skip_unset_env: bool = False

    def __post_init__(self) -> None:
        if self.escape not in ("\\", "`"):
            raise ValueError(f"escape must be a backslash or a backtick, not {self.escape!r}")

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word``; white space, quoted or not, is kept as it is."""
        return self._expand(word, env)[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it on white space that was neither quoted nor escaped.

        Spaces produced by an expansion do split (``$V`` with V="a b" gives two
        words), as in sh.  Unlike sh, a word with no characters is dropped, so
        ``a "" b`` gives ``["a", "b"]``: BuildKit only emits words with text.
        """
        return self._expand(word, env)[1]

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> ExpansionResult:
        """Expand ``word`` like :meth:`process_word` and report the names it referenced."""
        text, _, expansion = self._expand(word, env)
        return ExpansionResult(text, frozenset(expansion.matched), frozenset(expansion.unmatched))

    def _expand(self, word: str, env: Mapping[str, str]) -> tuple[str, list[str], _Expansion]:
        expansion = _Expansion(self, word, env)
        try:
            text, words = _drive(expansion.read_until("", self.raw_escapes))
        except _Failure as failure:
            # The internal failure adds nothing as a cause; BuildKit's wrapping is the message.
            raise ExpansionError(f"failed to process {go_quote(word)}: {failure}") from None
        return text, words, expansion


class _Failure(Exception):
    """An expansion error before it is wrapped with the word it happened in."""


# A read step: a generator that yields the sub-reads it needs and returns its text.
_Task: TypeAlias = "Generator[_Task, Any, Any]"


def _drive(task: _Task) -> Any:
    """Run ``task`` and the sub-reads it yields on an explicit stack, returning its value.

    The lexer is naturally recursive (``${a:-${b:-"$c"}}``), and Go's growable
    stacks never overflow on deep nesting; Python's recursion limit would.  Driving
    generators from a loop keeps the code shaped like the grammar with no depth limit.
    A failure is thrown into the reader that asked, which may replace its message.
    """
    stack = [task]
    reply: Any = None
    pending: _Failure | None = None
    while True:
        current = stack[-1]
        try:
            if pending is None:
                call = current.send(reply)
            else:
                failure, pending = pending, None
                call = current.throw(failure)
        except StopIteration as done:
            stack.pop()
            if not stack:
                return done.value
            reply = done.value
            continue
        except _Failure as failure:
            stack.pop()
            if not stack:
                raise
            pending = failure
            continue
        stack.append(call)
        reply = None


class _WordSplitter:
    """Collects the words of ``process_words`` as the text is read.

    Characters that can split (plain text, expansion results) end a word at white
    space; characters that cannot (quoted text, escaped characters) never do.
    """

    __slots__ = ("_current", "_words")

    def __init__(self) -> None:
        self._words: list[str] = []
        self._current: list[str] = []

    def add_splittable(self, text: str) -> None:
        # Go ranges over the string as runes here, so invalid bytes become U+FFFD.
        for char in _as_runes(text):
            if char not in GO_SPACE:
                self._current.append(char)
            elif self._current:
                self._words.append("".join(self._current))
                self._current.clear()

    def add_literal(self, text: str) -> None:
        if text:
            self._current.append(text)

    def finish(self) -> list[str]:
        if self._current:
            self._words.append("".join(self._current))
            self._current.clear()
        return self._words


class _Expansion:
    """One pass of the lexer over one word: a cursor, the environment, the names seen.

    Mutable, and private to this module: a ShellLexer stays a frozen value and
    makes a fresh _Expansion per word.
    """

    __slots__ = ("_env", "_lexer", "_pos", "_text", "matched", "unmatched")

    def __init__(self, lexer: ShellLexer, word: str, env: Mapping[str, str]) -> None:
        self._lexer = lexer
        # Go's text/scanner drops one byte-order mark at the very start of its input.
        self._text = _as_runes(word).removeprefix("\ufeff")
        self._pos = 0
        self._env = env
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def _peek(self) -> str:
        """The next character, or "" at the end of the word."""
        return self._text[self._pos : self._pos + 1]

    def _next(self) -> str:
        char = self._text[self._pos : self._pos + 1]
        self._pos += len(char)
        return char

    def _lookup(self, name: str) -> tuple[str, bool]:
        if name in self._env:
            self.matched.add(name)
            return self._env[name], True
        self.unmatched.add(name)
        return "", False

    def read_until(
        self, stop: str, raw_escapes: bool
    ) -> Generator[_Task, Any, tuple[str, list[str]]]:
        """Read up to ``stop`` (consumed), or to the end of the word when ``stop`` is "".

        Returns the text and its words.  Reaching the end before a non-empty
        ``stop`` is an error, which the enclosing ``${`` may reword.
        """
        escape = self._lexer.escape
        quotes = not self._lexer.skip_process_quotes
        out: list[str] = []
        words = _WordSplitter()
        while char := self._peek():
            if char == stop:
                self._pos += 1
                return "".join(out), words.finish()
            if char == "$":
                text = yield self._read_dollar()
                words.add_splittable(text)
            elif quotes and char == "'":
                text = self._read_single_quoted()
                words.add_literal(text)
            elif quotes and char == '"':
                text = yield self._read_double_quoted(raw_escapes)
                words.add_literal(text)
            else:
                self._pos += 1
                if char != escape:
                    words.add_splittable(char)
                else:
                    if raw_escapes:
                        out.append(char)
                        words.add_literal(char)
                    char = self._next()
                    if not char:
                        break  # an escape at the very end is dropped, not an error
                    words.add_literal(char)
                text = char
            out.append(text)
        if stop:
            raise _Failure(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.finish()

    def _read_single_quoted(self) -> str:
        """'…': every character as it is; nothing escapes a single quote."""
        self._pos += 1
        end = self._text.find("'", self._pos)
        if end < 0:
            self._pos = len(self._text)  # as Go's scanner, so "${a:-'x}" reads as a missing }
            raise _Failure("unexpected end of statement while looking for matching single-quote")
        body = self._text[self._pos : end]
        self._pos = end + 1
        return f"'{body}'" if self._lexer.raw_quotes else body

    def _read_double_quoted(self, raw_escapes: bool) -> Generator[_Task, Any, str]:
        """Double-quoted text: ``$`` expands; the escape escapes only ``"``, ``$`` and itself."""
        escape = self._lexer.escape
        raw_quotes = self._lexer.raw_quotes
        self._pos += 1
        out = ['"'] if raw_quotes else []
        while True:
            char = self._peek()
            if not char:
                raise _Failure(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if char == '"':
                self._pos += 1
                if raw_quotes:
                    out.append(char)
                return "".join(out)
            if char == "$":
                expanded: str = yield self._read_dollar()
                out.append(expanded)
                continue
            self._pos += 1
            if char == escape:
                if raw_escapes:
                    # BuildKit keeps the escape here and again below when it escapes
                    # nothing, so "a\tb" in raw mode gives a\\tb; ${V#"\t"} relies on it.
                    out.append(char)
                following = self._peek()
                if not following:
                    continue  # dropped; the loop then reports the missing quote
                if following in ('"', "$", escape):
                    self._pos += 1
                    char = following
            out.append(char)

    def _read_name(self) -> str:
        """A variable name: a run of digits, one special parameter, or letters/digits/_."""
        text, start = self._text, self._pos
        end = start
        if start < len(text) and text[start].isdecimal():  # unicode.IsDigit: category Nd
            while end < len(text) and text[end].isdecimal():
                end += 1
        elif start < len(text) and text[start] in _SPECIAL_PARAMS:
            end += 1
        else:
            while end < len(text) and (
                text[end].isalpha() or text[end].isdecimal() or text[end] == "_"
            ):
                end += 1
        self._pos = end
        return text[start:end]

    def _read_dollar(self) -> Generator[_Task, Any, str]:
        """``$NAME`` or ``${…}``, the cursor on the ``$``."""
        skip_unset = self._lexer.skip_unset_env
        self._pos += 1
        if self._peek() != "{":
            name = self._read_name()
            if not name:
                return "$"  # "$" before anything but a name is a plain "$"
            value, is_set = self._lookup(name)
            return "$" + name if skip_unset and not is_set else value
        self._pos += 1
        first = self._peek()
        if not first:
            raise _Failure("syntax error: missing '}'")
        if first in ("{", "}", ":"):
            raise _Failure("syntax error: bad substitution")
        name = self._read_name()
        operator = self._next()
        if operator == "}":
            value, is_set = self._lookup(name)
            return "${" + name + "}" if skip_unset and not is_set else value
        if operator == "/":
            replaced: str = yield self._read_replacement(name)
            return replaced

        null_is_unset = operator == ":"
        if null_is_unset:
            # Whatever follows ":" is taken as the operator, even "}" or the end:
            # "${a:}" then reads on for a closing brace.
            operator = self._next()
        modifier = (":" if null_is_unset else "") + (operator or _NO_RUNE)
        if not null_is_unset and operator not in ("+", "-", "?", "#", "%"):
            # A name that runs to the end ("${abc") lands here too, with modifier U+FFFD.
            raise _Failure(f"unsupported modifier ({modifier}) in substitution")
        is_pattern = operator in ("#", "%")
        if null_is_unset and is_pattern:
            raise _Failure(f"unsupported modifier ({modifier}) in substitution")
        word: str
        try:
            # Patterns keep their escapes: the glob needs "\*" to tell a literal "*".
            word, _ = yield self.read_until("}", is_pattern)
        except _Failure:
            if not self._peek():
                raise _Failure("syntax error: missing '}'") from None
            raise

        value, is_set = self._lookup(name)
        if skip_unset and not is_set:
            return "${" + name + modifier + word + "}"
        is_null = not is_set or (null_is_unset and value == "")
        if operator == "-":
            return word if is_null else value
        if operator == "+":
            return "" if is_null else word
        if operator == "?":
            if not is_set:
                raise _Failure(f"{name}: {word or 'is not allowed to be unset'}")
            if is_null:
                raise _Failure(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if is_pattern:
            # "##" / "%%" is seen after expansion: ${V#$P} with P="#x" is ${V##x}.
            longest = word[:1] == operator
            pattern = word[1:] if longest else word
            try:
                return patterns.trim(value, pattern, from_end=operator == "%", longest=longest)
            except patterns.PatternError as error:
                # A failure like any other here, so an enclosing ${ can reword it
                # ("missing '}'") and _expand adds the word, as BuildKit does.
                raise _Failure(str(error)) from None
        raise _Failure(f"unsupported modifier ({modifier}) in substitution")

    def _read_replacement(self, name: str) -> Generator[_Task, Any, str]:
        """``${NAME/pattern/replacement}`` or ``${NAME//…}``, the cursor after the first ``/``."""
        every = self._peek() == "/"
        if every:
            self._pos += 1
        pattern: str
        replacement: str
        try:
            pattern, _ = yield self.read_until("/", True)
        except _Failure:
            if not self._peek():
                raise _Failure("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = yield self.read_until("}", True)
        except _Failure:
            if not self._peek():
                raise _Failure("syntax error: missing '}'") from None
            raise

        value, is_set = self._lookup(name)
        if self._lexer.skip_unset_env and not is_set:
            # BuildKit writes it back with one "/" even for "//"; kept for the same text.
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        try:
            return patterns.replace(value, pattern, replacement, every=every)
        except patterns.PatternError as error:
            raise _Failure(str(error)) from None
