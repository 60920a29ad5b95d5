"""Text rules that BuildKit inherits from Go and that Python spells differently.

BuildKit's parser is written in Go, and its reading of a Dockerfile depends on
Go's idea of white space (``unicode.IsSpace``), of trimming, of case folding
and of quoting (``strconv.Quote``, used by the parse-tree dump).  Python's own
``str.isspace``/``str.strip``/``str.lower`` differ at the edges (Python counts
\\x1c-\\x1f as space, lower-cases a final sigma as ς, expands ß to SS), so the
frontend uses these instead wherever the difference could show.

Dockerfile text is decoded as UTF-8 with ``surrogateescape``: an invalid byte
becomes a lone surrogate U+DC80..U+DCFF and survives the round trip, as Go
strings keep invalid bytes.
"""

from __future__ import annotations

__all__ = [
    "GO_SPACE",
    "as_runes",
    "decode_source",
    "encode_source",
    "from_bytes_view",
    "go_lower",
    "go_quote",
    "go_upper",
    "is_go_space",
    "to_bytes_view",
    "trim_left_space",
    "trim_space",
]

# unicode.IsSpace: the Latin-1 spaces plus the White_Space property.
GO_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SPACE_CHARS = "".join(sorted(GO_SPACE))


def is_go_space(char: str) -> bool:
    return char in GO_SPACE


def trim_space(text: str) -> str:
    """strings.TrimSpace."""
    return text.strip(_SPACE_CHARS)


def trim_left_space(text: str) -> str:
    """strings.TrimLeftFunc(s, unicode.IsSpace)."""
    return text.lstrip(_SPACE_CHARS)


def decode_source(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def encode_source(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def to_bytes_view(text: str) -> str:
    """The text with one character per UTF-8 byte (Latin-1).

    Parts of BuildKit's parser walk a line byte by byte and treat each byte as
    a rune, so the bytes 0x85 and 0xA0 (inside multi-byte characters) count as
    white space there.  Working on this view reproduces that exactly, and a
    word collected from it is already what Go's ``WriteRune(rune(byte))`` makes.
    """
    if text.isascii():
        return text
    return encode_source(text).decode("latin-1")


def from_bytes_view(view: str) -> str:
    """Inverse of to_bytes_view for a slice of the original bytes."""
    if view.isascii():
        return view
    return decode_source(view.encode("latin-1"))


_INVALID_BYTES_AS_RUNES = {code: 0xFFFD for code in range(0xDC80, 0xDD00)}


def as_runes(text: str) -> str:
    """The text as Go's rune loops read it: each invalid byte becomes U+FFFD.

    Source text is decoded with surrogateescape, so an invalid byte is a
    surrogate U+DC80..U+DCFF; ranging over a Go string (or scanning it with
    text/scanner or regexp) yields U+FFFD for it, and that is what gets
    written back.
    """
    return text.translate(_INVALID_BYTES_AS_RUNES)


def go_lower(text: str) -> str:
    """strings.ToLower: per character, simple case mapping only."""
    if text.isascii():
        return text.lower()
    return "".join(_lower_char(char) for char in text)


def go_upper(text: str) -> str:
    """strings.ToUpper: per character, simple case mapping only (ß stays ß)."""
    if text.isascii():
        return text.upper()
    return "".join(_upper_char(char) for char in text)


def _lower_char(char: str) -> str:
    lowered = char.lower()
    if len(lowered) == 1:
        return lowered
    # Only U+0130 (İ) has a multi-character full lower-case form; its simple
    # mapping, which Go uses, is the first character of that form.
    return lowered[0]


def _upper_char(char: str) -> str:
    raised = char.upper()
    # A multi-character full mapping (ß → SS, ŉ → ʼN) has no simple mapping.
    return raised if len(raised) == 1 else char


_QUOTE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """strconv.Quote: a double-quoted Go string literal.

    Printable characters stay as they are; the rest become \\a-style, \\xHH,
    \\uHHHH or \\UHHHHHHHH escapes; an invalid byte (a surrogate from
    decode_source) becomes \\xHH of that byte.
    """
    out = ['"']
    for char in text:
        escaped = _QUOTE_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
            continue
        code = ord(char)
        if char.isprintable():
            out.append(char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
