"""Dockerfile text → SyntaxTree: directives, logical lines, heredocs, one Node each.

This follows BuildKit's parser line for line in behaviour (not in code):
directives are looked for only at the very top; a line ending in the escape
character continues on the next, skipping comment lines and blank lines in
between; comments are whole lines starting with ``#``; a RUN, COPY or ADD
(or an ONBUILD of one) that names ``<<WORD`` reads the following lines up to
WORD as a here-document.  Each logical line is then split by
``arguments.read_line``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from builder.errors import ExpansionError, ParseError, SourceLocation
from builder.frontend import gotext
from builder.frontend.arguments import LineParts, read_line
from builder.frontend.syntax import (
    EMPTY_CONTINUATION,
    Directive,
    Heredoc,
    Node,
    ParseWarning,
    SyntaxTree,
)

__all__ = ["MAX_LINE_BYTES", "frontend_directives", "parse_dockerfile"]

# BuildKit reads with a bufio.Scanner, whose tokens are at most 64 KiB.
MAX_LINE_BYTES = 65535

# The parse loop knows only these two; "# check=" (and anything else) ends the
# directive section there, so an escape directive after it is plain comment.
_LOOP_DIRECTIVES = frozenset({"syntax", "escape"})
# The frontend's own pass over the top of the file also finds "check".
_FRONTEND_DIRECTIVES = frozenset({"syntax", "escape", "check"})
# Go's \s is [\t\n\f\r ] (no \v); "$" without (?m) is the end of the text.
_DIRECTIVE = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_HEREDOC_WORD = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z")
# What makes the shell lexer's words differ from plain white-space splitting.
_NEEDS_SHELL_LEXER = re.compile("['\"\\\\$\ufeff\ud800-\udfff]")
_GO_SPACES = re.compile("[" + re.escape("".join(sorted(gotext.GO_SPACE))) + "]+")
_HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})
_UTF8_BOM = "\ufeff"


def parse_dockerfile(data: bytes | str, *, filename: str = "Dockerfile") -> SyntaxTree:
    """Parse a whole Dockerfile; raises ParseError naming the line on refusal."""
    text = gotext.decode_source(data) if isinstance(data, bytes) else data
    return _Reader(text, filename).read()


class _Directives:
    """The directive section at the top of the file, and the escape character."""

    def __init__(self) -> None:
        self.escape = "\\"
        self.found: list[Directive] = []
        self._done = False
        self._line = 0
        self._continuation = _continuation_pattern(self.escape)

    def look_at(self, line: str) -> None:
        """Feed every line BuildKit feeds its directive parser (not heredoc bodies)."""
        self._line += 1
        if self._done:
            return
        match = _DIRECTIVE.match(line)
        name = match.group(1).lower() if match else ""
        if match is None or name not in _LOOP_DIRECTIVES:
            self._done = True
            return
        if any(directive.name == name for directive in self.found):
            raise ParseError(f"only one {name} parser directive can be used")
        value = match.group(2)
        self.found.append(Directive(name, value, self._line))
        if name == "escape":
            if value not in ("\\", "`"):
                raise ParseError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self._continuation = _continuation_pattern(value)

    def strip_continuation(self, line: str) -> tuple[str, bool]:
        """The line without a trailing escape character, and whether it ends there.

        An escape character right after another one is not a continuation.
        """
        if not line.rstrip(" \t").endswith(self.escape):
            return line, True  # the common case, without a regex scan
        match = self._continuation.search(line)
        if match is None:
            return line, True
        return line[: match.start()] + (match.group(1) or ""), False


def _continuation_pattern(escape: str) -> re.Pattern[str]:
    char = re.escape(escape)
    return re.compile(rf"([^{char}]){char}[ \t]*\Z|\A{char}[ \t]*\Z")


def frontend_directives(lines: tuple[str, ...]) -> tuple[Directive, ...]:
    """The directives as BuildKit's frontend finds them (syntax, escape, check).

    This is a second reading, apart from the parse loop's: a UTF-8 BOM and a
    ``#!`` first line are skipped, lines are not left-trimmed, and the first
    line that is no known directive ends the search.  A repeated directive
    ends it too (the frontend ignores the parse loop's error here).
    """
    found: list[Directive] = []
    number = 0
    for number, line in enumerate(lines, start=1):
        if number == 1:
            line = line.removeprefix(_UTF8_BOM)
            if line.startswith("#!"):
                continue
        match = _DIRECTIVE.match(line.removesuffix("\r"))
        name = match.group(1).lower() if match else ""
        if match is None or name not in _FRONTEND_DIRECTIVES:
            break
        if any(directive.name == name for directive in found):
            break
        found.append(Directive(name, match.group(2), number))
    return tuple(found)


def _physical_lines(text: str) -> list[str]:
    """The lines of text, each with its "\\n" (the last may lack one)."""
    lines = [line + "\n" for line in text.split("\n")]
    last = lines.pop()[:-1]
    if last:
        lines.append(last)
    return lines


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return gotext.trim_left_space(_trim_newline(line)).startswith("#")


class _LineTooLong(Exception):
    pass


class _Reader:
    """One pass over the physical lines, as BuildKit's Parse loop makes it."""

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        physical = _physical_lines(text)
        self.source_lines = tuple(map(_trim_newline, physical))
        self._lines = self._checked_lines(physical)
        self.current_line = 0
        self.too_long = False
        self.directives = _Directives()

    def _checked_lines(self, physical: list[str]) -> Iterator[str]:
        for number, line in enumerate(physical):
            content = line.removesuffix("\n")
            if len(content) > MAX_LINE_BYTES // 4 and (
                len(gotext.encode_source(content)) > MAX_LINE_BYTES
            ):
                self.too_long = True
                return
            if number == 0 and line.startswith(_UTF8_BOM):
                line = line[1:]
            yield line

    def _next(self) -> str | None:
        return next(self._lines, None)

    def _process(self, line: str, *, strip_left: bool) -> str:
        """BuildKit's processLine: trim, feed the directive parser, drop a comment."""
        line = _trim_newline(line)
        if strip_left:
            line = gotext.trim_left_space(line)
        try:
            self.directives.look_at(line)
        except ParseError as err:
            raise self._located(err, self.current_line + 1, self.current_line + 1) from None
        return "" if line.startswith("#") else line

    def _located(self, err: ParseError, start: int, end: int) -> ParseError:
        start, end = max(start, 1), max(end, start, 1)
        lines = self.source_lines[start - 1 : end]
        err.with_location(SourceLocation(self.filename, start, end), lines)
        return err

    def read(self) -> SyntaxTree:
        nodes: list[Node] = []
        warnings: list[ParseWarning] = []
        comments: list[str] = []
        while (raw := self._next()) is not None:
            if _is_comment(raw):
                comments.append(gotext.trim_space(raw[1:]))
            processed = self._process(raw, strip_left=True)
            self.current_line += 1
            start_line = self.current_line
            line, ended = self.directives.strip_continuation(processed)
            if ended and line == "":
                continue
            pieces = [line]
            saw_empty_continuation = False
            while not ended and (raw := self._next()) is not None:
                processed = self._process(raw, strip_left=False)
                self.current_line += 1
                if _is_comment(raw):
                    continue
                if gotext.trim_left_space(processed) == "":
                    saw_empty_continuation = True
                    continue
                piece, ended = self.directives.strip_continuation(processed)
                pieces.append(piece)
            logical = "".join(pieces)
            if saw_empty_continuation:
                # At the instruction's last line, as BuildKit's parser puts it.
                warnings.append(ParseWarning(EMPTY_CONTINUATION + logical, self.current_line))
            try:
                parts = read_line(logical, self.directives.escape)
            except ParseError as err:
                raise self._located(err, start_line, self.current_line) from None
            heredocs: tuple[Heredoc, ...] = ()
            original = logical
            if _may_hold_heredoc(parts) and "<<" in logical:
                heredocs = self._read_heredocs(logical, start_line)
                for heredoc in heredocs:
                    original += "\n" + heredoc.content + heredoc.name
                if heredocs:
                    original += "\n"
            nodes.append(
                _node(parts, logical, original, start_line, self.current_line, heredocs, comments)
            )
            comments = []
        if not nodes:
            raise self._located(
                ParseError("file with no instructions"), self.current_line, self.current_line
            )
        if self.too_long:
            raise self._located(
                ParseError(f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}"),
                self.current_line + 1,
                self.current_line + 1,
            )
        return SyntaxTree(
            nodes=tuple(nodes),
            directives=frontend_directives(self.source_lines),
            escape=self.directives.escape,
            warnings=tuple(warnings),
            lines=self.source_lines,
        )

    def _read_heredocs(self, logical: str, start_line: int) -> tuple[Heredoc, ...]:
        try:
            found = _heredocs_in(logical)
        except ExpansionError as err:
            located = ParseError(str(err))
            raise self._located(located, start_line, self.current_line) from None
        complete: list[Heredoc] = []
        for name, descriptor, expand, chomp in found:
            content: list[str] = []
            terminated = False
            while (raw := self._next()) is not None:
                self.current_line += 1
                candidate = _trim_newline(raw)
                if chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == name:
                    terminated = True
                    break
                content.append(raw)
            if not terminated:
                raise self._located(
                    ParseError("unterminated heredoc"), start_line, self.current_line
                )
            complete.append(Heredoc(name, descriptor, expand, chomp, "".join(content)))
        return tuple(complete)


