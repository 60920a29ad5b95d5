"""Each rule fires on a minimal Dockerfile, with BuildKit's message, and not on the fixed one."""

from __future__ import annotations

import pytest

from builder.plan.settings import ImageSettings
from tests.checks.helpers import findings, rules_found

# (rule, Dockerfile that breaks it, the message, its line, the same Dockerfile fixed)
CASES = [
    # At the instruction's last line, as BuildKit's parser reports it.
    ("NoEmptyContinuation",
     "FROM scratch\nLABEL a=1 \\\n\n    b=2 \\\n    c=3\n",
     "Empty continuation line", 5,
     "FROM scratch\nLABEL a=1 \\\n    b=2 \\\n    c=3\n"),
    ("StageNameCasing",
     "FROM scratch AS Build\n",
     "Stage name 'Build' should be lowercase", 1,
     "FROM scratch AS build\n"),
    ("FromAsCasing",
     "FROM scratch as build\n",
     "'as' and 'FROM' keywords' casing do not match", 1,
     "FROM scratch AS build\n"),
    ("FromAsCasing",
     "from scratch AS build\n",
     "'AS' and 'from' keywords' casing do not match", 1,
     "from scratch as build\n"),
    ("ConsistentInstructionCasing",
     "FROM scratch\nCOPY a /a\ncopy b /b\n",
     "Command 'copy' should match the case of the command majority (uppercase)", 3,
     "FROM scratch\nCOPY a /a\nCOPY b /b\n"),
    ("ConsistentInstructionCasing",
     "from scratch\ncopy a /a\nCopy b /b\n",
     "Command 'Copy' should match the case of the command majority (lowercase)", 3,
     "from scratch\ncopy a /a\ncopy b /b\n"),
    ("DuplicateStageName",
     "FROM scratch AS base\nFROM scratch AS base\n",
     'Duplicate stage name "base", stage names should be unique', 2,
     "FROM scratch AS base\nFROM scratch AS other\n"),
    ("ReservedStageName",
     "FROM scratch AS context\n",
     'Stage name should not use the same name as reserved stage "context"', 1,
     "FROM scratch AS source\n"),
    ("JSONArgsRecommended",
     "FROM scratch\nCMD run --fast\n",
     "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
     2,
     'FROM scratch\nCMD ["run", "--fast"]\n'),
    ("JSONArgsRecommended",
     "FROM scratch\nENTRYPOINT run\n",
     ("JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to "
     "OS signals"), 2,
     'FROM scratch\nSHELL ["/bin/bash", "-c"]\nENTRYPOINT run\n'),
    ("MaintainerDeprecated",
     "FROM scratch\nMAINTAINER me@example.com\n",
     "Maintainer instruction is deprecated in favor of using label", 2,
     'FROM scratch\nLABEL org.opencontainers.image.authors="me@example.com"\n'),
    ("UndefinedArgInFrom",
     "ARG VERSION=1\nFROM busybox:${VERSIN}\n",
     "FROM argument 'VERSIN' is not declared (did you mean VERSION?)", 2,
     "ARG VERSION=1\nFROM busybox:${VERSION}\n"),
    ("WorkdirRelativePath",
     "FROM scratch\nWORKDIR app\n",
     'Relative workdir "app" can have unexpected results if the base image changes', 2,
     "FROM scratch\nWORKDIR /app\nWORKDIR sub\n"),
    ("UndefinedVar",
     "FROM scratch\nCOPY $SRC /dst\n",
     "Usage of undefined variable '$SRC'", 2,
     "FROM scratch\nARG SRC\nCOPY $SRC /dst\n"),
    ("UndefinedVar",
     "FROM scratch\nENV PATH=$PAHT:/app/bin\n",
     "Usage of undefined variable '$PAHT' (did you mean $PATH?)", 2,
     "FROM scratch\nENV PATH=$PATH:/app/bin\n"),
    ("MultipleInstructionsDisallowed",
     'FROM scratch\nCMD ["a"]\nCMD ["b"]\n',
     ("Multiple CMD instructions should not be used in the same stage because only the last "
     "one will be used"), 2,
     'FROM scratch\nCMD ["b"]\n'),
    ("LegacyKeyValueFormat",
     "FROM scratch\nENV mode fast\n",
     '"ENV key=value" should be used instead of legacy "ENV key value" format', 2,
     "FROM scratch\nENV mode=fast\n"),
    ("LegacyKeyValueFormat",
     "FROM scratch\nLABEL mode fast\n",
     '"LABEL key=value" should be used instead of legacy "LABEL key value" format', 2,
     "FROM scratch\nLABEL mode=fast\n"),
    ("SecretsUsedInArgOrEnv",
     "FROM scratch\nARG GITHUB_TOKEN\n",
     'Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN")', 2,
     "FROM scratch\nARG GITHUB_USER\n"),
    ("SecretsUsedInArgOrEnv",
     "FROM scratch\nENV DB_PASSWORD=x\n",
     'Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD")', 2,
     "FROM scratch\nENV PUBLIC_KEY=x\n"),
    ("InvalidDefaultArgInFrom",
     "ARG TAG\nFROM busybox:${TAG}\n",
     "Default value for ARG busybox:${TAG} results in empty or invalid base image name", 2,
     "ARG TAG=latest\nFROM busybox:${TAG}\n"),
    ("FromPlatformFlagConstDisallowed",
     "FROM --platform=linux/amd64 scratch AS build\n",
     'FROM --platform flag should not use constant value "linux/amd64"', 1,
     "FROM --platform=linux/amd64 scratch AS build-amd64\n"),
    ("RedundantTargetPlatform",
     "FROM --platform=${TARGETPLATFORM} scratch\n",
     ("Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the "
     "default behavior"), 1,
     "FROM --platform=${BUILDPLATFORM} scratch\n"),
    # The test's images are linux/amd64.
    ("InvalidBaseImagePlatform",
     "FROM --platform=linux/arm64 base AS build-arm64\n",
     ('Base image base was pulled with platform "linux/amd64", expected "linux/arm64/v8" for '
      "current build"), 1,
     "FROM base AS build\n"),
    ("CopyIgnoredFile",
     "# check=experimental=CopyIgnoredFile\nFROM scratch\nCOPY ./tmp/notes.txt /notes.txt\n",
     'Attempting to Copy file "./tmp/notes.txt" that is excluded by .dockerignore', 3,
     "# check=experimental=CopyIgnoredFile\nFROM scratch\nCOPY ./src/notes.txt /notes.txt\n"),
]


