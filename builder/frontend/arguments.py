"""One logical line → keyword, flags and argument words, per instruction's rule.

BuildKit splits each instruction's arguments by a rule of its own (its
``line_parsers``): the exec/shell form for RUN, CMD, ENTRYPOINT and SHELL,
JSON-or-words for COPY, ADD and VOLUME, quoted words for ENV, LABEL and ARG,
and so on.  The structure of the line (keyword, flags, rest) and the JSON of
the exec form come from the Lark grammar; the word rules are small scanners
here, kept byte-for-byte faithful to BuildKit, quirks included, because a
Dockerfile must mean the same thing to pybuild as to docker build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grammar
from builder.errors import ParseError
from builder.frontend import gotext

__all__ = ["NOT_STRING_ARRAY", "LineParts", "read_line"]

NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"

# Go's encoding/json refuses to nest deeper than this.
_JSON_MAX_DEPTH = 10000
_WHITESPACE = re.compile(r"[\t\x0b\x0c\r ]+")
_GO_SPACES = re.compile("[" + re.escape("".join(sorted(gotext.GO_SPACE))) + "]+")


@dataclass(frozen=True, slots=True)
class LineParts:
    """What one logical line says, before any typing: BuildKit's parser.Node."""

    keyword: str  # as written, possibly not an instruction at all
    flags: tuple[str, ...]
    arguments: tuple[str, ...]
    is_json: bool
    child: LineParts | None  # the instruction inside ONBUILD


class _NotJSON(Exception):
    """The text is not a JSON array; the caller falls back to the shell form."""


def read_line(line: str, escape: str) -> LineParts:
    """Split one logical line as BuildKit's newNodeFromLine does.

    ONBUILD nests: ``ONBUILD ONBUILD RUN x`` is read without recursion, so
    no line, however long, can exhaust the stack.
    """
    heads: list[tuple[str, tuple[str, ...]]] = []
    rest = line
    while True:
        keyword, flags, rest = _split_command(rest)
        if gotext.go_lower(keyword) != "onbuild" or rest == "":
            break
        heads.append((keyword, flags))
    arguments, is_json = _read_arguments(keyword, rest, escape)
    parts = LineParts(keyword, flags, arguments, is_json, None)
    for keyword, flags in reversed(heads):
        parts = LineParts(keyword, flags, (), False, parts)
    return parts


def _split_command(line: str) -> tuple[str, tuple[str, ...], str]:
    """The keyword (as written), the flags, and the trimmed rest of the line."""
    line = gotext.trim_space(line)
    if not line:
        return "", (), ""
    view = gotext.to_bytes_view(line)
    try:
        tree = grammar.load_parser().parse(view, "instruction")
    except grammar.GrammarSyntaxError as err:  # pragma: no cover - the grammar takes any line
        raise ParseError(f"cannot read instruction: {err}") from err
    tokens = [child for child in tree.children if isinstance(child, grammar.Token)]
    keyword = gotext.from_bytes_view(tokens[0].value)
    flags: list[str] = []
    rest = ""
    for token in tokens[1:]:
        if token.type == "ARGUMENTS":
            rest = gotext.from_bytes_view(token.value)
            break
        flag = _unquote_flag(token.value)
        if flag == "--":
            # A bare "--" ends the flags; everything after it is arguments,
            # even words that look like flags.
            rest = gotext.from_bytes_view(view[token.end :])
            break
        flags.append(flag)
    return keyword, tuple(flags), gotext.trim_space(rest)


