"""The ``--name[=value]`` flags of one instruction, checked as BuildKit's BFlags checks them.

Each instruction declares the flags it takes (``FlagSpec``); ``parse_flags``
reads the raw flag words of a Node against them.  A bool flag is true when
given bare or ``=true`` (any case) and false with ``=false``; a string flag
needs ``=value``; only a repeatable flag (``--mount``, ``--exclude``) may be
given twice.  The messages are BuildKit's, word for word, because users
search for them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from builder.errors import BadFlag
from builder.frontend import gotext, suggest

__all__ = ["FlagKind", "FlagSpec", "ParsedFlags", "parse_flags"]


class FlagKind(enum.Enum):
    BOOL = "bool"
    STRING = "string"
    STRINGS = "strings"  # repeatable; every value is kept, in order


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """One flag an instruction takes, and its value when not given."""

    name: str  # without the leading "--"
    kind: FlagKind
    default: str = ""


@dataclass(frozen=True, slots=True)
class ParsedFlags:
    """The flag values of one instruction: every declared flag has one.

    Tuples of pairs rather than dicts keep the value frozen and hashable;
    there are at most a handful of flags, so lookups stay cheap.
    """

    single: tuple[tuple[str, str], ...]
    repeated: tuple[tuple[str, tuple[str, ...]], ...]
    used: tuple[str, ...]  # names given on the line, in first-use order

    def value(self, name: str) -> str:
        for key, value in self.single:
            if key == name:
                return value
        raise KeyError(name)

    def values(self, name: str) -> tuple[str, ...]:
        for key, values in self.repeated:
            if key == name:
                return values
        raise KeyError(name)

    def is_true(self, name: str) -> bool:
        return self.value(name) == "true"

    def is_used(self, name: str) -> bool:
        return name in self.used


def parse_flags(words: tuple[str, ...], *specs: FlagSpec) -> ParsedFlags:
    """Check words against specs and return every flag's value; raises BadFlag.

    The first bad word stops the reading, as in BuildKit, so the error names
    the first problem on the line.
    """
    by_name = {spec.name: spec for spec in specs}
    single = {
        spec.name: (_bool_default(spec) if spec.kind is FlagKind.BOOL else spec.default)
        for spec in specs
        if spec.kind is not FlagKind.STRINGS
    }
    repeated: dict[str, list[str]] = {
        spec.name: [] for spec in specs if spec.kind is FlagKind.STRINGS
    }
    used: list[str] = []
    for word in words:
        if word == "--":
            # The end of the flags; the parser normally consumes it already.
            break
        if not word.startswith("--"):
            raise BadFlag(f"arg should start with -- : {word}")
        flag_name, has_value, value = word.partition("=")
        name = flag_name[2:]
        spec = by_name.get(name)
        if spec is None:
            match = suggest.closest(name, by_name, case_sensitive=True)
            hint = f"did you mean {match}?" if match else ""
            raise BadFlag(f"unknown flag: {flag_name}", hint=hint)
        if name in used and spec.kind is not FlagKind.STRINGS:
            raise BadFlag(f"duplicate flag specified: {flag_name}")
        if name not in used:
            used.append(name)
        if spec.kind is FlagKind.BOOL:
            single[name] = _bool_value(flag_name, has_value == "=", value)
        elif not has_value:
            raise BadFlag(f"missing a value on flag: {flag_name}")
        elif spec.kind is FlagKind.STRING:
            single[name] = value
        else:
            repeated[name].append(value)
    return ParsedFlags(
        single=tuple(single.items()),
        repeated=tuple((name, tuple(values)) for name, values in repeated.items()),
        used=tuple(used),
    )


def _bool_default(spec: FlagSpec) -> str:
    return "true" if spec.default == "true" else "false"


def _bool_value(flag_name: str, has_value: bool, value: str) -> str:
    # "--link" alone means true, but "--link=" is a mistake, not a true.
    if has_value and value == "":
        raise BadFlag(f"missing a value on flag: {flag_name}")
    lowered = gotext.go_lower(value)
    if lowered in ("", "true"):
        return "true"
    if lowered == "false":
        return "false"
    raise BadFlag(f"expecting boolean value for flag {flag_name}, not: {value}")
