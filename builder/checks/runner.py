"""One Dockerfile → its build-check warnings: the options, then each family of rules.

The families run in BuildKit's order (how the text is written, the FROM
lines with the global ARGs, then each needed stage in its scope) and the
warnings come out sorted by line.  Nothing here builds or writes anything;
base images are only looked at, through the same resolver the planner uses.
"""

from __future__ import annotations

from collections.abc import Iterable

from builder.checks.config import check_config
from builder.checks.dispatch import ImageLookup, check_stages
from builder.checks.findings import CheckResult, Linter
from builder.checks.from_args import check_from_lines
from builder.checks.rules import ALL_RULES
from builder.checks.source import read_source
from builder.checks.text_rules import check_text
from builder.frontend.commands import From
from builder.frontend.parser import parse_dockerfile
from builder.frontend.syntax import SyntaxTree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.dockerignore import IgnoreRules

__all__ = ["run_checks"]


def run_checks(
    dockerfile: bytes | SyntaxTree,
    *,
    filename: str = "Dockerfile",
    build_args: Iterable[tuple[str, str]] = (),
    target: str = "",
    all_stages: bool = False,
    resolve_image: ImageLookup | None = None,
    ignore: IgnoreRules | None = None,
) -> CheckResult:
    """Check a Dockerfile; raises the frontend's DockerfileError for one that does not parse.

    ``all_stages`` checks every stage (``build --check`` without --target);
    otherwise only the stages the target needs are walked, as a build walks
    them.  Without ``resolve_image`` base images count as empty; without
    ``ignore`` CopyIgnoredFile has nothing to match.
    """
    tree = dockerfile if isinstance(dockerfile, SyntaxTree) else parse_dockerfile(
        dockerfile, filename=filename
    )
    args = dict(build_args)
    config = check_config(tree, args, filename)
    linter = Linter(config)
    source = read_source(tree, filename)
    if any(config.enabled(rule) for rule in ALL_RULES):
        check_text(source, linter)
        stages = [instruction for instruction in source.instructions
                  if isinstance(instruction, From)]
        # TARGETSTAGE: the stage asked for, else the last (as BuildKit names it).
        target_stage = target or (stages[-1].stage_name if stages else "")
        scope = check_from_lines(source, args, target_stage, linter)
        check_stages(
            source, scope, args, linter,
            target=target, all_stages=all_stages, resolve_image=resolve_image, ignore=ignore,
        )
    return CheckResult(linter.warnings(), config, filename, tree.lines)
