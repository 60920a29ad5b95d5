"""Instructions + build arguments + target → Graph (BuildKit's dockerfile2llb, in small).

Stages are resolved by name or index; ARGs before the first FROM feed the
FROM lines; ARG and ENV scoping decide what each instruction sees; stages the
target does not need are dropped.  One function per instruction kind
(``plan_run``, ``plan_copy``...), as dispatchRun/dispatchCopy are in BuildKit.
"""

from __future__ import annotations

import platform as host_platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from builder.errors import DockerfileError, UnknownStage, UsageError
from builder.frontend import commands
from builder.frontend.copying import check_link_chown
from builder.frontend.expansion import expand_from, expand_instruction
from builder.frontend.instructions import parse_instruction
from builder.frontend.parser import parse_dockerfile
from builder.frontend.syntax import SyntaxTree
from builder.plan.graph import (
    BaseImage,
    ContextSource,
    Graph,
    ImageSource,
    NamedContextSource,
    PlannedMount,
    ScratchBase,
    Stage,
    StageSource,
    Step,
)
from builder.plan.settings import (
    DEFAULT_PATH,
    ImageSettings,
    apply_config_instruction,
)
from builder.sources.urls import RemoteRef, remote_sources

__all__ = ["PROXY_ARGS", "PlanRequest", "plan_build", "platform_args"]

# Predefined ARGs usable without an ARG line; kept out of history and keys.
PROXY_ARGS = frozenset(
    {
        "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
    }
)

# (reference, the instruction naming it) → the image, from the local store.
ImageResolver = Callable[[str, commands.Instruction], BaseImage]
# (a name FROM or --from uses, the instruction) → the --build-context of that name:
# an image, a directory, or None when no context has that name.
ContextResolver = Callable[[str, commands.Instruction], BaseImage | NamedContextSource | None]


@dataclass(frozen=True, slots=True)
class PlanRequest:
    # --build-arg values, resolved (NAME alone already took its value from the
    # environment: builder.request.resolved_build_args).
    build_args: tuple[tuple[str, str], ...] = ()
    target: str = ""
    filename: str = "Dockerfile"


def _go_arch() -> tuple[str, str]:
    machine = host_platform.machine().lower()
    names = {"x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", ""),
             "arm64": ("arm64", ""), "armv7l": ("arm", "v7"), "i686": ("386", "")}
    return names.get(machine, (machine, ""))


def platform_args() -> dict[str, str]:
    """The automatic platform ARGs: build and target are this machine."""
    arch, variant = _go_arch()
    platform = f"linux/{arch}" + (f"/{variant}" if variant else "")
    return {
        "BUILDPLATFORM": platform, "BUILDOS": "linux", "BUILDARCH": arch,
        "BUILDVARIANT": variant, "TARGETPLATFORM": platform, "TARGETOS": "linux",
        "TARGETARCH": arch, "TARGETVARIANT": variant,
    }


class _ArgScope:
    """The ARGs one stage has declared so far, with their values.

    ``ARG name`` takes the --build-arg value, else its own default, else the
    value of the global ARG of that name; with none of these it is declared
    but has no value: it expands to nothing and stays out of RUN's
    environment (recorded as unset, for the UndefinedVar check later).
    """

    def __init__(self, build_args: Mapping[str, str], global_values: Mapping[str, str]) -> None:
        self._build_args = build_args
        self._global = global_values
        self.values: dict[str, str] = {}
        self.unset: set[str] = set()

    def declare(self, name: str, default: str | None) -> None:
        if name in self._build_args:
            self.values[name] = self._build_args[name]
        elif default is not None:
            self.values[name] = default
        elif name in self._global:
            self.values[name] = self._global[name]
        else:
            self.values.pop(name, None)
            self.unset.add(name)


def _expansion_env(settings: ImageSettings, args: Mapping[str, str]) -> dict[str, str]:
    # ENV wins over an ARG of the same name.
    env = dict(args)
    env.update(settings.env)
    return env