@pytest.mark.parametrize(("rule", "bad", "message", "line", "good"), CASES,
                         ids=[f"{case[0]}-{index}" for index, case in enumerate(CASES)])
def test_rule_fires_and_the_fix_silences_it(
    rule: str, bad: str, message: str, line: int, good: str
) -> None:
    ignore = ["tmp"]
    images = {"base": ImageSettings()}
    assert (rule, message, line) in findings(bad, ignore=ignore, images=images)
    assert rule not in rules_found(good, ignore=ignore, images=images)


def test_the_fixed_dockerfiles_are_clean_of_every_rule() -> None:
    for _, _, _, _, good in CASES:
        found = rules_found(good, ignore=["tmp"])
        # The WORKDIR fix keeps a relative WORKDIR after an absolute one: no warning.
        assert found == [], (good, found)


def test_every_rule_has_a_case() -> None:
    from builder.checks.rules import ALL_RULES

    assert {rule.name for rule in ALL_RULES} == {case[0] for case in CASES}


# -- details of single rules ------------------------------------------------------------


@pytest.mark.parametrize(("platform", "expected"), [
    ("linux/amd64", None),
    ("LINUX/x86_64", None),          # containerd normalizes both spellings
    ("linux/amd64/v3", None),        # only OS and architecture are compared
    ("linux/aarch64", "linux/arm64/v8"),
    ("linux/arm", "linux/arm/v7"),
    ("windows/amd64", "windows/amd64"),
])
def test_invalid_base_image_platform_compares_os_and_architecture(
    platform: str, expected: str | None
) -> None:
    found = findings(f"FROM --platform={platform} base AS build-x\n",
                     images={"base": ImageSettings()})
    wanted = [] if expected is None else [(
        "InvalidBaseImagePlatform",
        (f'Base image base was pulled with platform "linux/amd64", expected "{expected}" for '
         "current build"), 1)]
    assert [f for f in found if f[0] == "InvalidBaseImagePlatform"] == wanted


