"""Build checks, as BuildKit's ``docker build --check``: lint rules over a Dockerfile.

``run_checks`` reads a Dockerfile (and, for scope, the base images the
planner would use) and returns a CheckResult: the warnings, by line, and
the ``# check=`` options (skip, experimental, error).  ``render_full`` and
``render_short`` print them.  One module per family of rules:

    rules.py       each rule's name, description and message (BuildKit's words)
    config.py      the check directive / BUILDKIT_DOCKERFILE_CHECK options
    findings.py    CheckWarning, CheckResult, the Linter that applies the options
    source.py      nodes (as written) beside their typed instructions
    text_rules.py  casing, stage names, MAINTAINER: how the file is written
    from_args.py   the global ARGs and the FROM-line rules
    dispatch.py    the stage walk with ARG/ENV scope: UndefinedVar and the rest
    runner.py      run_checks: the families in order
    report.py      the text forms

Names are re-exported lazily, like the frontend's.
"""

from __future__ import annotations

from builder import lazy

__all__ = [
    "CheckConfig",
    "CheckResult",
    "CheckWarning",
    "parse_check_options",
    "render_full",
    "render_short",
    "run_checks",
]

_HOMES = {
    "CheckConfig": "builder.checks.config",
    "parse_check_options": "builder.checks.config",
    "CheckResult": "builder.checks.findings",
    "CheckWarning": "builder.checks.findings",
    "render_full": "builder.checks.report",
    "render_short": "builder.checks.report",
    "run_checks": "builder.checks.runner",
}

__getattr__ = lazy.exports(__name__, _HOMES)
