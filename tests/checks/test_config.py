"""The check options: ``# check=skip=...;error=...;experimental=...`` and the build arg."""

from __future__ import annotations

import pytest

from builder.checks.config import CheckConfig, parse_check_options
from builder.checks.rules import COPY_IGNORED_FILE, JSON_ARGS_RECOMMENDED
from builder.errors import DockerfileError, UsageError
from tests.checks.helpers import check, rules_found

NOISY = "FROM scratch AS Build\nCMD run\nMAINTAINER me\n"


def test_parse_options() -> None:
    assert parse_check_options("") == CheckConfig()
    assert parse_check_options(" skip = A , B ;error=true") == CheckConfig(
        skip=frozenset({"A", "B"}), error=True
    )
    assert parse_check_options("skip=all") == CheckConfig(skip_all=True)
    assert parse_check_options("experimental=all;error=False") == CheckConfig(
        experimental_all=True
    )
    # At most three options; the third keeps any further ";" (BuildKit's SplitN).
    assert parse_check_options("error=1;skip=A;experimental=B;C").experimental == frozenset(
        {"B;C"}
    )


@pytest.mark.parametrize(("text", "message"), [
    ("skip", 'invalid check option "skip"'),
    ("colour=red", 'invalid check option "colour"'),
    ("error=yes",
     ('failed to parse check option "error=yes": strconv.ParseBool: parsing "yes": '
     "invalid syntax")),
])
def test_bad_options_are_refused_with_buildkits_words(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(") + "$"):
        parse_check_options(text)


def test_enabled_experimental_rules_ignore_skip() -> None:
    config = CheckConfig(skip_all=True, experimental=frozenset({"CopyIgnoredFile"}))
    assert not config.enabled(JSON_ARGS_RECOMMENDED)
    assert config.enabled(COPY_IGNORED_FILE)
    assert not CheckConfig().enabled(COPY_IGNORED_FILE)


def test_no_directive_reports_everything() -> None:
    assert rules_found(NOISY) == [
        "StageNameCasing", "JSONArgsRecommended", "MaintainerDeprecated"
    ]


def test_skip_named_rules() -> None:
    text = "# check=skip=StageNameCasing,MaintainerDeprecated\n" + NOISY
    assert rules_found(text) == ["JSONArgsRecommended"]


def test_skip_all() -> None:
    result = check("# check=skip=all;error=true\n" + NOISY)
    assert result.warnings == ()
    assert not result.failed


def test_error_true_fails_only_with_warnings() -> None:
    failed = check("# check=error=true\n" + NOISY)
    assert failed.failed
    assert failed.failure_message() == (
        "lint violation found for rules: StageNameCasing, JSONArgsRecommended, "
        "MaintainerDeprecated"
    )
    assert not check('# check=error=true\nFROM scratch\nCMD ["run"]\n').failed
    assert not check(NOISY).failed  # warnings alone never fail


def test_the_build_arg_replaces_the_directive() -> None:
    text = "# check=skip=all\n" + NOISY
    result = check(text, build_args={"BUILDKIT_DOCKERFILE_CHECK": "skip=JSONArgsRecommended"})
    assert [w.rule for w in result.warnings] == ["StageNameCasing", "MaintainerDeprecated"]


def test_a_bad_directive_is_an_error_at_its_line() -> None:
    with pytest.raises(DockerfileError) as caught:
        check("# check=error=maybe\nFROM scratch\n")
    assert str(caught.value).startswith("Dockerfile:1: failed to parse check options: ")


def test_a_bad_build_arg_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="BUILDKIT_DOCKERFILE_CHECK"):
        check("FROM scratch\n", build_args={"BUILDKIT_DOCKERFILE_CHECK": "nonsense"})


def test_directive_after_other_lines_is_just_a_comment() -> None:
    text = "FROM scratch AS Build\n# check=skip=all\n"
    assert rules_found(text) == ["StageNameCasing"]
