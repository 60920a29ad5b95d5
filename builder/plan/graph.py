"""The build graph: stages of steps, each a frozen value the solver can key and run.

A Step knows everything it needs: its (expanded) instruction, the settings
it runs with and leaves behind, the environment a RUN sees, and where a COPY
reads from.  Nothing here touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.errors import SourceLocation
from builder.frontend import commands
from builder.plan.mounts import RunMount
from builder.plan.settings import ImageSettings
from builder.sources.urls import RemoteRef

__all__ = [
    "BaseImage",
    "ContextSource",
    "Graph",
    "HistoryRecord",
    "ImageSource",
    "LayerRef",
    "NamedContextSource",
    "PlannedMount",
    "ScratchBase",
    "Stage",
    "StageSource",
    "Step",
]


@dataclass(frozen=True, slots=True)
class LayerRef:
    """One layer of an image in the local store (stored uncompressed: blob == diff)."""

    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    created: str
    created_by: str
    comment: str
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class BaseImage:
    """An image from the local store used by FROM or COPY --from."""

    reference: str
    manifest_digest: str
    settings: ImageSettings
    layers: tuple[LayerRef, ...]
    history: tuple[HistoryRecord, ...]
    architecture: str
    os: str
    author: str = ""


@dataclass(frozen=True, slots=True)
class ScratchBase:
    """FROM scratch: no layers, an empty config."""


@dataclass(frozen=True, slots=True)
class ContextSource:
    """COPY/ADD from the build context."""


@dataclass(frozen=True, slots=True)
class StageSource:
    """COPY --from=<stage>, FROM <stage>: another stage's final result."""

    stage: int


@dataclass(frozen=True, slots=True)
class NamedContextSource:
    """COPY --from=<name>, FROM <name>: a ``--build-context name=DIR`` directory.

    ``name`` is the context's normalised name (the key the executor finds its
    directory by); ``path`` is the directory, for messages.
    """

    name: str
    path: str


@dataclass(frozen=True, slots=True)
class ImageSource:
    """COPY --from=<image>: an image's root file system."""

    image: BaseImage


@dataclass(frozen=True, slots=True)
class PlannedMount:
    """A RUN --mount and what it reads: the context, a stage, an image, or None
    (tmpfs, secret, ssh, and a cache without ``from``)."""

    spec: RunMount
    source: ContextSource | StageSource | ImageSource | NamedContextSource | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One instruction of a stage, ready to key and run.

    ``kind`` is "run", "copy" (COPY and ADD), "mkdir" (WORKDIR creates its
    directory) or "config" (changes only the image config).  ``run_env`` is
    the environment a RUN sees (image ENV, then the ARGs in scope);
    ``key_args`` are the ARG names and values that enter the cache key
    (proxy variables are left out, as BuildKit leaves them out).
    """

    id: int
    stage: int
    number: int  # 1-based within its stage, for "[stage 2/5]"
    count: int
    kind: str
    instruction: commands.Instruction
    before: ImageSettings
    after: ImageSettings
    run_env: tuple[tuple[str, str], ...]
    key_args: tuple[tuple[str, str], ...]
    created_by: str
    source: ContextSource | StageSource | ImageSource | NamedContextSource | None = None
    # ADD's URL and git sources, by position in the instruction's sources.
    remotes: tuple[RemoteRef, ...] = ()
    # RUN --mount, in the order written.
    mounts: tuple[PlannedMount, ...] = ()

    @property
    def location(self) -> SourceLocation:
        return self.instruction.location

    @property
    def makes_layer(self) -> bool:
        return self.kind != "config"

    @property
    def local_sources(self) -> tuple[str, ...]:
        """A COPY/ADD's sources read from its context, stage or image (not the remote ones)."""
        sources: tuple[str, ...] = getattr(self.instruction, "sources", ())
        if not self.remotes:
            return sources
        remote = {ref.index for ref in self.remotes}
        return tuple(source for index, source in enumerate(sources) if index not in remote)

    @property
    def linked(self) -> bool:
        """COPY/ADD ``--link``: the layer is made on an empty root, so neither its content
        nor its cache key depends on the parent.  BuildKit ignores --link when --chmod is
        given (it copies in place then), and so does pybuild."""
        instruction = self.instruction
        return (
            self.kind == "copy"
            and bool(getattr(instruction, "link", False))
            and not getattr(instruction, "chmod", "")
        )


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    name: str  # lower-case stage name, or "" when unnamed
    base: BaseImage | ScratchBase | StageSource
    from_instruction: commands.From
    steps: tuple[Step, ...]
    initial: ImageSettings  # after FROM (and the base image's ONBUILD triggers)

    @property
    def final(self) -> ImageSettings:
        return self.steps[-1].after if self.steps else self.initial

    def dependencies(self) -> frozenset[int]:
        needed = set()
        if isinstance(self.base, StageSource):
            needed.add(self.base.stage)
        for step in self.steps:
            if isinstance(step.source, StageSource):
                needed.add(step.source.stage)
            for mount in step.mounts:  # RUN --mount from=<stage>
                if isinstance(mount.source, StageSource):
                    needed.add(mount.source.stage)
        return frozenset(needed)


@dataclass(frozen=True, slots=True)
class Graph:
    """The stages a build needs, dependencies before dependents; the last is the target."""

    stages: tuple[Stage, ...]
    target: int

    def stage(self, index: int) -> Stage:
        for stage in self.stages:
            if stage.index == index:
                return stage
        raise KeyError(index)