def _may_hold_heredoc(parts: LineParts) -> bool:
    if parts.child is not None:
        parts = parts.child
    return gotext.go_lower(parts.keyword) in _HEREDOC_KEYWORDS and not parts.is_json


def _heredocs_in(line: str) -> list[tuple[str, int, bool, bool]]:
    """The heredocs a line opens: (name, fd, expand, chomp) for each ``<<WORD``.

    The line is cut into shell words with quotes and escapes kept; a word
    ``[N]<<[-]WORD`` opens a heredoc whose name is WORD unquoted.  Any quote
    in WORD turns expansion of the body off.
    """
    if _NEEDS_SHELL_LEXER.search(line) is None:
        # Nothing for the shell lexer to unquote, unescape or expand: its
        # words are the text split at white space, and each name is as written.
        return [
            (match.group(3), min(int(match.group(1) or "0"), 2**64 - 1), True, match.group(2) == "-")
            for word in _GO_SPACES.split(line)
            if (match := _HEREDOC_WORD.match(word)) is not None and match.group(3)
        ]
    from builder.frontend.shell import ShellLexer

    splitter = ShellLexer(escape="\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = splitter.process_words(line, {})
    except ExpansionError:
        return []
    found: list[tuple[str, int, bool, bool]] = []
    for word in words:
        match = _HEREDOC_WORD.match(word)
        if match is None or not match.group(3):
            continue
        descriptor = min(int(match.group(1) or "0"), 2**64 - 1)
        chomp = match.group(2) == "-"
        rest = match.group(3)
        names = ShellLexer(escape="\\", skip_unset_env=True).process_words(rest, {})
        if len(names) != 1:
            continue
        raw_names = ShellLexer(escape="\\", skip_unset_env=True, raw_quotes=True).process_words(
            rest, {}
        )
        if len(raw_names) != len(names):
            raise ExpansionError(
                f"internal lexing of heredoc produced inconsistent results: {rest}"
            )
        name, raw_name = names[0], raw_names[0]
        expand = _quote_count(name) == _quote_count(raw_name)
        found.append((name, descriptor, expand, chomp))
    return found


def _quote_count(word: str) -> int:
    return word.count("'") + word.count('"')


def _node(
    parts: LineParts,
    line: str,
    original: str,
    start_line: int,
    end_line: int,
    heredocs: tuple[Heredoc, ...],
    comments: list[str],
) -> Node:
    # ONBUILD nests (ONBUILD ONBUILD ...): build from the innermost out,
    # without recursion, so no line can exhaust the stack.
    if parts.child is None:
        return Node(
            keyword=parts.keyword,
            flags=parts.flags,
            arguments=parts.arguments,
            is_json=parts.is_json,
            original=original,
            start_line=start_line,
            end_line=end_line,
            heredocs=heredocs,
            child=None,
            comments=tuple(comments),
        )
    chain = [parts]
    while chain[-1].child is not None:
        chain.append(chain[-1].child)
    node: Node | None = None
    for depth, link in enumerate(reversed(chain)):
        outermost = depth == len(chain) - 1
        node = Node(
            keyword=link.keyword,
            flags=link.flags,
            arguments=link.arguments,
            is_json=link.is_json,
            original=original if outermost else line,
            start_line=start_line,
            end_line=end_line,
            heredocs=heredocs if outermost else (),
            child=node,
            comments=tuple(comments) if outermost else (),
        )
    assert node is not None
    return node
