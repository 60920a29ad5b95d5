"""The global ARGs (before the first FROM) and the checks of the FROM lines that use them.

UndefinedArgInFrom: a FROM names a variable that is neither a declared
global ARG nor an automatic one.  InvalidDefaultArgInFrom: with every global
ARG at its default (no --build-arg), a FROM's image name is not a valid
reference.  FromPlatformFlagConstDisallowed: ``FROM --platform=linux/amd64``
written as a constant, unless the stage's name says it is platform-specific.
RedundantTargetPlatform: ``--platform=$TARGETPLATFORM``, which is the default.
BuildKit checks every FROM, whether the build needs the stage or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from builder.checks import rules
from builder.checks.findings import Linter
from builder.checks.source import Source
from builder.errors import DockerfileError, StoreError
from builder.frontend.commands import Arg, From
from builder.frontend.gotext import go_lower
from builder.frontend.shell import ShellLexer
from builder.frontend.suggest import closest

__all__ = ["GlobalArgs", "check_from_lines", "global_args"]

# containerd's normalizeOS/normalizeArch for the names a Dockerfile writes.
_OS_ALIASES = {"macos": "darwin"}
_ARCH_ALIASES = {
    "i386": "386", "x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64",
    "armhf": "arm", "armel": "arm",
}
_KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
})
_KNOWN_ARCH = frozenset({
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips",
    "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
})


@dataclass(frozen=True, slots=True)
class GlobalArgs:
    """The ARG scope FROM lines see: automatic platform ARGs and the global ARGs' values.

    ``declared`` names every global ARG, with or without a value.
    """

    values: Mapping[str, str]
    declared: frozenset[str]


def automatic_args(build_args: Mapping[str, str], target_stage: str) -> dict[str, str]:
    """BuildKit's defaultArgs: the platform ARGs and TARGETSTAGE, each overridable by --build-arg."""
    from builder.plan.planner import platform_args

    values = {**platform_args(), "BUILDOSVERSION": "", "TARGETOSVERSION": "",
              "TARGETSTAGE": target_stage}
    return {name: build_args.get(name, value) for name, value in values.items()}


def global_args(
    source: Source, build_args: Mapping[str, str], target_stage: str, *, defaults_only: bool = False
) -> GlobalArgs:
    """The global ARG scope; ``defaults_only`` ignores --build-arg values for the ARGs.

    Raises ExpansionError for a default the shell lexer refuses.
    """
    lexer = ShellLexer(escape=source.tree.escape)
    values = automatic_args(build_args, target_stage)
    declared: set[str] = set()
    for instruction in source.instructions[: source.first_stage_index()]:
        if not isinstance(instruction, Arg):
            continue
        for definition in instruction.args:
            value = definition.default
            if not defaults_only and definition.name in build_args:
                value = build_args[definition.name]
            elif value is not None:
                try:
                    value = lexer.process_word(value, values)
                except DockerfileError as err:
                    raise err.with_location(instruction.location) from None
            if value is not None:
                values[definition.name] = value
            declared.add(definition.name)
    return GlobalArgs(values, frozenset(declared))


def check_from_lines(
    source: Source, build_args: Mapping[str, str], target_stage: str, linter: Linter
) -> GlobalArgs:
    """Run the FROM-line checks; returns the global scope the stages start from."""
    scope = global_args(source, build_args, target_stage)
    _check_defaults(source, build_args, target_stage, linter)
    lexer = ShellLexer(escape=source.tree.escape)
    known = sorted(set(scope.values) | scope.declared)
    for instruction in source.instructions:
        if not isinstance(instruction, From):
            continue
        try:
            base = lexer.process_word_with_matches(instruction.base_name, scope.values)
            _report_undeclared(base.unmatched, known, instruction, linter)
            if instruction.platform:
                platform = lexer.process_word_with_matches(instruction.platform, scope.values)
                _report_undeclared(platform.unmatched, known, instruction, linter)
                if (platform.matched == {"TARGETPLATFORM"} and not platform.unmatched
                        and platform.word == scope.values.get("TARGETPLATFORM")):
                    message = rules.redundant_target_platform(instruction.platform)
                    linter.report(rules.REDUNDANT_TARGET_PLATFORM, message, instruction.location)
                if not platform.matched and not platform.unmatched:
                    _check_constant_platform(platform.word, instruction, linter)
        except DockerfileError:
            continue  # the build reports a word it cannot expand, at this line
    return scope


def _report_undeclared(
    names: frozenset[str], known: list[str], instruction: From, linter: Linter
) -> None:
    for name in sorted(names):
        if name in known:
            continue
        message = rules.undefined_arg_in_from(name, closest(name, known, case_sensitive=True))
        linter.report(rules.UNDEFINED_ARG_IN_FROM, message, instruction.location)


def _check_defaults(
    source: Source, build_args: Mapping[str, str], target_stage: str, linter: Linter
) -> None:
    """InvalidDefaultArgInFrom: each FROM expanded with the global ARGs' defaults alone."""
    from builder.image.store import parse_reference

    try:
        scope = global_args(source, build_args, target_stage, defaults_only=True)
    except DockerfileError:
        return  # the build itself fails on that default, with a better message
    lexer = ShellLexer(escape=source.tree.escape)
    for instruction in source.instructions:
        if not isinstance(instruction, From):
            continue
        try:
            name = lexer.process_word(instruction.base_name, scope.values)
        except DockerfileError:
            return
        try:
            parse_reference(name)
        except StoreError:
            message = rules.invalid_default_arg_in_from(instruction.base_name)
            linter.report(rules.INVALID_DEFAULT_ARG_IN_FROM, message, instruction.location)


def _check_constant_platform(platform: str, instruction: From, linter: Linter) -> None:
    parsed = _os_and_arch(platform)
    if parsed is None:
        return  # not a platform at all: the build says so
    os_name, arch = parsed
    # "FROM --platform=linux/arm64 AS build-arm64" is deliberate.
    if os_name in instruction.stage_name or arch in instruction.stage_name:
        return
    message = rules.from_platform_flag_const_disallowed(platform)
    linter.report(rules.FROM_PLATFORM_FLAG_CONST_DISALLOWED, message, instruction.location)


def _os_and_arch(platform: str) -> tuple[str, str] | None:
    """containerd's platforms.Parse, as far as the OS and architecture: None if it refuses."""
    from builder.plan.planner import platform_args

    parts = platform.split("/")
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    if not 1 <= len(parts) <= 3 or any(not part or set(part) - allowed for part in parts):
        return None
    host = platform_args()
    if len(parts) == 1:
        word = go_lower(parts[0])
        os_name = _OS_ALIASES.get(word, word)
        if os_name in _KNOWN_OS:
            return os_name, host["TARGETARCH"]
        arch = _ARCH_ALIASES.get(word, word)
        return ("linux", arch) if arch in _KNOWN_ARCH else None
    os_word, arch_word = go_lower(parts[0]), go_lower(parts[1])
    return _OS_ALIASES.get(os_word, os_word), _ARCH_ALIASES.get(arch_word, arch_word)