def test_invalid_base_image_platform_expands_the_platform_and_skips_unseen_images() -> None:
    text = "ARG P=linux/arm64\nFROM --platform=$P base AS one\nFROM --platform=$P other AS two\n"
    found = findings(text, images={"base": ImageSettings()})
    assert [line for rule, _, line in found if rule == "InvalidBaseImagePlatform"] == [2]


def test_undefined_var_knows_declared_args_env_and_base_image_env() -> None:
    text = (
        "FROM base\n"
        "ARG EMPTY\n"            # declared without a value: defined (as empty)
        "ENV HOME_DIR=/home\n"
        "COPY $EMPTY $HOME_DIR $FROM_IMAGE $PATH /dst/\n"
    )
    images = {"base": ImageSettings(env=(("FROM_IMAGE", "1"),))}
    # The image has no PATH: BuildKit gives every stage one.
    assert findings(text, images=images) == []


def test_undefined_var_global_arg_needs_redeclaring_in_the_stage() -> None:
    text = "ARG VERSION=1\nFROM scratch\nCOPY app-$VERSION /app\n"
    assert findings(text) == [
        ("UndefinedVar", "Usage of undefined variable '$VERSION'", 3)
    ]
    fixed = "ARG VERSION=1\nFROM scratch\nARG VERSION\nCOPY app-$VERSION /app\n"
    assert findings(fixed) == []


def test_undefined_var_in_arg_default_and_order_within_one_arg_line() -> None:
    # B sees A, declared just before it on the same line; C reads what nobody set.
    text = "FROM scratch\nARG A=1 B=$A C=$MISSING\n"
    assert findings(text) == [("UndefinedVar", "Usage of undefined variable '$MISSING'", 2)]


def test_undefined_var_is_not_checked_in_run_cmd_or_entrypoint() -> None:
    text = 'FROM scratch\nRUN echo $NOPE\nCMD ["echo", "$NOPE"]\n'
    assert "UndefinedVar" not in rules_found(text)


def test_undefined_var_in_heredoc_chown_and_default_forms() -> None:
    text = (
        "FROM scratch\n"
        "COPY --chown=$OWNER a /a\n"
        "COPY <<EOF /b\n"
        "${MISSING:-fallback}\n"
        "EOF\n"
    )
    assert findings(text) == [
        ("UndefinedVar", "Usage of undefined variable '$OWNER'", 2),
        ("UndefinedVar", "Usage of undefined variable '$MISSING'", 3),
    ]


def test_child_stage_inherits_args_and_workdir_of_its_parent_stage() -> None:
    text = (
        "FROM scratch AS base\n"
        "ARG FLAVOUR=plain\n"
        "WORKDIR /srv\n"
        "FROM base\n"
        "COPY $FLAVOUR /x\n"
        "WORKDIR relative\n"
    )
    assert findings(text) == []


def test_base_image_shell_silences_json_args_recommended() -> None:
    images = {"shelled": ImageSettings(shell=("/bin/bash", "-c")), "plain": ImageSettings()}
    assert rules_found("FROM shelled\nCMD run\n", images=images) == []
    assert rules_found("FROM plain\nCMD run\n", images=images) == ["JSONArgsRecommended"]


def test_multiple_instructions_point_at_the_one_that_has_no_effect() -> None:
    text = (
        "FROM scratch\n"
        "HEALTHCHECK NONE\n"
        'ENTRYPOINT ["a"]\n'
        "HEALTHCHECK CMD true\n"
        'ENTRYPOINT ["b"]\n'
        "FROM scratch\n"
        'ENTRYPOINT ["c"]\n'  # another stage: counts afresh
    )
    found = [(rule, line) for rule, _, line in findings(text)]
    assert found == [("MultipleInstructionsDisallowed", 2), ("MultipleInstructionsDisallowed", 3)]


