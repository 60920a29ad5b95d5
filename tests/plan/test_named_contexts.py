"""The planner with --build-context names: what FROM and --from resolve to."""

from __future__ import annotations

from dataclasses import replace

import pytest

from builder.errors import DockerfileError
from builder.frontend import commands
from builder.plan.graph import (
    BaseImage,
    ContextSource,
    Graph,
    ImageSource,
    NamedContextSource,
    ScratchBase,
    StageSource,
)
from builder.plan.planner import ContextResolver, PlanRequest, plan_build
from builder.plan.settings import DEFAULT_PATH, ImageSettings
from builder.sources.urls import HttpSource

BUSYBOX = BaseImage(
    reference="busybox:latest",
    manifest_digest="sha256:" + "1" * 64,
    settings=ImageSettings(env=(("PATH", DEFAULT_PATH),), cmd=("sh",)),
    layers=(),
    history=(),
    architecture="amd64",
    os="linux",
)
OTHER = replace(BUSYBOX, reference="docker-image://other:1", manifest_digest="sha256:" + "2" * 64,
                settings=ImageSettings(env=(("PATH", "/other"),)))
DIRECTORY = NamedContextSource(name="extra", path="/somewhere")


def _resolve(name: str, instruction: commands.Instruction) -> BaseImage:
    if name.startswith("busybox") or name == "alpine":
        return BUSYBOX
    raise DockerfileError(f"image {name} not found", location=instruction.location)


def _contexts(**named: BaseImage | NamedContextSource) -> tuple[ContextResolver, list[str]]:
    asked: list[str] = []

    def resolve(name: str, instruction: commands.Instruction) -> BaseImage | NamedContextSource | None:
        asked.append(name)
        return named.get(name)

    return resolve, asked


def _plan(text: str, **named: BaseImage | NamedContextSource) -> Graph:
    resolve, _ = _contexts(**named)
    return plan_build(text.encode(), PlanRequest(), _resolve, resolve_context=resolve)


def test_an_image_context_wins_over_the_image_of_its_name() -> None:
    graph = _plan("FROM alpine\nRUN true\n", alpine=OTHER)
    stage = graph.stages[0]
    assert stage.base == OTHER
    assert stage.initial.env == (("PATH", "/other"),)


def test_a_context_replaces_a_stage_of_its_name_without_running_it() -> None:
    graph = _plan(
        "FROM busybox AS deps\nRUN exit 1\n"
        "FROM busybox\nCOPY --from=deps /x /x\n",
        deps=DIRECTORY,
    )
    deps, final = graph.stages
    assert deps.base == ScratchBase()
    (load,) = deps.steps  # the directory's files, not the RUN
    assert load.kind == "copy" and load.source == DIRECTORY
    assert isinstance(load.instruction, commands.Copy) and load.instruction.sources == ("/",)
    assert final.steps[0].source == StageSource(0)


def test_copy_from_a_directory_or_an_image_context() -> None:
    graph = _plan(
        "FROM busybox\nCOPY --from=extra /a /a\nCOPY --from=img /b /b\nCOPY c /c\n",
        extra=DIRECTORY, img=OTHER,
    )
    sources = [step.source for step in graph.stages[0].steps]
    assert sources == [DIRECTORY, ImageSource(OTHER), ContextSource()]


def test_from_a_directory_context_starts_with_its_files() -> None:
    graph = _plan("FROM extra\nRUN ls\n", extra=DIRECTORY)
    stage = graph.stages[0]
    assert stage.base == ScratchBase()
    assert [step.kind for step in stage.steps] == ["copy"]


def test_stage_names_come_before_contexts_for_from_and_copy() -> None:
    resolve, asked = _contexts()
    graph = plan_build(
        b"FROM busybox AS base\nRUN true\nFROM base\nCOPY --from=base /a /a\n",
        PlanRequest(), _resolve, resolve_context=resolve,
    )
    assert graph.stages[1].base == StageSource(0)
    assert asked == ["base", "busybox"]  # each stage's own name, and FROM busybox
    with pytest.raises(DockerfileError, match="stage index out of range"):
        _plan("FROM busybox\nCOPY --from=3 /a /a\n")


def test_add_steps_carry_their_remote_sources() -> None:
    graph = _plan("FROM busybox\nADD https://h/x.txt local /d/\n")
    step = graph.stages[0].steps[0]
    assert [ref.source for ref in step.remotes] == [HttpSource("https://h/x.txt", "x.txt")]
    assert step.local_sources == ("local",)
