"""Which checks run and whether a warning fails the build: ``# check=skip=A,B;error=true``.

The options come from the Dockerfile's ``check`` directive, or from the
``BUILDKIT_DOCKERFILE_CHECK`` build argument, which replaces the directive
(as in BuildKit, so CI can tighten a Dockerfile it does not own).  The
reading follows BuildKit's ParseLintOptions: at most three ``;``-separated
options (the third keeps any further ``;``), ``skip`` and ``experimental``
take ``all`` or a comma list, ``error`` takes a Go boolean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from builder.checks.rules import Rule
from builder.errors import DockerfileError, SourceLocation, UsageError
from builder.frontend.gotext import go_quote, trim_space
from builder.frontend.syntax import SyntaxTree

__all__ = ["CHECK_BUILD_ARG", "CheckConfig", "check_config", "parse_check_options"]

CHECK_BUILD_ARG = "BUILDKIT_DOCKERFILE_CHECK"

# strconv.ParseBool's spellings.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class _BadOption(ValueError):
    """A check option BuildKit refuses; the message is BuildKit's."""


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """What the check options say: skipped rules, enabled experimental ones, error mode."""

    skip_all: bool = False
    skip: frozenset[str] = frozenset()
    experimental_all: bool = False
    experimental: frozenset[str] = frozenset()
    error: bool = False

    def enabled(self, rule: Rule) -> bool:
        """Whether a warning of ``rule`` is reported.

        An experimental rule runs only when named (or ``experimental=all``),
        and then ``skip`` does not turn it off again: BuildKit's Linter.Run.
        """
        if rule.experimental:
            return self.experimental_all or rule.name in self.experimental
        return not (self.skip_all or rule.name in self.skip)


def _rule_list(value: str) -> tuple[bool, frozenset[str]]:
    value = trim_space(value)
    if value == "all":
        return True, frozenset()
    return False, frozenset(trim_space(name) for name in value.split(","))


def parse_check_options(text: str) -> CheckConfig:
    """``skip=...;experimental=...;error=...`` → CheckConfig; raises ValueError (BuildKit's words)."""
    text = trim_space(text)
    if text == "":
        return CheckConfig()
    skip_all = experimental_all = error = False
    skip: frozenset[str] = frozenset()
    experimental: frozenset[str] = frozenset()
    for part in text.split(";", 2):
        key, separator, value = part.partition("=")
        if not separator:
            raise _BadOption(f"invalid check option {go_quote(part)}")
        key = trim_space(key)
        if key == "skip":
            skip_all, skip = _rule_list(value)
        elif key == "experimental":
            experimental_all, experimental = _rule_list(value)
        elif key == "error":
            flag = trim_space(value)
            if flag not in _TRUE | _FALSE:
                raise _BadOption(
                    f"failed to parse check option {go_quote(part)}: strconv.ParseBool: "
                    f"parsing {go_quote(flag)}: invalid syntax"
                )
            error = flag in _TRUE
        else:
            raise _BadOption(f"invalid check option {go_quote(key)}")
    return CheckConfig(skip_all, skip, experimental_all, experimental, error)


def check_config(tree: SyntaxTree, build_args: Mapping[str, str], filename: str) -> CheckConfig:
    """The options for one build: the build argument if given, else the directive.

    A bad directive is an error at its line (the build would fail there in
    BuildKit too); a bad build argument is a usage error.
    """
    if CHECK_BUILD_ARG in build_args:
        try:
            return parse_check_options(build_args[CHECK_BUILD_ARG])
        except _BadOption as err:
            raise UsageError(f"--build-arg {CHECK_BUILD_ARG}: {err}") from None
    for directive in tree.directives:
        if directive.name != "check":
            continue
        try:
            return parse_check_options(directive.value)
        except _BadOption as err:
            line = directive.line
            raise DockerfileError(
                f"failed to parse check options: {err}",
                location=SourceLocation(filename, line, line),
                source_lines=tree.lines[line - 1 : line],
            ) from None
    return CheckConfig()
