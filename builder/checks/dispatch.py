"""The checks that need each stage's scope, walked stage by stage as a build would walk them.

A stage starts from its base: a base image's ENV and SHELL (its ONBUILD
triggers run first), an earlier stage's state (with the ARGs it declared,
as BuildKit's child stages inherit them), or scratch.  Each instruction's
words are expanded exactly as the planner expands them (expansion.py, which
reports the names a word read but nobody set), against the ARG values and
ENV of that moment.  Rules checked on the way: InvalidBaseImagePlatform,
UndefinedVar, SecretsUsedInArgOrEnv, LegacyKeyValueFormat,
JSONArgsRecommended, MultipleInstructionsDisallowed, WorkdirRelativePath,
CopyIgnoredFile.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from builder.checks import rules
from builder.checks.findings import Linter
from builder.checks.from_args import GlobalArgs
from builder.checks.source import Source
from builder.errors import DockerfileError, PybuildError, SourceLocation, UsageError
from builder.frontend import commands
from builder.frontend.expansion import expand_from, expand_instruction_with_matches
from builder.frontend.gotext import go_lower
from builder.frontend.shell import ShellLexer
from builder.frontend.suggest import closest
from builder.frontend.syntax import Node
from builder.plan.settings import DEFAULT_PATH, ImageSettings, apply_config_instruction

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.dockerignore import IgnoreRules
    from builder.plan.graph import BaseImage

__all__ = ["ImageLookup", "check_stages"]

# (reference, the FROM naming it) → the image; None when it cannot be looked at.
ImageLookup = Callable[[str, commands.Instruction], "BaseImage | None"]

# Build args BuildKit reads itself and never puts in the environment.
_NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})
# A name is "sensitive" when one of these is a whole _-separated word of it.
_SECRET_WORDS = re.compile(
    r"(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)"
    r"(?:_|$)",
    re.IGNORECASE | re.ASCII,
)
_PUBLIC_WORD = re.compile(r"(?:_|^)public(?:_|$)", re.IGNORECASE | re.ASCII)
_REMOTE_SOURCE = re.compile(r"(?:https?://|git@|git://|ssh://)", re.IGNORECASE)


@dataclass
class _StageText:
    """One FROM and the instructions up to the next, with the base name expanded."""

    index: int
    start: commands.From
    base_name: str
    body: list[tuple[Node, commands.Instruction]]
    platform: str = ""  # FROM --platform, expanded; "" when not given


@dataclass
class _Scope:
    """What a stage has seen so far: image settings (ENV, SHELL), ARGs, WORKDIR."""

    settings: ImageSettings
    args: dict[str, str | None] = field(default_factory=dict)  # declared; None: no value
    workdir_set: bool = False
    # CMD / ENTRYPOINT / HEALTHCHECK: where this stage last had one (not inherited).
    last_of: dict[str, SourceLocation] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """What words expand against: ARG values, with ENV winning (as the planner has it)."""
        values = {name: value for name, value in self.args.items() if value is not None}
        values.update(self.settings.env)
        return values

    def inherited(self) -> _Scope:
        return _Scope(self.settings, dict(self.args), self.workdir_set)


def check_stages(
    source: Source,
    scope: GlobalArgs,
    build_args: Mapping[str, str],
    linter: Linter,
    *,
    target: str,
    all_stages: bool,
    resolve_image: ImageLookup | None,
    ignore: IgnoreRules | None,
) -> None:
    """Walk the stages the build needs (every stage when ``all_stages``) and check them."""
    stages = _split(source, scope)
    wanted = _stages_needed(stages, target, all_stages)
    walker = _Walker(source, scope, build_args, linter, ignore)
    finals: dict[int, _Scope] = {}
    for stage in stages:
        if stage.index not in wanted:
            continue
        parent = _stage_named(stages, stage.base_name, before=stage.index)
        triggers: list[tuple[Node, commands.Instruction]] = []
        if parent is not None and parent in finals:
            state = finals[parent].inherited()
        elif go_lower(stage.base_name) == "scratch" or resolve_image is None:
            state = _Scope(ImageSettings(env=(("PATH", DEFAULT_PATH),)))
        else:
            image = _look_up(resolve_image, stage)
            if image is not None:
                _check_platform(stage, image, linter)
            settings = image.settings if image is not None else ImageSettings()
            if not any(name == "PATH" for name, _ in settings.env):
                settings = settings.with_env("PATH", DEFAULT_PATH)
            triggers = _triggers(settings.onbuild, stage.start.location)
            state = _Scope(replace(settings, onbuild=()))
        for node, instruction in [*triggers, *stage.body]:
            walker.dispatch(state, node, instruction)
        finals[stage.index] = state


def _check_platform(stage: _StageText, image: BaseImage, linter: Linter) -> None:
    """InvalidBaseImagePlatform: the base's OS and architecture against FROM --platform, or
    the build's target platform; compared, and shown, as containerd normalizes them."""
    from builder.plan.planner import platform_args

    expected = _normalized_platform(stage.platform or platform_args()["TARGETPLATFORM"])
    actual = _normalized_platform(f"{image.os}/{image.architecture}")
    if expected is None or actual is None or expected[:2] == actual[:2]:
        return
    message = rules.invalid_base_image_platform(
        stage.base_name, "/".join(filter(None, expected)), "/".join(filter(None, actual))
    )
    linter.report(rules.INVALID_BASE_IMAGE_PLATFORM, message, stage.start.location)


