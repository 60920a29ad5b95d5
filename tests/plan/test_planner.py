"""The planner: stages, ARG/ENV scoping, expansion, target pruning, settings."""

from __future__ import annotations

import pytest

from builder.errors import DockerfileError, UsageError
from builder.frontend import commands
from builder.plan.graph import BaseImage, ContextSource, ScratchBase, StageSource
from builder.plan.planner import PlanRequest, plan_build
from builder.plan.settings import DEFAULT_PATH, ImageSettings

BUSYBOX = BaseImage(
    reference="busybox:latest",
    manifest_digest="sha256:" + "1" * 64,
    settings=ImageSettings(env=(("PATH", DEFAULT_PATH),), cmd=("sh",)),
    layers=(),
    history=(),
    architecture="amd64",
    os="linux",
)


def _resolve(name: str, instruction: commands.Instruction) -> BaseImage:
    if name.startswith("busybox"):
        return BUSYBOX
    raise DockerfileError(f"image {name} not found", location=instruction.location)


def _plan(text: str, **request: object) -> object:
    return plan_build(text.encode(), PlanRequest(**request), _resolve)  # type: ignore[arg-type]


def test_stages_by_name_and_index_and_target_pruning() -> None:
    graph = _plan(
        "FROM busybox AS base\nRUN echo a\n"
        "FROM scratch AS unused\nCOPY x /x\n"
        "FROM base AS final\nCOPY --from=0 /etc/a /a\n"
    )
    assert [stage.name for stage in graph.stages] == ["base", "final"]
    final = graph.stages[-1]
    assert final.base == StageSource(0)
    assert final.steps[0].source == StageSource(0)


def test_target_selects_a_stage_and_unknown_target_is_a_usage_error() -> None:
    text = "FROM busybox AS one\nRUN a\nFROM scratch AS two\nCOPY f /f\n"
    assert [s.name for s in _plan(text, target="one").stages] == ["one"]
    with pytest.raises(UsageError, match="nope"):
        _plan(text, target="nope")


def test_global_args_feed_from_and_build_args_override() -> None:
    text = "ARG BASE=nothing\nFROM ${BASE}\n"
    graph = _plan(text, build_args=(("BASE", "busybox"),))
    assert isinstance(graph.stages[0].base, BaseImage)
    with pytest.raises(DockerfileError, match="nothing"):
        _plan(text)


def test_stage_arg_inherits_global_default_and_env_wins_over_arg() -> None:
    graph = _plan(
        "ARG V=1\nFROM busybox\nARG V\nRUN echo $V\nENV V=2\nCOPY a${V} /b\n"
    )
    run, _, copy = graph.stages[0].steps[1:]
    assert ("V", "1") in run.run_env
    assert copy.instruction.sources == ("a2",)
    assert run.key_args == (("V", "1"),)


def test_args_do_not_leak_into_image_env_and_env_does() -> None:
    graph = _plan("FROM busybox\nARG A=x\nENV B=$A\n")
    final = graph.stages[0].final
    assert dict(final.env) == {"PATH": DEFAULT_PATH, "B": "x"}


def test_proxy_args_reach_run_but_not_the_key_or_history() -> None:
    graph = _plan(
        "FROM busybox\nRUN env\n", build_args=(("HTTP_PROXY", "http://p:3128"),)
    )
    run = graph.stages[0].steps[0]
    assert ("HTTP_PROXY", "http://p:3128") in run.run_env
    assert run.key_args == ()
    assert "p:3128" not in run.created_by


def test_workdir_is_relative_to_the_previous_and_normalised() -> None:
    graph = _plan("FROM scratch\nWORKDIR /a\nWORKDIR b/../c\nWORKDIR ./d/\n")
    assert graph.stages[0].final.workdir == "/a/c/d"
    assert [step.kind for step in graph.stages[0].steps] == ["mkdir"] * 3


def test_entrypoint_resets_inherited_cmd_but_not_one_set_in_the_stage() -> None:
    inherited = _plan("FROM busybox\nENTRYPOINT [\"x\"]\n").stages[0].final
    assert inherited.cmd is None and inherited.entrypoint == ("x",)
    own = _plan("FROM busybox\nCMD [\"y\"]\nENTRYPOINT [\"x\"]\n").stages[0].final
    assert own.cmd == ("y",)


def test_shell_applies_to_shell_form_cmd_and_run_history() -> None:
    graph = _plan('FROM busybox\nSHELL ["/bin/ash", "-eo"]\nCMD echo hi\nRUN echo a\n')
    stage = graph.stages[0]
    assert stage.final.cmd == ("/bin/ash", "-eo", "echo hi")
    assert stage.steps[-1].created_by == "RUN /bin/ash -eo echo a # buildkit"


def test_scratch_has_default_path_and_copy_reads_the_context() -> None:
    graph = _plan("FROM scratch\nCOPY a /a\n")
    stage = graph.stages[0]
    assert isinstance(stage.base, ScratchBase)
    assert dict(stage.initial.env) == {"PATH": DEFAULT_PATH}
    assert stage.steps[0].source == ContextSource()


def test_onbuild_triggers_of_the_base_run_after_from() -> None:
    parent = BaseImage(
        reference="busybox:onbuild", manifest_digest="sha256:" + "2" * 64,
        settings=ImageSettings(onbuild=("RUN echo triggered",)), layers=(), history=(),
        architecture="amd64", os="linux",
    )

    def resolve(name: str, instruction: commands.Instruction) -> BaseImage:
        return parent

    graph = plan_build(b"FROM busybox:onbuild\nRUN echo mine\n", PlanRequest(), resolve)
    steps = graph.stages[0].steps
    assert [step.instruction.command for step in steps] == [("echo triggered",), ("echo mine",)]
    assert graph.stages[0].final.onbuild == ()


def test_instruction_before_from_is_refused() -> None:
    with pytest.raises(DockerfileError):
        _plan("RUN echo\nFROM scratch\n")


def test_predefined_platform_args_in_from_and_after_arg() -> None:
    from builder.plan.planner import platform_args

    arch = platform_args()["TARGETARCH"]
    graph = _plan(
        "FROM busybox AS b\nARG TARGETARCH\nARG BUILDPLATFORM\n"
        "COPY a-${TARGETARCH} /a\nRUN echo $BUILDPLATFORM\n"
    )
    stage = graph.stages[0]
    assert stage.steps[2].instruction.sources == (f"a-{arch}",)
    assert ("BUILDPLATFORM", f"linux/{arch}") in stage.steps[3].run_env
    undeclared = _plan("FROM busybox\nCOPY a-${TARGETARCH} /a\n").stages[0]
    assert undeclared.steps[0].instruction.sources == ("a-",)
