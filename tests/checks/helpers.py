"""Run the build checks on Dockerfile text; the findings as (rule, message, line) triples."""

from __future__ import annotations

from collections.abc import Callable

from builder.checks.findings import CheckResult
from builder.checks.runner import run_checks
from builder.dockerignore import IgnoreRules
from builder.frontend import commands
from builder.plan.graph import BaseImage
from builder.plan.settings import ImageSettings

Finding = tuple[str, str, int]


def check(
    text: str,
    *,
    build_args: dict[str, str] | None = None,
    target: str = "",
    all_stages: bool = True,
    images: dict[str, ImageSettings] | None = None,
    ignore: list[str] | None = None,
) -> CheckResult:
    resolve: Callable[[str, commands.Instruction], BaseImage | None] | None = None
    if images is not None:
        known = images

        def resolve(name: str, instruction: commands.Instruction) -> BaseImage | None:
            if name not in known:
                return None  # as an image that cannot be looked at
            return BaseImage(reference=name, manifest_digest="sha256:" + "0" * 64,
                             settings=known[name], layers=(), history=(),
                             architecture="amd64", os="linux")

    return run_checks(
        text.encode(),
        build_args=tuple((build_args or {}).items()),
        target=target,
        all_stages=all_stages,
        resolve_image=resolve,
        ignore=IgnoreRules.from_patterns(ignore) if ignore is not None else None,
    )


def findings(text: str, **options: object) -> list[Finding]:
    result = check(text, **options)  # type: ignore[arg-type]
    return [(w.rule, w.message, w.location.start_line) for w in result.warnings]


def rules_found(text: str, **options: object) -> list[str]:
    return [rule for rule, _, _ in findings(text, **options)]