# containerd's platforms.Normalize: other spellings of an architecture, and the
# variant an architecture has when none is given.
_ARCH_ALIASES = {"i386": "386", "x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64",
                 "armhf": "arm", "armel": "arm"}
_ALIAS_VARIANTS = {"armhf": "v7", "armel": "v6"}
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}


def _normalized_platform(text: str) -> tuple[str, str, str] | None:
    """(os, architecture, variant) of an OS/ARCH[/VARIANT] string; None if it is none."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        return None
    os_name, arch = go_lower(parts[0]), go_lower(parts[1])
    variant = go_lower(parts[2]) if len(parts) == 3 else _ALIAS_VARIANTS.get(arch, "")
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "amd64" and variant == "v1":
        variant = ""
    elif arch in _DEFAULT_VARIANTS:
        if variant.isdigit():
            variant = "v" + variant
        variant = variant or _DEFAULT_VARIANTS[arch]
    return os_name, arch, variant


def _look_up(resolve_image: ImageLookup, stage: _StageText) -> BaseImage | None:
    """The stage's base image, or None when it cannot be had.

    The checks only read an image's ENV, SHELL and ONBUILD: a base they
    cannot see (a --build-context, an unreachable registry) is checked as an
    empty image rather than stopping the build, which reports it itself.
    """
    try:
        return resolve_image(stage.base_name, stage.start)
    except PybuildError:
        return None


def _split(source: Source, scope: GlobalArgs) -> list[_StageText]:
    stages: list[_StageText] = []
    for node, instruction in source.pairs():
        if isinstance(instruction, commands.From):
            try:
                expanded, _ = expand_from(instruction, scope.values, escape=source.tree.escape)
                base_name, platform = expanded.base_name, expanded.platform or ""
            except DockerfileError:
                # The build refuses it at this line.
                base_name, platform = instruction.base_name, ""
            stages.append(_StageText(len(stages), instruction, base_name, [], platform))
        elif stages:
            stages[-1].body.append((node, instruction))
    return stages


def _stage_named(stages: list[_StageText], name: str, *, before: int) -> int | None:
    """The earlier stage a name refers to (as the planner finds it), or None."""
    lowered = go_lower(name)
    for stage in stages[:before]:
        if stage.start.stage_name and stage.start.stage_name == lowered:
            return stage.index
    if name.isdigit() and int(name) < before:
        return int(name)
    return None


def _mount_sources(run: commands.Run) -> list[str]:
    """The ``from=`` stage of each RUN --mount (a comma-separated key=value list)."""
    sources = []
    for mount in run.mounts:
        for part in mount.split(","):
            key, _, value = part.partition("=")
            if go_lower(key.strip()) == "from" and value:
                sources.append(value.strip())
    return sources


def _stages_needed(stages: list[_StageText], target: str, all_stages: bool) -> set[int]:
    if not stages:
        return set()
    if all_stages and not target:
        return {stage.index for stage in stages}
    if target:
        found = _stage_named(stages, target, before=len(stages))
        if found is None:
            raise UsageError(f"target stage {target!r} could not be found")
    else:
        found = len(stages) - 1
    needed: set[int] = set()
    pending = [found]
    while pending:
        index = pending.pop()
        if index in needed:
            continue
        needed.add(index)
        stage = stages[index]
        names = [stage.base_name]
        for _, instruction in stage.body:
            if isinstance(instruction, commands.Copy) and instruction.from_stage:
                names.append(instruction.from_stage)
            elif isinstance(instruction, commands.Run):
                names.extend(_mount_sources(instruction))
        for name in names:
            dependency = _stage_named(stages, name, before=index)
            if dependency is not None:
                pending.append(dependency)
    return needed


def _triggers(
    expressions: tuple[str, ...], location: SourceLocation
) -> list[tuple[Node, commands.Instruction]]:
    """A base image's ONBUILD triggers, read as the planner reads them, placed at the FROM."""
    from builder.frontend.instructions import parse_instruction
    from builder.frontend.parser import parse_dockerfile

    found: list[tuple[Node, commands.Instruction]] = []
    for expression in expressions:
        try:
            tree = parse_dockerfile(expression.encode("utf-8", "surrogateescape"))
            for node in tree.nodes:
                instruction = parse_instruction(node, filename="ONBUILD", lines=tree.lines)
                found.append((node, replace(instruction, location=location)))
        except DockerfileError:
            continue  # the planner refuses the trigger, with its own message
    return found