def plan_build(
    source: bytes | SyntaxTree,
    request: PlanRequest,
    resolve_image: ImageResolver,
    *,
    resolve_context: ContextResolver | None = None,
) -> Graph:
    """Plan a build; raises DockerfileError at the offending line, UsageError for flags.

    ``resolve_context`` answers for ``--build-context`` names: a named context
    replaces a stage of its name, and is used before an image of its name.
    """
    tree = source if isinstance(source, SyntaxTree) else parse_dockerfile(
        source, filename=request.filename
    )
    escape = tree.escape
    build_args = dict(request.build_args)
    automatic = platform_args()
    instructions = [
        parse_instruction(node, filename=request.filename, lines=tree.lines) for node in tree.nodes
    ]
    # ARGs before the first FROM: visible to FROM lines only (and inherited by
    # a stage's ARG without a default).
    global_values: dict[str, str] = dict(automatic)
    index = 0
    while index < len(instructions) and isinstance(instructions[index], commands.Arg):
        arg = instructions[index]
        assert isinstance(arg, commands.Arg)
        for definition in arg.args:
            default = definition.default
            if default is not None:
                default = _expand_default(default, global_values, escape)
            if definition.name in build_args:
                global_values[definition.name] = build_args[definition.name]
            elif default is not None:
                global_values[definition.name] = default
        index += 1
    groups: list[list[commands.Instruction]] = []
    for instruction in instructions[index:]:
        if isinstance(instruction, commands.From):
            groups.append([instruction])
        elif not groups:
            raise DockerfileError(
                "no build stage in current context", location=instruction.location
            )
        else:
            groups[-1].append(instruction)

    planner = _Planner(
        escape=escape, build_args=build_args, global_values=global_values,
        automatic=automatic, resolve_image=resolve_image,
        resolve_context=resolve_context,
    )
    for group in groups:
        planner.plan_stage(group)
    return planner.graph(request.target)


def _expand_default(default: str, env: Mapping[str, str], escape: str) -> str:
    from builder.frontend.shell import ShellLexer

    return ShellLexer(escape=escape).process_word(default, env)


