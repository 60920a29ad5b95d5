"""COPY and ADD: their flags, source paths, here-document sources and destination.

A source word such as ``<<EOF`` or ``<<-"EOF"`` names a here-document, which
becomes a file of that name (BuildKit's parseSourcesAndDest).  The word is
recognised the way BuildKit's ParseHeredoc recognises it, independently of
whether the parser found a body: a heredoc word in the JSON form, where no
body is read, is a heredoc source with empty content, as in BuildKit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.errors import BadFlag, ExpansionError, ParseError, SourceLocation
from builder.frontend import gotext
from builder.frontend.commands import Add, Copy, SourceContent
from builder.frontend.flags import FlagKind, FlagSpec, parse_flags
from builder.frontend.shell import ShellLexer
from builder.frontend.syntax import Node

__all__ = [
    "HeredocWord",
    "check_link_chown",
    "chomp_heredoc",
    "parse_add",
    "parse_copy",
    "parse_heredoc_word",
    "parse_sources_and_destination",
]

# Go's \d is ASCII, and "$" without (?m) is the very end of the text.
_HEREDOC = re.compile(r"\A([0-9]*)<<(-?)([^<]*)\Z")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_NO_DESTINATION = (
    "{} requires at least two arguments, but only one was provided."
    " Destination could not be determined"
)


@dataclass(frozen=True, slots=True)
class HeredocWord:
    """What a ``[N]<<[-]WORD`` word says: the delimiter, unquoted, and how to treat the body."""

    name: str
    chomp: bool
    expand: bool


def parse_copy(node: Node, location: SourceLocation) -> Copy:
    """COPY: the argument count is checked before the flags, as BuildKit does."""
    if len(node.arguments) < 2:
        raise ParseError(_NO_DESTINATION.format("COPY"))
    flags = parse_flags(
        node.flags,
        FlagSpec("exclude", FlagKind.STRINGS),
        FlagSpec("parents", FlagKind.BOOL),
        FlagSpec("chown", FlagKind.STRING),
        FlagSpec("from", FlagKind.STRING),
        FlagSpec("chmod", FlagKind.STRING),
        FlagSpec("link", FlagKind.BOOL),
    )
    sources, contents, destination = parse_sources_and_destination(node, "COPY")
    return Copy(
        original=gotext.trim_space(node.original),
        location=location,
        sources=sources,
        source_contents=contents,
        destination=destination,
        from_stage=flags.value("from"),
        chown=flags.value("chown"),
        chmod=flags.value("chmod"),
        link=flags.is_true("link"),
        parents=flags.is_true("parents"),
        excludes=flags.values("exclude"),
    )


def parse_add(node: Node, location: SourceLocation) -> Add:
    """ADD: COPY's checks, with ADD's own flags (no --from or --parents)."""
    if len(node.arguments) < 2:
        raise ParseError(_NO_DESTINATION.format("ADD"))
    flags = parse_flags(
        node.flags,
        FlagSpec("exclude", FlagKind.STRINGS),
        FlagSpec("chown", FlagKind.STRING),
        FlagSpec("chmod", FlagKind.STRING),
        FlagSpec("link", FlagKind.BOOL),
        FlagSpec("keep-git-dir", FlagKind.BOOL),
        FlagSpec("checksum", FlagKind.STRING),
        FlagSpec("unpack", FlagKind.BOOL),
    )
    sources, contents, destination = parse_sources_and_destination(node, "ADD")
    return Add(
        original=gotext.trim_space(node.original),
        location=location,
        sources=sources,
        source_contents=contents,
        destination=destination,
        chown=flags.value("chown"),
        chmod=flags.value("chmod"),
        link=flags.is_true("link"),
        keep_git_dir=flags.is_true("keep-git-dir"),
        checksum=flags.value("checksum"),
        unpack=flags.is_true("unpack") if flags.is_used("unpack") else None,
        excludes=flags.values("exclude"),
    )


def check_link_chown(instruction: Copy | Add) -> None:
    """Refuse ``--link --chown=NAME`` (after expansion), as BuildKit's frontend does.

    A --link copy is made on an empty root (BuildKit: on scratch, merged on
    top), where no /etc/passwd or /etc/group can turn a name into an id;
    numbers and ``root`` need no lookup.  BuildKit uses --link only without
    --chmod, so with --chmod names stay allowed.
    """
    if not instruction.link or instruction.chmod or not instruction.chown:
        return
    for part in instruction.chown.split(":", 1):
        if part != "root" and not (part.isascii() and part.isdigit()):
            raise BadFlag(
                f"{instruction.keyword} --link --chown={instruction.chown}: user and group names"
                " cannot be resolved with --link (the copy does not see the stage's /etc/passwd"
                " and /etc/group); use numeric ids",
                location=instruction.location,
            )


def parse_sources_and_destination(
    node: Node, keyword: str
) -> tuple[tuple[str, ...], tuple[SourceContent, ...], str]:
    """(source paths, here-document sources, destination) of a COPY or ADD node.

    The caller has already checked that there are at least two arguments.
    """
    *sources, destination = node.arguments
    if parse_heredoc_word(destination) is not None:
        raise ParseError(f"{keyword} cannot accept a heredoc as a destination")
    # A later body with the same name replaces an earlier one, as in BuildKit's map.
    bodies = {heredoc.name: heredoc.content for heredoc in node.heredocs}
    paths: list[str] = []
    contents: list[SourceContent] = []
    for source in sources:
        heredoc = parse_heredoc_word(source)
        if heredoc is None:
            paths.append(source)
            continue
        data = bodies.get(heredoc.name, "")
        if heredoc.chomp:
            data = chomp_heredoc(data)
        contents.append(SourceContent(path=heredoc.name, data=data, expand=heredoc.expand))
    return tuple(paths), tuple(contents), destination


def chomp_heredoc(content: str) -> str:
    """``<<-``: the leading tabs of every line removed."""
    return _LEADING_TABS.sub("", content)


def parse_heredoc_word(word: str) -> HeredocWord | None:
    """The heredoc a word opens, or None when it opens none.

    The delimiter is read as one shell word twice, with quotes removed and
    with quotes kept; if the counts of quote characters differ, part of it
    was quoted and the body must not be expanded.  A word the shell lexer
    refuses is no heredoc (BuildKit's MustParseHeredoc drops the error).
    """
    match = _HEREDOC.match(word)
    if match is None or match.group(3) == "":
        return None
    rest = match.group(3)
    try:
        names = ShellLexer(escape="\\", skip_unset_env=True).process_words(rest, {})
        if len(names) != 1:
            return None
        raw_names = ShellLexer(escape="\\", skip_unset_env=True, raw_quotes=True).process_words(
            rest, {}
        )
    except ExpansionError:
        return None
    if len(raw_names) != len(names):
        return None
    name = names[0]
    expand = _quote_count(name) == _quote_count(raw_names[0])
    return HeredocWord(name=name, chomp=match.group(2) == "-", expand=expand)


def _quote_count(word: str) -> int:
    return word.count("'") + word.count('"')
