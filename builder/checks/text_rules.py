"""Checks on how the Dockerfile is written, needing no scope: empty continuation lines,
casing, stage names, MAINTAINER.

BuildKit runs these over every stage, whether the build needs it or not.
"""

from __future__ import annotations

from builder.checks import rules
from builder.checks.findings import Linter
from builder.checks.source import Source
from builder.errors import SourceLocation
from builder.frontend.commands import From, Maintainer
from builder.frontend.gotext import go_lower, go_upper
from builder.frontend.syntax import EMPTY_CONTINUATION

__all__ = ["check_text"]

# Names a stage cannot usefully take: FROM scratch and the build context.
_RESERVED_STAGE_NAMES = frozenset({"context", "scratch"})


def check_text(source: Source, linter: Linter) -> None:
    _check_empty_continuations(source, linter)
    _check_maintainer_and_from_lines(source, linter)
    _check_stage_names(source, linter)
    _check_instruction_casing(source, linter)


def _check_empty_continuations(source: Source, linter: Linter) -> None:
    """The parser's own warnings, at the line it gives (an instruction's last)."""
    for warning in source.tree.warnings:
        if warning.message.startswith(EMPTY_CONTINUATION):
            location = SourceLocation(source.filename, warning.line, warning.line)
            linter.report(rules.NO_EMPTY_CONTINUATION, rules.no_empty_continuation(), location)


def _check_maintainer_and_from_lines(source: Source, linter: Linter) -> None:
    for node, instruction in source.pairs():
        if isinstance(instruction, Maintainer):
            linter.report(
                rules.MAINTAINER_DEPRECATED, rules.maintainer_deprecated(), instruction.location
            )
        if not isinstance(instruction, From) or len(node.arguments) != 3:
            continue
        _, as_word, name = node.arguments
        if name != go_lower(name):
            linter.report(
                rules.STAGE_NAME_CASING, rules.stage_name_casing(name), instruction.location
            )
        keyword = node.keyword
        # A FROM of mixed case is ConsistentInstructionCasing's business.
        if keyword == go_lower(keyword):
            matches = as_word == go_lower(as_word)
        elif keyword == go_upper(keyword):
            matches = as_word == go_upper(as_word)
        else:
            matches = True
        if not matches:
            linter.report(
                rules.FROM_AS_CASING, rules.from_as_casing(keyword, as_word), instruction.location
            )


def _check_stage_names(source: Source, linter: Linter) -> None:
    seen: set[str] = set()
    for instruction in source.instructions:
        if not isinstance(instruction, From) or not instruction.stage_name:
            continue
        name = instruction.stage_name  # already lower case, as stages are looked up
        if name in _RESERVED_STAGE_NAMES:
            linter.report(
                rules.RESERVED_STAGE_NAME, rules.reserved_stage_name(name), instruction.location
            )
        if name in seen:
            linter.report(
                rules.DUPLICATE_STAGE_NAME, rules.duplicate_stage_name(name), instruction.location
            )
        seen.add(name)


def _check_instruction_casing(source: Source, linter: Linter) -> None:
    """Each keyword against the casing most keywords use (a tie counts as upper case).

    As in BuildKit, only the stages' instructions count: the global ARGs
    before the first FROM are neither counted nor checked.
    """
    start = source.first_stage_index()
    nodes = source.tree.nodes[start:]
    located = source.instructions[start:]
    lower = sum(1 for node in nodes if node.keyword == go_lower(node.keyword)
                and node.keyword != go_upper(node.keyword))
    upper = sum(1 for node in nodes if node.keyword == go_upper(node.keyword)
                and node.keyword != go_lower(node.keyword))
    majority_lower = lower > upper
    for node, instruction in zip(nodes, located, strict=True):
        keyword = node.keyword
        if majority_lower and keyword != go_lower(keyword):
            message = rules.consistent_instruction_casing(keyword, "lowercase")
        elif not majority_lower and keyword != go_upper(keyword):
            message = rules.consistent_instruction_casing(keyword, "uppercase")
        else:
            continue
        linter.report(rules.CONSISTENT_INSTRUCTION_CASING, message, instruction.location)