class _Walker:
    """Dispatches one instruction at a time against a stage's scope."""

    def __init__(
        self,
        source: Source,
        scope: GlobalArgs,
        build_args: Mapping[str, str],
        linter: Linter,
        ignore: IgnoreRules | None,
    ) -> None:
        self._escape = source.tree.escape
        self._global = scope
        self._build_args = build_args
        self._linter = linter
        self._ignore = ignore

    def dispatch(self, state: _Scope, node: Node, instruction: commands.Instruction) -> None:
        if isinstance(instruction, commands.Arg):
            self._arg(state, instruction)
            return
        if isinstance(instruction, commands.Cmd | commands.Entrypoint | commands.Healthcheck):
            self._used_once(state, node.keyword, instruction)
        if (isinstance(instruction, commands.Cmd | commands.Entrypoint)
                and instruction.prepends_shell and not state.settings.shell):
            # A SHELL (here or in the base image) says the shell form is meant.
            message = rules.json_args_recommended(node.keyword)
            self._linter.report(rules.JSON_ARGS_RECOMMENDED, message, instruction.location)
        if isinstance(instruction, _EXPANDED):
            expanded = self._expand(state, instruction)
            if expanded is None:
                return
            instruction = expanded
        self._after_expansion(state, node, instruction)
        state.settings = apply_config_instruction(state.settings, instruction)

    def _after_expansion(
        self, state: _Scope, node: Node, instruction: commands.Instruction
    ) -> None:
        location = instruction.location
        if isinstance(instruction, commands.Env | commands.Label):
            for pair in instruction.pairs:
                if pair.no_delimiter:
                    message = rules.legacy_key_value_format(node.keyword)
                    self._linter.report(rules.LEGACY_KEY_VALUE_FORMAT, message, location)
                if isinstance(instruction, commands.Env):
                    self._secret("ENV", pair.key, location)
        elif isinstance(instruction, commands.Workdir):
            # Only the first WORKDIR of a stage chain: fixing it fixes the rest.
            if not state.workdir_set and not posixpath.isabs(instruction.path):
                message = rules.workdir_relative_path(instruction.path)
                self._linter.report(rules.WORKDIR_RELATIVE_PATH, message, location)
            state.workdir_set = True
        elif isinstance(instruction, commands.Copy | commands.Add):
            self._ignored_sources(instruction)

    def _arg(self, state: _Scope, instruction: commands.Arg) -> None:
        """ARG as BuildKit dispatches it: one name at a time, each seeing the ones before."""
        lexer = ShellLexer(escape=self._escape)
        for definition in instruction.args:
            name = definition.name
            self._secret("ARG", name, instruction.location)
            value = definition.default
            if name in self._build_args:
                value = self._build_args[name]
            elif value is None:
                value = self._global.values.get(name)
            else:
                try:
                    result = lexer.process_word_with_matches(value, state.env())
                except DockerfileError:
                    return  # the planner refuses this default, at this line
                self._undefined(state, result.unmatched, instruction.location)
                value = result.word
            state.args[name] = value

    def _expand(
        self, state: _Scope, instruction: commands.Instruction
    ) -> commands.Instruction | None:
        try:
            expanded, unmatched = expand_instruction_with_matches(
                instruction, state.env(), escape=self._escape
            )
        except DockerfileError:
            return None  # the planner refuses the word, at this line
        self._undefined(state, unmatched, instruction.location)
        return expanded

    def _undefined(self, state: _Scope, names: frozenset[str], location: SourceLocation) -> None:
        options = sorted(state.env())
        for name in sorted(names):
            if name in state.args or name in _NON_ENV_ARGS:
                continue  # a declared ARG without a value is defined, just empty
            message = rules.undefined_var(name, closest(name, options, case_sensitive=True))
            self._linter.report(rules.UNDEFINED_VAR, message, location)

    def _used_once(self, state: _Scope, keyword: str, instruction: commands.Instruction) -> None:
        kind = instruction.keyword
        earlier = state.last_of.get(kind)
        if earlier is not None:
            # The earlier one is the instruction that has no effect: point there.
            message = rules.multiple_instructions_disallowed(keyword)
            self._linter.report(rules.MULTIPLE_INSTRUCTIONS_DISALLOWED, message, earlier)
        state.last_of[kind] = instruction.location

    def _secret(self, keyword: str, name: str, location: SourceLocation) -> None:
        if _SECRET_WORDS.search(name) and not _PUBLIC_WORD.search(name):
            message = rules.secrets_used_in_arg_or_env(keyword, name)
            self._linter.report(rules.SECRETS_USED_IN_ARG_OR_ENV, message, location)

    def _ignored_sources(self, instruction: commands.Copy | commands.Add) -> None:
        if not self._ignore:
            return
        if isinstance(instruction, commands.Copy) and instruction.from_stage:
            return  # another stage or an image: .dockerignore does not apply
        command = "Add" if isinstance(instruction, commands.Add) else "Copy"
        for source in instruction.sources:
            if _REMOTE_SOURCE.match(source):
                continue
            if self._ignore.matches(source.lstrip("/") or "."):
                message = rules.copy_ignored_file(command, source)
                self._linter.report(rules.COPY_IGNORED_FILE, message, instruction.location)


# The instructions whose words are expanded before they take effect.
_EXPANDED = (
    commands.Env, commands.Label, commands.Copy, commands.Add, commands.Expose,
    commands.Volume, commands.User, commands.Workdir, commands.StopSignal,
)
