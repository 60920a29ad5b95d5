"""HEALTHCHECK: its type, command and timing flags, read as BuildKit reads them.

Durations go through Go's time.ParseDuration rules (``gonumbers``) and must
be 0 (unset) or at least 1ms, BuildKit's container.MinimumDuration; retries
go through strconv.ParseInt and must not be negative.
"""

from __future__ import annotations

from builder.errors import BadFlag, ParseError, SourceLocation
from builder.frontend import gotext
from builder.frontend.commands import Healthcheck
from builder.frontend.flags import FlagKind, FlagSpec, ParsedFlags, parse_flags
from builder.frontend.gonumbers import parse_duration, parse_int32
from builder.frontend.syntax import Node

__all__ = ["parse_healthcheck"]

_MINIMUM_DURATION_NS = 1_000_000


def parse_healthcheck(node: Node, location: SourceLocation) -> Healthcheck:
    """HEALTHCHECK: flags are read before the type is checked, durations after the command."""
    if not node.arguments:
        raise ParseError("HEALTHCHECK requires at least one argument")
    kind = gotext.go_upper(node.arguments[0])
    rest = node.arguments[1:]
    if kind == "NONE":
        # BuildKit never reads the flags of HEALTHCHECK NONE: any are ignored.
        if rest:
            raise ParseError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(
            original=gotext.trim_space(node.original), location=location, test=("NONE",)
        )
    flags = parse_flags(
        node.flags,
        FlagSpec("interval", FlagKind.STRING),
        FlagSpec("timeout", FlagKind.STRING),
        FlagSpec("start-period", FlagKind.STRING),
        FlagSpec("start-interval", FlagKind.STRING),
        FlagSpec("retries", FlagKind.STRING),
    )
    if kind != "CMD":
        raise ParseError(f"Unknown type {gotext.go_quote(kind)} in HEALTHCHECK (try CMD)")
    words = rest if node.is_json else ((" ".join(rest),) if rest else ())
    if not words:
        raise ParseError("Missing command after HEALTHCHECK CMD")
    return Healthcheck(
        original=gotext.trim_space(node.original),
        location=location,
        test=("CMD" if node.is_json else "CMD-SHELL", *words),
        interval_ns=_interval(flags, "interval"),
        timeout_ns=_interval(flags, "timeout"),
        start_period_ns=_interval(flags, "start-period"),
        start_interval_ns=_interval(flags, "start-interval"),
        retries=_retries(flags.value("retries")),
    )


def _interval(flags: ParsedFlags, name: str) -> int:
    """A duration flag in nanoseconds: 0 when unset or zero, else at least 1ms."""
    text = flags.value(name)
    if text == "":
        return 0
    try:
        duration = parse_duration(text)
    except ValueError as err:
        raise BadFlag(str(err)) from err
    if duration != 0 and duration < _MINIMUM_DURATION_NS:
        raise BadFlag(f"Interval {gotext.go_quote(name)} cannot be less than 1ms")
    return duration


def _retries(text: str) -> int:
    if text == "":
        return 0
    try:
        retries = parse_int32(text)
    except ValueError as err:
        raise BadFlag(str(err)) from err
    if retries < 0:
        raise BadFlag(f"--retries cannot be negative ({retries})")
    return retries
