"""Go's number readers that HEALTHCHECK flags go through: time.ParseDuration, strconv.ParseInt.

BuildKit reads ``--interval=1m30s`` with Go's time.ParseDuration and
``--retries=3`` with strconv.ParseInt(s, 10, 32).  Python has neither, and
what each accepts (``.5s``, ``1h-2m`` refused, ``µs``, ``+3``) and the error
text it gives are part of what a Dockerfile means, so both are rebuilt here
from their documented behaviour.  Errors are ValueError with Go's message.
"""

from __future__ import annotations

from builder.frontend import gotext

__all__ = ["parse_duration", "parse_int32"]

_NANOSECONDS_PER_UNIT = {
    b"ns": 1,
    b"us": 1_000,
    "\u00b5s".encode(): 1_000,  # micro sign
    "\u03bcs".encode(): 1_000,  # Greek small letter mu
    b"ms": 1_000_000,
    b"s": 1_000_000_000,
    b"m": 60_000_000_000,
    b"h": 3_600_000_000_000,
}
_LIMIT = 1 << 63  # Go keeps the magnitude in a uint64 and checks it against this
_DIGITS = b"0123456789"


def parse_duration(text: str) -> int:
    """Nanoseconds in text, read as time.ParseDuration reads it.

    A duration is an optional sign and one or more decimal numbers, each with
    an optional fraction and a unit: ``300ms``, ``-1.5h``, ``2h45m``.  A bare
    ``0`` needs no unit.  Go works on the UTF-8 bytes, so this does too.
    """
    data = gotext.encode_source(text)
    invalid = ValueError(f"time: invalid duration {_time_quote(data)}")
    rest = data
    negative = False
    if rest[:1] in (b"-", b"+"):
        negative = rest[:1] == b"-"
        rest = rest[1:]
    if rest == b"0":
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        if rest[0] != ord(".") and rest[0] not in _DIGITS:
            raise invalid
        digits = _count_digits(rest)
        whole = _leading_int(rest[:digits])
        if whole is None:
            raise invalid
        rest = rest[digits:]
        fraction, scale, fraction_digits = 0, 1.0, 0
        if rest[:1] == b".":
            rest = rest[1:]
            fraction_digits = _count_digits(rest)
            fraction, scale = _leading_fraction(rest[:fraction_digits])
            rest = rest[fraction_digits:]
        if digits == 0 and fraction_digits == 0:
            raise invalid
        unit_end = 0
        while unit_end < len(rest) and rest[unit_end] != ord(".") and rest[unit_end] not in _DIGITS:
            unit_end += 1
        if unit_end == 0:
            raise ValueError(f"time: missing unit in duration {_time_quote(data)}")
        unit_name = rest[:unit_end]
        rest = rest[unit_end:]
        unit = _NANOSECONDS_PER_UNIT.get(unit_name)
        if unit is None:
            raise ValueError(
                f"time: unknown unit {_time_quote(unit_name)} in duration {_time_quote(data)}"
            )
        if whole > _LIMIT // unit:
            raise invalid
        value = whole * unit
        if fraction > 0:
            # Go multiplies in float64 and truncates, which can lose a
            # nanosecond on long fractions; the same arithmetic keeps it equal.
            value += int(float(fraction) * (float(unit) / scale))
            if value > _LIMIT:
                raise invalid
        total += value
        if total > _LIMIT:
            raise invalid
    if negative:
        return -total
    if total > _LIMIT - 1:
        raise invalid
    return total


def _count_digits(data: bytes) -> int:
    count = 0
    while count < len(data) and data[count] in _DIGITS:
        count += 1
    return count


def _leading_int(digits: bytes) -> int | None:
    """The digits as an integer, or None past 2**63 (Go's leadingInt overflow)."""
    value = 0
    for digit in digits:
        value = value * 10 + digit - ord("0")
        if value > _LIMIT:
            return None
    return value


def _leading_fraction(digits: bytes) -> tuple[int, float]:
    """The fraction's digits as an integer and its power of ten, Go's way.

    Digits past what fits in an int64 are dropped rather than refused.
    """
    value, scale = 0, 1.0
    for digit in digits:
        if value > (_LIMIT - 1) // 10:
            break
        candidate = value * 10 + digit - ord("0")
        if candidate > _LIMIT:
            break
        value = candidate
        scale *= 10
    return value, scale


def _time_quote(data: bytes) -> str:
    """The time package's own quoting: non-ASCII and control bytes as \\xHH."""
    out = ['"']
    text = data.decode("utf-8", "surrogateescape")
    for char in text:
        encoded = gotext.encode_source(char)
        if char == "\ufffd" or ord(char) >= 0x80 or ord(char) < 0x20:
            out.extend(f"\\x{byte:02x}" for byte in encoded)
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def parse_int32(text: str) -> int:
    """text as strconv.ParseInt(text, 10, 32) reads it: a sign, then ASCII digits.

    A value that overflows is refused as out of range even when a bad
    character follows it, because Go stops reading at the overflow.
    """
    quoted = gotext.go_quote(text)
    syntax = ValueError(f"strconv.ParseInt: parsing {quoted}: invalid syntax")
    out_of_range = ValueError(f"strconv.ParseInt: parsing {quoted}: value out of range")
    digits = text
    negative = False
    if digits[:1] in ("+", "-"):
        negative = digits[:1] == "-"
        digits = digits[1:]
    if not digits:
        raise syntax
    magnitude = 0
    for char in digits:
        if not "0" <= char <= "9":
            raise syntax
        magnitude = magnitude * 10 + ord(char) - ord("0")
        if magnitude > 0xFFFF_FFFF:
            raise out_of_range
    if (not negative and magnitude >= 1 << 31) or (negative and magnitude > 1 << 31):
        raise out_of_range
    return -magnitude if negative else magnitude