def _unquote_flag(raw: str) -> str:
    """A flag word without its quotes and escapes, in the bytes view.

    Quotes group and are dropped; a backslash keeps the next character, in or
    out of quotes; a lone backslash at the very end is dropped.
    """
    if "\\" not in raw and '"' not in raw and "'" not in raw:
        return raw
    out: list[str] = []
    quote = ""
    index = 0
    while index < len(raw):
        char = raw[index]
        if quote and char == quote:
            quote = ""
        elif not quote and char in "'\"":
            quote = char
        elif char == "\\":
            index += 1
            if index < len(raw):
                out.append(raw[index])
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _read_arguments(keyword: str, rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    keyword = gotext.go_lower(keyword)
    if keyword == "onbuild":  # only reached with nothing after it
        return (), False
    reader = _READERS.get(keyword)
    if reader is None:
        # Not an instruction: BuildKit's parser keeps the line with one empty
        # argument and leaves the refusal to the instruction layer.
        return ("",), False
    return reader(rest, escape)


def _maybe_json(rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    """RUN, CMD, ENTRYPOINT, SHELL: the exec form, else the whole text."""
    if rest == "":
        return (), False
    try:
        return _json_array(rest), True
    except _NotJSON:
        return (rest,), False


def _maybe_json_to_list(rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    """COPY, ADD, VOLUME: the JSON form, else words split on white space."""
    try:
        return _json_array(rest), True
    except _NotJSON:
        return _whitespace_delimited(rest, escape)


def _whitespace_delimited(rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    """FROM, EXPOSE: words split on ASCII white space, quotes not special."""
    if rest == "":
        return (), False
    return tuple(_WHITESPACE.split(rest)), False


def _whole(rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    """USER, WORKDIR, STOPSIGNAL, MAINTAINER: the rest of the line as one word."""
    if rest == "":
        return (), False
    return (rest,), False


def _key_values(rest: str, escape: str, keyword: str) -> tuple[tuple[str, ...], bool]:
    """ENV, LABEL: ``k=v k2="v 2"`` pairs, or the legacy ``k v`` form.

    The legacy form is chosen when the first word has no "="; its value is the
    rest of the line, verbatim.  Quotes are kept for the expansion step.  Each
    pair comes as a triple (key, value, separator), the separator being "="
    or "" for the legacy form, as BuildKit's parse tree holds them.
    """
    words = _words(rest, escape)
    if not words:
        return (), False
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ParseError(f"{keyword} must have two arguments")
        return (parts[0], parts[1], ""), False
    pairs: list[str] = []
    for word in words:
        if "=" not in word:
            raise ParseError(
                f"Syntax error - can't find = in {gotext.go_quote(word)}."
                " Must be of the form: name=value"
            )
        key, _, value = word.partition("=")
        pairs += (key, value, "=")
    return tuple(pairs), False


def _env(rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    return _key_values(rest, escape, "ENV")


def _label(rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    return _key_values(rest, escape, "LABEL")


def _names(rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    """ARG: one ``name`` or ``name=default`` per word."""
    return tuple(_words(rest, escape)), False


def _health(rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    """HEALTHCHECK: the type word (CMD or NONE), then the exec or shell form.

    BuildKit finds the end of the first word byte by byte, so it works on the
    bytes view like the flags do.
    """
    view = gotext.to_bytes_view(rest)
    end = 0
    while end < len(view) and view[end] not in gotext.GO_SPACE:
        end += 1
    if end == 0:
        return (), False
    start = end
    while start < len(view) and view[start] in gotext.GO_SPACE:
        start += 1
    kind = gotext.from_bytes_view(view[:end])
    command, is_json = _maybe_json(gotext.from_bytes_view(view[start:]), escape)
    return (kind, *command), is_json


def _words(rest: str, escape: str) -> list[str]:
    """Words split on unquoted white space; quotes and escapes are kept.

    A quoted empty word ("") counts as a word; an escape character keeps the
    character after it in the same word, and one at the very end is dropped.
    """
    if escape not in rest and '"' not in rest and "'" not in rest:
        # Nothing to group or escape: plain splitting gives the same words.
        plain = [word for word in _GO_SPACES.split(rest) if word]
        if max(rest, default="") >= "\udc80":  # may hold invalid bytes
            plain = ["".join(_rune(char) for char in word) for word in plain]
        return plain
    words: list[str] = []
    word: list[str] = []
    quote = ""
    in_word = False
    blank_ok = False
    index = 0
    length = len(rest)
    while index < length:
        char = _rune(rest[index])
        if not in_word:
            if char in gotext.GO_SPACE:
                index += 1
                continue
            in_word = True
        if not quote:
            if char in gotext.GO_SPACE:
                if blank_ok or word:
                    words.append("".join(word))
                word = []
                blank_ok = False
                in_word = False
                index += 1
                continue
            if char in "'\"":
                quote = char
                blank_ok = True
            elif char == escape:
                if index + 1 == length:
                    index += 1
                    continue
                word.append(char)
                index += 1
                char = _rune(rest[index])
            word.append(char)
        else:
            if char == quote:
                quote = ""
            elif char == escape and quote != "'":
                if index + 1 == length:
                    quote = ""
                    index += 1
                    continue
                word.append(char)
                index += 1
                char = _rune(rest[index])
            word.append(char)
        index += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


_rune = gotext.as_runes


def _json_array(rest: str) -> tuple[str, ...]:
    """The exec form's strings; _NotJSON when the text is no JSON array.

    A well-formed JSON array holding anything but strings is an error, not
    a fallback: BuildKit refuses ``CMD ["a", 1]``.  What follows the array
    is ignored (``CMD ["a"] b`` runs ``a``), as Go's json.Decoder does.
    """
    rest = gotext.trim_left_space(rest)
    if not rest.startswith("["):
        raise _NotJSON
    end = _json_value_end(rest)
    try:
        tree = grammar.load_parser().parse(rest[:end], "exec_form")
    except grammar.GrammarSyntaxError as err:
        raise _NotJSON from err
    (array,) = tree.children
    assert isinstance(array, grammar.Tree)
    _check_numbers(array)
    strings: list[str] = []
    for element in array.children:
        if not (isinstance(element, grammar.Token) and element.type == "JSON_STRING"):
            raise ParseError(NOT_STRING_ARRAY)
        strings.append(_json_string(element.value))
    return tuple(strings)


def _json_value_end(text: str) -> int:
    """The offset just past the JSON value that opens text (with "[").

    Only brackets and strings are tracked; the grammar checks the rest.
    """
    depth = 0
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            index += 1
            while index < length and text[index] != '"':
                index += 2 if text[index] == "\\" else 1
            if index >= length:
                raise _NotJSON
        elif char in "[{":
            depth += 1
            if depth > _JSON_MAX_DEPTH:
                raise _NotJSON
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise _NotJSON


def _check_numbers(tree: grammar.Tree) -> None:
    """Go decodes JSON numbers as float64 and fails on ones out of its range."""
    pending: list[grammar.Tree] = [tree]
    while pending:
        for child in pending.pop().children:
            if isinstance(child, grammar.Tree):
                pending.append(child)
            elif child.type == "JSON_NUMBER" and float(child.value) in (
                float("inf"),
                float("-inf"),
            ):
                raise _NotJSON


_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _json_string(token: str) -> str:
    """A JSON string literal's value, decoded as Go's encoding/json does.

    Invalid UTF-8 and unpaired surrogate escapes become U+FFFD.
    """
    body = token[1:-1]
    if "\\" not in body and not any("\ud800" <= char <= "\udfff" for char in body):
        return body
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append("\ufffd" if "\ud800" <= char <= "\udfff" else char)
            index += 1
            continue
        kind = body[index + 1]
        if kind != "u":
            out.append(_SIMPLE_ESCAPES[kind])
            index += 2
            continue
        code = int(body[index + 2 : index + 6], 16)
        index += 6
        if 0xD800 <= code <= 0xDBFF and body[index : index + 2] == "\\u":
            low = int(body[index + 2 : index + 6], 16)
            if 0xDC00 <= low <= 0xDFFF:
                out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                index += 6
                continue
        out.append("\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code))
    return "".join(out)


_READERS = {
    "add": _maybe_json_to_list,
    "arg": _names,
    "cmd": _maybe_json,
    "copy": _maybe_json_to_list,
    "entrypoint": _maybe_json,
    "env": _env,
    "expose": _whitespace_delimited,
    "from": _whitespace_delimited,
    "healthcheck": _health,
    "label": _label,
    "maintainer": _whole,
    "run": _maybe_json,
    "shell": _maybe_json,
    "stopsignal": _whole,
    "user": _whole,
    "volume": _maybe_json_to_list,
    "workdir": _whole,
}
