"""The build-check rules: each one's name, short description and message, worded as BuildKit's.

A message is what one warning says about one place ("Stage name 'Build'
should be lowercase"); the description is what the rule is about, shown once
per warning in ``pybuild build --check``.  BuildKit's rule pages carry a URL
as well; pybuild prints none.  Quoted values use Go's %q (``go_quote``)
where BuildKit's messages do.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.frontend.gotext import go_quote

__all__ = [
    "ALL_RULES",
    "CONSISTENT_INSTRUCTION_CASING",
    "COPY_IGNORED_FILE",
    "DUPLICATE_STAGE_NAME",
    "FROM_AS_CASING",
    "FROM_PLATFORM_FLAG_CONST_DISALLOWED",
    "INVALID_BASE_IMAGE_PLATFORM",
    "INVALID_DEFAULT_ARG_IN_FROM",
    "JSON_ARGS_RECOMMENDED",
    "LEGACY_KEY_VALUE_FORMAT",
    "MAINTAINER_DEPRECATED",
    "MULTIPLE_INSTRUCTIONS_DISALLOWED",
    "NO_EMPTY_CONTINUATION",
    "REDUNDANT_TARGET_PLATFORM",
    "RESERVED_STAGE_NAME",
    "SECRETS_USED_IN_ARG_OR_ENV",
    "STAGE_NAME_CASING",
    "UNDEFINED_ARG_IN_FROM",
    "UNDEFINED_VAR",
    "WORKDIR_RELATIVE_PATH",
    "Rule",
]


@dataclass(frozen=True, slots=True)
class Rule:
    """A check: its name (what ``# check=skip=`` names), description, and whether it is
    experimental (off unless ``# check=experimental=`` turns it on)."""

    name: str
    description: str
    experimental: bool = False


STAGE_NAME_CASING = Rule("StageNameCasing", "Stage names should be lowercase")
NO_EMPTY_CONTINUATION = Rule(
    "NoEmptyContinuation", "Empty continuation lines will become errors in a future release"
)
FROM_AS_CASING = Rule(
    "FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword"
)
CONSISTENT_INSTRUCTION_CASING = Rule(
    "ConsistentInstructionCasing",
    "All commands within the Dockerfile should use the same casing (either upper or lower)",
)
DUPLICATE_STAGE_NAME = Rule("DuplicateStageName", "Stage names should be unique")
RESERVED_STAGE_NAME = Rule(
    "ReservedStageName", "Reserved words should not be used as stage names"
)
JSON_ARGS_RECOMMENDED = Rule(
    "JSONArgsRecommended",
    "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior "
    "related to OS signals",
)
MAINTAINER_DEPRECATED = Rule(
    "MaintainerDeprecated",
    "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
)
UNDEFINED_ARG_IN_FROM = Rule("UndefinedArgInFrom", "FROM command must use declared ARGs")
WORKDIR_RELATIVE_PATH = Rule(
    "WorkdirRelativePath",
    "Relative workdir without an absolute workdir declared within the build can have "
    "unexpected results if the base image changes",
)
UNDEFINED_VAR = Rule("UndefinedVar", "Variables should be defined before their use")
MULTIPLE_INSTRUCTIONS_DISALLOWED = Rule(
    "MultipleInstructionsDisallowed",
    "Multiple instructions of the same type should not be used in the same stage",
)
LEGACY_KEY_VALUE_FORMAT = Rule(
    "LegacyKeyValueFormat",
    "Legacy key/value format with whitespace separator should not be used",
)
REDUNDANT_TARGET_PLATFORM = Rule(
    "RedundantTargetPlatform",
    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the "
    "default behavior",
)
SECRETS_USED_IN_ARG_OR_ENV = Rule(
    "SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands"
)
INVALID_DEFAULT_ARG_IN_FROM = Rule(
    "InvalidDefaultArgInFrom",
    "Default value for global ARG results in an empty or invalid base image name",
)
FROM_PLATFORM_FLAG_CONST_DISALLOWED = Rule(
    "FromPlatformFlagConstDisallowed", "FROM --platform flag should not use a constant value"
)
# Experimental in BuildKit too: a pattern in .dockerignore is often meant to
# keep a path out of one COPY ("COPY . .") while another names it on purpose.
INVALID_BASE_IMAGE_PLATFORM = Rule(
    "InvalidBaseImagePlatform", "Base image platform does not match expected target platform"
)
COPY_IGNORED_FILE = Rule(
    "CopyIgnoredFile",
    "Attempting to Copy file that is excluded by .dockerignore",
    experimental=True,
)

ALL_RULES = (
    NO_EMPTY_CONTINUATION,
    STAGE_NAME_CASING,
    FROM_AS_CASING,
    CONSISTENT_INSTRUCTION_CASING,
    DUPLICATE_STAGE_NAME,
    RESERVED_STAGE_NAME,
    JSON_ARGS_RECOMMENDED,
    MAINTAINER_DEPRECATED,
    UNDEFINED_ARG_IN_FROM,
    WORKDIR_RELATIVE_PATH,
    UNDEFINED_VAR,
    MULTIPLE_INSTRUCTIONS_DISALLOWED,
    LEGACY_KEY_VALUE_FORMAT,
    REDUNDANT_TARGET_PLATFORM,
    SECRETS_USED_IN_ARG_OR_ENV,
    INVALID_DEFAULT_ARG_IN_FROM,
    FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    INVALID_BASE_IMAGE_PLATFORM,
    COPY_IGNORED_FILE,
)


def no_empty_continuation() -> str:
    return "Empty continuation line"


def stage_name_casing(stage_name: str) -> str:
    return f"Stage name '{stage_name}' should be lowercase"


def from_as_casing(from_keyword: str, as_keyword: str) -> str:
    return f"'{as_keyword}' and '{from_keyword}' keywords' casing do not match"


def consistent_instruction_casing(keyword: str, majority: str) -> str:
    return f"Command '{keyword}' should match the case of the command majority ({majority})"


def duplicate_stage_name(stage_name: str) -> str:
    return f"Duplicate stage name {go_quote(stage_name)}, stage names should be unique"


def reserved_stage_name(stage_name: str) -> str:
    return f"Stage name should not use the same name as reserved stage {go_quote(stage_name)}"


def json_args_recommended(keyword: str) -> str:
    return (
        f"JSON arguments recommended for {keyword} to prevent unintended behavior "
        "related to OS signals"
    )


def maintainer_deprecated() -> str:
    return "Maintainer instruction is deprecated in favor of using label"


def undefined_arg_in_from(name: str, suggestion: str | None) -> str:
    text = f"FROM argument '{name}' is not declared"
    return text + (f" (did you mean {suggestion}?)" if suggestion else "")


def workdir_relative_path(path: str) -> str:
    return f"Relative workdir {go_quote(path)} can have unexpected results if the base image changes"


def undefined_var(name: str, suggestion: str | None) -> str:
    text = f"Usage of undefined variable '${name}'"
    return text + (f" (did you mean ${suggestion}?)" if suggestion else "")


def multiple_instructions_disallowed(keyword: str) -> str:
    return (
        f"Multiple {keyword} instructions should not be used in the same stage because "
        "only the last one will be used"
    )


def legacy_key_value_format(keyword: str) -> str:
    return f'"{keyword} key=value" should be used instead of legacy "{keyword} key value" format'


def redundant_target_platform(platform: str) -> str:
    return (
        f"Setting platform to predefined {platform} in FROM is redundant as this is the "
        "default behavior"
    )


def secrets_used_in_arg_or_env(keyword: str, name: str) -> str:
    return f"Do not use ARG or ENV instructions for sensitive data ({keyword} {go_quote(name)})"


def invalid_default_arg_in_from(base_name: str) -> str:
    return f"Default value for ARG {base_name} results in empty or invalid base image name"


def from_platform_flag_const_disallowed(platform: str) -> str:
    return f"FROM --platform flag should not use constant value {go_quote(platform)}"


def copy_ignored_file(command: str, source: str) -> str:
    return f"Attempting to {command} file {go_quote(source)} that is excluded by .dockerignore"


def invalid_base_image_platform(image: str, expected: str, actual: str) -> str:
    return (f"Base image {image} was pulled with platform {go_quote(actual)}, "
            f"expected {go_quote(expected)} for current build")
