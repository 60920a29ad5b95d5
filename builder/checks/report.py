"""Warnings as text: the full form of ``pybuild build --check`` and the short list after a build.

The full form gives, per warning, the rule and its description, the
message, ``FILE:LINE`` and the lines around it with the offending ones
marked, then a one-line verdict; the short form is one line per warning,
``Rule: message (line N)``, as buildx prints after a build.
"""

from __future__ import annotations

from builder.checks.findings import CheckResult, CheckWarning

__all__ = ["render_full", "render_short"]

_CONTEXT_LINES = 2  # shown before and after the warning's own lines
_RULER = "-" * 20


def _count(number: int) -> str:
    return f"{number} warning" + ("" if number == 1 else "s")


def render_short(warnings: tuple[CheckWarning, ...]) -> str:
    """The list printed after a build; empty when there is nothing to say."""
    if not warnings:
        return ""
    lines = [f"{_count(len(warnings))} found:"]
    lines.extend(f" - {warning.short()}" for warning in warnings)
    return "\n".join(lines) + "\n"


def render_full(result: CheckResult) -> str:
    """What ``pybuild build --check`` prints: every warning in place, then the verdict."""
    blocks = [_render_one(warning, result) for warning in result.warnings]
    count = len(result.warnings)
    if count == 0:
        verdict = "Check complete, no warnings found."
    else:
        verb = "has" if count == 1 else "have"
        verdict = f"Check complete, {_count(count)} {verb} been found!"
    return "".join(block + "\n" for block in blocks) + verdict + "\n"


def _render_one(warning: CheckWarning, result: CheckResult) -> str:
    location = warning.location
    lines = [
        f"WARNING: {warning.rule} - {warning.description}",
        warning.message,
        f"{location.file}:{location.start_line}"
        + (f"-{location.end_line}" if location.end_line > location.start_line else ""),
    ]
    first = max(1, location.start_line - _CONTEXT_LINES)
    last = min(len(result.lines), location.end_line + _CONTEXT_LINES)
    if first <= last:
        width = len(str(last))
        lines.append(_RULER)
        for number in range(first, last + 1):
            marker = ">>>" if location.start_line <= number <= location.end_line else "   "
            text = _printable(result.lines[number - 1].rstrip("\r\n"))
            lines.append(f" {number:>{width}} | {marker} {text}".rstrip())
        lines.append(_RULER)
    return "\n".join(lines) + "\n"


def _printable(text: str) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > 200:
        text = text[:200] + "..."
    return "".join(char if char.isprintable() or char == "\t" else "?" for char in text)
