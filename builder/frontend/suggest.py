"""The closest known name to a mistyped one ("did you mean …?"), as BuildKit picks it.

BuildKit's util/suggest offers a name when its Levenshtein distance to the
typed word is below 3, and offers nothing when the word is itself a known
name (then the error was about something else).  Instruction keywords are
compared case-insensitively and the suggestion is given in the case the user
typed (``runn`` → ``run``, ``RUNN`` → ``RUN``); flag names are compared as
written.
"""

from __future__ import annotations

from collections.abc import Iterable

from builder.frontend import gotext

__all__ = ["closest", "levenshtein"]

# BuildKit keeps HCL's threshold: a suggestion must be at most two edits away.
_MAX_DISTANCE = 3


def closest(word: str, options: Iterable[str], *, case_sensitive: bool) -> str | None:
    """The option nearest to word, or None when none is close or word is an option.

    BuildKit walks its options in Go map order, so among equally close options
    it picks one at random; we walk them sorted, so the first in sorted order
    wins and the answer is the same on every run.
    """
    typed = word if case_sensitive else gotext.go_lower(word)
    best: str | None = None
    best_distance = _MAX_DISTANCE
    for option in sorted(options):
        candidate = option if case_sensitive else gotext.go_lower(option)
        if candidate == typed:
            return None
        distance = levenshtein(typed, candidate)
        if distance < best_distance:
            best = candidate if case_sensitive else _match_case(candidate, word)
            best_distance = distance
    return best


def levenshtein(first: str, second: str) -> int:
    """Edit distance with unit costs for insertion, deletion and substitution."""
    if len(first) < len(second):
        first, second = second, first
    previous = list(range(len(second) + 1))
    for row, char in enumerate(first, start=1):
        current = [row]
        for column, other in enumerate(second, start=1):
            current.append(
                min(
                    previous[column] + 1,
                    current[column - 1] + 1,
                    previous[column - 1] + (char != other),
                )
            )
        previous = current
    return previous[-1]


def _match_case(suggestion: str, typed: str) -> str:
    """The suggestion in the typed word's case when that was all lower or all upper."""
    if typed == gotext.go_lower(typed):
        return gotext.go_lower(suggestion)
    if typed == gotext.go_upper(typed):
        return gotext.go_upper(suggestion)
    return suggestion