class _Planner:
    def __init__(
        self,
        *,
        escape: str,
        build_args: dict[str, str],
        global_values: dict[str, str],
        automatic: dict[str, str],
        resolve_image: ImageResolver,
        resolve_context: ContextResolver | None = None,
    ) -> None:
        self.escape = escape
        self.resolve_context = resolve_context
        self.build_args = build_args
        self.global_values = global_values
        self.automatic = automatic
        self.resolve_image = resolve_image
        self.stages: list[Stage] = []
        self.next_step = 0

    # -- stages -------------------------------------------------------------

    def _stage_by_name(self, name: str) -> int | None:
        lowered = name.lower()
        for stage in self.stages:
            if stage.name and stage.name == lowered:
                return stage.index
        if name.isdigit() and int(name) < len(self.stages):
            return int(name)
        return None

    def plan_stage(self, group: list[commands.Instruction]) -> None:
        from_instruction, _ = expand_from(
            _as_from(group[0]), self.global_values, escape=self.escape
        )
        base: BaseImage | ScratchBase | StageSource
        stage_name = from_instruction.stage_name
        override = self._named_context(stage_name, from_instruction) if stage_name else None
        if override is not None:
            # BuildKit: a named context of a stage's name replaces the whole stage.
            self._plan_context_stage(from_instruction, override)
            return
        stage_index = self._stage_by_name(from_instruction.base_name)
        context = None
        if stage_index is None and from_instruction.base_name.lower() != "scratch":
            context = self._named_context(from_instruction.base_name, from_instruction)
        if isinstance(context, NamedContextSource):
            self._plan_context_stage(from_instruction, context)
            return
        if stage_index is not None and from_instruction.base_name.lower() != "scratch":
            base = StageSource(stage_index)
            settings = replace(self.stages[stage_index].final, cmd_set=False)
        elif from_instruction.base_name.lower() == "scratch":
            base = ScratchBase()
            # BuildKit's emptyImage: the default PATH and WorkingDir "/".
            settings = ImageSettings(env=(("PATH", DEFAULT_PATH),), workdir="/")
        else:
            base = context or self.resolve_image(from_instruction.base_name, from_instruction)
            settings = replace(base.settings, cmd_set=False)
        scope = _ArgScope(self.build_args, self.global_values)
        body = list(group[1:])
        if settings.onbuild:
            # An earlier stage's triggers run too, as if it had been built
            # into an image first (BuildKit v0.17.1+, buildah); either way
            # they are cleared from the new stage.
            body = self._onbuild_triggers(settings.onbuild, from_instruction) + body
            settings = replace(settings, onbuild=())
        initial = settings
        steps: list[Step] = []
        for instruction in body:
            step, settings = self._plan_instruction(
                instruction, settings, scope, len(self.stages), len(steps) + 1, len(body)
            )
            steps.append(step)
        self.stages.append(
            Stage(
                index=len(self.stages),
                name=from_instruction.stage_name,
                base=base,
                from_instruction=from_instruction,
                steps=tuple(steps),
                initial=initial,
            )
        )

    def _named_context(
        self, name: str, instruction: commands.Instruction
    ) -> BaseImage | NamedContextSource | None:
        if self.resolve_context is None or not name:
            return None
        return self.resolve_context(name, instruction)

    def _plan_context_stage(
        self, from_instruction: commands.From, context: BaseImage | NamedContextSource
    ) -> None:
        """A stage that is a named context: an image as it is, or a directory's files
        copied onto scratch (one step, keyed by the directory's content)."""
        index = len(self.stages)
        if isinstance(context, BaseImage):
            initial = replace(context.settings, cmd_set=False)
            self.stages.append(Stage(index=index, name=from_instruction.stage_name, base=context,
                                     from_instruction=from_instruction, steps=(),
                                     initial=initial))
            return
        settings = ImageSettings(env=(("PATH", DEFAULT_PATH),))
        copy = commands.Copy(
            original=from_instruction.original, location=from_instruction.location,
            sources=("/",), source_contents=(), destination="/", from_stage=context.name,
            chown="", chmod="", link=False, parents=False, excludes=(),
        )
        step = Step(
            id=self._new_step_id(), stage=index, number=1, count=1, kind="copy",
            instruction=copy, before=settings, after=settings, run_env=(), key_args=(),
            created_by=f"COPY --from={context.name} / / # buildkit", source=context,
        )
        self.stages.append(Stage(index=index, name=from_instruction.stage_name,
                                 base=ScratchBase(), from_instruction=from_instruction,
                                 steps=(step,), initial=settings))

    def _onbuild_triggers(
        self, expressions: tuple[str, ...], from_instruction: commands.From
    ) -> list[commands.Instruction]:
        triggers: list[commands.Instruction] = []
        for expression in expressions:
            tree = parse_dockerfile(expression.encode("utf-8", "surrogateescape"))
            for node in tree.nodes:
                trigger = parse_instruction(node, filename="ONBUILD", lines=tree.lines)
                # Point the trigger at the FROM that pulled it in.
                triggers.append(replace(trigger, location=from_instruction.location))
        return triggers

    # -- instructions ------------------------------------------------------------

    def _plan_instruction(
        self,
        instruction: commands.Instruction,
        settings: ImageSettings,
        scope: _ArgScope,
        stage: int,
        number: int,
        count: int,
    ) -> tuple[Step, ImageSettings]:
        if isinstance(instruction, commands.From):  # pragma: no cover - split above
            raise DockerfileError("FROM inside a stage", location=instruction.location)
        env = _expansion_env(settings, scope.values)
        if isinstance(instruction, commands.Arg):
            for definition in instruction.args:
                default = definition.default
                if default is not None:
                    default = _expand_default(default, env, self.escape)
                scope.declare(definition.name, default)
            expanded: commands.Instruction = instruction
        elif isinstance(instruction, commands.Onbuild | commands.Run | commands.Cmd
                        | commands.Entrypoint | commands.Shell | commands.Healthcheck):
            expanded = instruction  # the shell expands these, at run time
        else:
            expanded = expand_instruction(instruction, env, escape=self.escape)
        after = apply_config_instruction(settings, expanded)
        kind = "config"
        source: ContextSource | StageSource | ImageSource | NamedContextSource | None = None
        remotes: tuple[RemoteRef, ...] = ()
        mounts: tuple[PlannedMount, ...] = ()
        if isinstance(expanded, commands.Run):
            kind = "run"
            mounts = self._run_mounts(expanded, env, settings)
        elif isinstance(expanded, commands.Copy | commands.Add):
            kind = "copy"
            remotes = remote_sources(expanded)
            source = self._copy_source(expanded)
            check_link_chown(expanded)  # --link cannot look names up: fail before any work
        elif isinstance(expanded, commands.Workdir):
            kind = "mkdir"
        run_env = self._run_env(settings, scope.values)
        key_args = tuple(sorted(
            (name, value) for name, value in scope.values.items() if name not in PROXY_ARGS
        ))
        step = Step(
            id=self._new_step_id(),
            stage=stage,
            number=number,
            count=count,
            kind=kind,
            instruction=expanded,
            before=settings,
            after=after,
            run_env=run_env if kind == "run" else (),
            key_args=key_args if kind == "run" else (),
            created_by=_created_by(expanded, settings, scope.values),
            source=source,
            remotes=remotes,
            mounts=mounts,
        )
        return step, after

    def _run_mounts(
        self, instruction: commands.Run, env: Mapping[str, str], settings: ImageSettings
    ) -> tuple[PlannedMount, ...]:
        """RUN --mount: fields expanded with the step's ARGs and ENV; ``from`` resolved."""
        if not instruction.mounts:
            return ()
        from builder.frontend.shell import ShellLexer
        from builder.plan.mounts import plan_mounts

        lexer = ShellLexer(escape=self.escape)
        try:
            specs = plan_mounts(instruction.mounts, lambda word: lexer.process_word(word, env),
                                settings.effective_workdir())
        except DockerfileError as err:
            raise err.with_location(instruction.location) from None
        planned: list[PlannedMount] = []
        for spec in specs:
            source: ContextSource | StageSource | ImageSource | NamedContextSource | None = None
            if spec.from_name and spec.type in ("bind", "cache"):
                source = self.source_by_name(spec.from_name, instruction)
            elif spec.type == "bind":
                source = ContextSource()
            planned.append(PlannedMount(spec, source))
        return tuple(planned)

    def _new_step_id(self) -> int:
        self.next_step += 1
        return self.next_step

    def _run_env(
        self, settings: ImageSettings, args: Mapping[str, str]
    ) -> tuple[tuple[str, str], ...]:
        env = dict(settings.env)
        for name, value in args.items():
            env.setdefault(name, value)
        for name in PROXY_ARGS:
            if name in self.build_args:
                env.setdefault(name, self.build_args[name])
        return tuple(env.items())

    def _copy_source(
        self, instruction: commands.Copy | commands.Add
    ) -> ContextSource | StageSource | ImageSource | NamedContextSource:
        name = instruction.from_stage if isinstance(instruction, commands.Copy) else ""
        if not name:
            return ContextSource()
        return self.source_by_name(name, instruction)

    def source_by_name(
        self, name: str, instruction: commands.Instruction
    ) -> StageSource | ImageSource | NamedContextSource:
        """What ``--from=name`` reads (COPY, RUN --mount): a stage planned so far, else a
        ``--build-context`` of that name (a directory or an image), else an image."""
        stage = self._stage_by_name(name)
        if stage is not None:
            return StageSource(stage)
        if name.isdigit():
            raise UnknownStage(
                f"invalid from flag value {name}: stage index out of range",
                location=instruction.location,
            )
        context = self._named_context(name, instruction)
        if isinstance(context, NamedContextSource):
            return context
        return ImageSource(context or self.resolve_image(name, instruction))

    # -- target --------------------------------------------------------------------

    def graph(self, target: str) -> Graph:
        if not self.stages:
            raise UsageError("the Dockerfile has no stages")
        if target:
            index = self._stage_by_name(target)
            if index is None:
                raise UsageError(f"target stage {target!r} could not be found")
        else:
            index = len(self.stages) - 1
        needed: set[int] = set()
        pending = [index]
        while pending:
            current = pending.pop()
            if current in needed:
                continue
            needed.add(current)
            pending.extend(self.stages[current].dependencies())
        ordered = tuple(stage for stage in self.stages if stage.index in needed)
        return Graph(stages=ordered, target=index)


def _as_from(instruction: commands.Instruction) -> commands.From:
    if not isinstance(instruction, commands.From):
        raise DockerfileError(
            "no build stage in current context", location=instruction.location
        )
    return instruction


def _created_by(
    instruction: commands.Instruction, settings: ImageSettings, args: Mapping[str, str]
) -> str:
    """The history text BuildKit writes for an instruction."""
    if isinstance(instruction, commands.Run):
        if instruction.prepends_shell:
            argv = (*settings.effective_shell(), " ".join(instruction.command))
        else:
            argv = instruction.command
        shown = [(name, value) for name, value in args.items() if name not in PROXY_ARGS]
        prefix = ""
        if shown:
            prefix = f"|{len(shown)} " + " ".join(f"{k}={v}" for k, v in shown) + " "
        return "RUN " + prefix + " ".join(argv) + " # buildkit"
    if isinstance(instruction, commands.Copy | commands.Add):
        return instruction.original + " # buildkit"
    if isinstance(instruction, commands.Workdir):
        return f"WORKDIR {instruction.path}"
    return instruction.original
