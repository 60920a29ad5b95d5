"""What the checks found: one CheckWarning per finding, collected by a Linter that honours the
check options.

Rules report through ``Linter.report``; a rule the options skip (or an
experimental one not turned on) reports nothing.  The result is frozen data
the CLI prints and the engine consults before building.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.checks.config import CheckConfig
from builder.checks.rules import Rule
from builder.errors import SourceLocation

__all__ = ["CheckResult", "CheckWarning", "Linter"]


@dataclass(frozen=True, slots=True)
class CheckWarning:
    """One finding: the rule's name and description, what it says here, and where."""

    rule: str
    description: str
    message: str
    location: SourceLocation

    def short(self) -> str:
        """``Rule: message (line N)``, the one-line form printed after a build."""
        return f"{self.rule}: {self.message} (line {self.location.start_line})"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Every warning of a Dockerfile (by line), the options that applied, and its text."""

    warnings: tuple[CheckWarning, ...]
    config: CheckConfig
    filename: str
    lines: tuple[str, ...]  # the Dockerfile's lines, to show the warnings in place

    @property
    def failed(self) -> bool:
        """``error=true`` and something was found: BuildKit refuses to build."""
        return self.config.error and bool(self.warnings)

    def failure_message(self) -> str:
        """BuildKit's error for a failed check, naming each rule once."""
        rules = dict.fromkeys(warning.rule for warning in self.warnings)
        return f"lint violation found for rules: {', '.join(rules)}"


class Linter:
    """Collects warnings for one Dockerfile; the same finding twice is kept once."""

    def __init__(self, config: CheckConfig) -> None:
        self.config = config
        self._found: dict[CheckWarning, None] = {}

    def report(self, rule: Rule, message: str, location: SourceLocation) -> None:
        if self.config.enabled(rule):
            self._found.setdefault(CheckWarning(rule.name, rule.description, message, location))

    def warnings(self) -> tuple[CheckWarning, ...]:
        """In Dockerfile order; findings on one line keep the order they were made in."""
        return tuple(sorted(self._found, key=lambda warning: warning.location.start_line))