def test_onbuild_triggers_of_the_base_image_are_checked_at_the_from_line() -> None:
    images = {"parent": ImageSettings(onbuild=("COPY $UNSET /x",))}
    assert findings("FROM parent\n", images=images) == [
        ("UndefinedVar", "Usage of undefined variable '$UNSET'", 1)
    ]


def test_undefined_arg_in_from_accepts_automatic_and_unset_global_args() -> None:
    text = "ARG REGISTRY\nFROM ${REGISTRY}busybox\nFROM --platform=$BUILDPLATFORM busybox\n"
    assert "UndefinedArgInFrom" not in rules_found(text)


def test_undefined_arg_in_from_ignores_undeclared_build_args() -> None:
    found = findings("FROM busybox:$TAG\n", build_args={"TAG": "1"})
    assert ("UndefinedArgInFrom", "FROM argument 'TAG' is not declared", 1) in found


def test_invalid_default_arg_uses_defaults_not_build_args() -> None:
    # The build arg makes this build work; the Dockerfile alone does not.
    text = "ARG IMAGE\nFROM $IMAGE\n"
    found = findings(text, build_args={"IMAGE": "busybox"})
    assert ("InvalidDefaultArgInFrom",
            "Default value for ARG $IMAGE results in empty or invalid base image name", 2) in found


def test_constant_platform_forms() -> None:
    assert rules_found("FROM --platform=$BUILDPLATFORM scratch\n") == []
    # A platform named in the stage name is deliberate.
    assert rules_found("FROM --platform=linux/arm64 scratch AS tools-arm64\n") == []
    assert rules_found("FROM --platform=linux/arm64 scratch AS tools-linux\n") == []
    found = findings("FROM --platform=arm64 scratch AS tools\n")
    assert found == [("FromPlatformFlagConstDisallowed",
                      'FROM --platform flag should not use constant value "arm64"', 1)]


def test_secrets_rule_matches_whole_words_only() -> None:
    text = "FROM scratch\nARG KEYBOARD MONKEY AUTH_URL my_secret token\n"
    found = [message for _, message, _ in findings(text)]
    assert found == [
        'Do not use ARG or ENV instructions for sensitive data (ARG "AUTH_URL")',
        'Do not use ARG or ENV instructions for sensitive data (ARG "my_secret")',
        'Do not use ARG or ENV instructions for sensitive data (ARG "token")',
    ]


def test_casing_majority_ignores_global_args_and_counts_a_tie_as_upper() -> None:
    # Two lower, two upper in the stage: a tie goes to upper case.
    text = "arg A\narg B\nFROM scratch\nCOPY a /a\ncopy b /b\nenv X=1\n"
    found = [(message, line) for _, message, line in findings(text)]
    assert found == [
        ("Command 'copy' should match the case of the command majority (uppercase)", 5),
        ("Command 'env' should match the case of the command majority (uppercase)", 6),
    ]


def test_copy_ignored_file_only_for_the_context() -> None:
    text = (
        "# check=experimental=CopyIgnoredFile\n"
        "FROM scratch AS build\n"
        "FROM scratch\n"
        "COPY --from=build secret.txt /a\n"
        "ADD secret.txt /b\n"
        "ADD https://example.com/secret.txt /c\n"
    )
    found = findings(text, ignore=["secret.txt"])
    assert found == [("CopyIgnoredFile",
                      'Attempting to Add file "secret.txt" that is excluded by .dockerignore', 5)]
    # Experimental: off unless asked for.
    assert findings(text.split("\n", 1)[1], ignore=["secret.txt"]) == []


def test_only_stages_the_target_needs_are_walked_for_a_build() -> None:
    text = (
        "FROM scratch AS unused\n"
        "COPY $NOPE /x\n"
        "FROM scratch AS helper\n"
        "COPY $ALSO /x\n"
        "FROM scratch\n"
        "COPY --from=helper /x /x\n"
    )
    assert findings(text, all_stages=False) == [
        ("UndefinedVar", "Usage of undefined variable '$ALSO'", 4)
    ]
    assert len(findings(text, all_stages=True)) == 2
    assert findings(text, all_stages=False, target="unused") == [
        ("UndefinedVar", "Usage of undefined variable '$NOPE'", 2)
    ]
