"""The text forms: ``build --check``'s full report and the list after a build."""

from __future__ import annotations

from builder.checks.report import render_full, render_short
from tests.checks.helpers import check


def test_full_report_shows_each_warning_in_place_then_the_verdict() -> None:
    result = check("FROM scratch\nENV a=1\nENV b=2\nENV c=3\nCMD run \\\n  --fast\nENV d=4\n")
    assert render_full(result) == (
        "WARNING: JSONArgsRecommended - JSON arguments recommended for ENTRYPOINT/CMD to "
        "prevent unintended behavior related to OS signals\n"
        "JSON arguments recommended for CMD to prevent unintended behavior related to OS "
        "signals\n"
        "Dockerfile:5-6\n"
        "--------------------\n"
        " 3 |     ENV b=2\n"
        " 4 |     ENV c=3\n"
        " 5 | >>> CMD run \\\n"
        " 6 | >>>   --fast\n"
        " 7 |     ENV d=4\n"
        "--------------------\n"
        "\n"
        "Check complete, 1 warning has been found!\n"
    )


def test_full_report_without_warnings() -> None:
    assert render_full(check('FROM scratch\nCMD ["run"]\n')) == (
        "Check complete, no warnings found.\n"
    )


def test_full_report_counts_in_plural() -> None:
    text = render_full(check("FROM scratch AS Build\nCMD run\n"))
    assert text.endswith("Check complete, 2 warnings have been found!\n")


def test_short_list_after_a_build() -> None:
    result = check("FROM scratch AS Build\nCMD run\n")
    assert render_short(result.warnings) == (
        "2 warnings found:\n"
        " - StageNameCasing: Stage name 'Build' should be lowercase (line 1)\n"
        " - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended "
        "behavior related to OS signals (line 2)\n"
    )
    assert render_short(()) == ""
