"""The Dockerfile as BuildKit's parser reads it: directives and one Node per instruction.

This is the untyped layer (BuildKit's parser.Node): every word is still text,
unknown instructions are kept, and nothing is expanded.  The typed layer in
``instructions.py`` is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.frontend.gotext import go_lower

__all__ = ["EMPTY_CONTINUATION", "Directive", "Heredoc", "Node", "ParseWarning", "SyntaxTree"]

# The parser's warning for an instruction continued over an empty line.
EMPTY_CONTINUATION = "Empty continuation line found in: "


@dataclass(frozen=True, slots=True)
class Directive:
    """A parser directive at the top of the file: ``# escape=` ``."""

    name: str  # lower-case: syntax, escape or check
    value: str
    line: int


@dataclass(frozen=True, slots=True)
class Heredoc:
    """A here-document attached to RUN, COPY or ADD (or to ONBUILD of one)."""

    name: str  # the delimiter word, unquoted
    file_descriptor: int  # the N of N<<EOF; 0 when absent
    expand: bool  # False when any part of the delimiter was quoted
    chomp: bool  # <<-EOF: leading tabs are stripped from the content
    content: str  # the lines between, each with its line ending


@dataclass(frozen=True, slots=True)
class Node:
    """One instruction: its keyword, flags and argument words, as written.

    ``keyword`` is as written (``name`` is its lower-case form); ``arguments`` are the
    argument words after the instruction's own splitting rule (one string for
    the shell form, one per element for the JSON form, key/value pairs for
    ENV and LABEL); ``child`` holds the instruction inside an ONBUILD.
    """

    keyword: str
    flags: tuple[str, ...]
    arguments: tuple[str, ...]
    is_json: bool
    original: str
    start_line: int
    end_line: int
    heredocs: tuple[Heredoc, ...] = ()
    child: Node | None = None
    comments: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The keyword in lower case: "run", "copy", or an unknown word."""
        return go_lower(self.keyword)


@dataclass(frozen=True, slots=True)
class ParseWarning:
    """Something the parser took but warns about, at the line BuildKit's parser names."""

    message: str
    line: int


@dataclass(frozen=True, slots=True)
class SyntaxTree:
    """A whole Dockerfile: its directives, instructions and parser warnings.

    ``directives`` are those the frontend reads from the top of the file
    (syntax, escape, check); ``escape`` is the escape character the parse
    loop actually used, which can differ: BuildKit's loop stops looking at
    "# check=", so an escape directive after it does not apply.
    """

    nodes: tuple[Node, ...]
    directives: tuple[Directive, ...]
    escape: str
    warnings: tuple[ParseWarning, ...]
    lines: tuple[str, ...]  # the source lines, for error messages

    def directive(self, name: str) -> str | None:
        for directive in self.directives:
            if directive.name == name:
                return directive.value
        return None
