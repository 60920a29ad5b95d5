"""Walk the graph: key each step, reuse a cached result or run the step, in parallel.

The solver knows Steps, an executor behind a Protocol and the cache index;
it never imports sandbox or snapshot code.  Only steps that make a layer are
keyed and cached (config-only instructions never need running: the planner
already computed the settings), and a RUN's key covers everything it sees —
command, environment, user, working directory, shell — so an ENV change
still invalidates the RUNs after it.  Stages whose dependencies are done run
concurrently; two steps with the same key run once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from builder.explain import step_inputs
from builder.plan.graph import (
    BaseImage,
    Graph,
    HistoryRecord,
    LayerRef,
    ScratchBase,
    Stage,
    StageSource,
    Step,
)
from builder.plan.mounts import key_fields
from builder.plan.settings import ImageSettings
from cache.index import CacheEntry, CacheIndex
from cache.keys import KeyBuilder

__all__ = [
    "BuildStats",
    "CacheImports",
    "ImportedHit",
    "Progress",
    "Solver",
    "StageState",
    "StepExecutor",
    "chained_key",
    "epoch_timestamp",
    "step_key",
    "timestamp",
]


@dataclass(frozen=True, slots=True)
class StageState:
    """A stage (or a prefix of one): its layers, settings, history and cache key."""

    key: str
    layers: tuple[LayerRef, ...]
    settings: ImageSettings
    history: tuple[HistoryRecord, ...]


class StepExecutor(Protocol):
    def source_digest(self, step: Step, sources: Mapping[int, StageState]) -> str:
        """A digest of what a COPY/ADD reads (its context files, stage or image)."""

    def execute(
        self, step: Step, parent: StageState, sources: Mapping[int, StageState]
    ) -> LayerRef | None:
        """Run the step on top of parent; the new layer, or None if nothing changed."""

    def has_layer(self, layer: LayerRef) -> bool:
        """Whether a cached layer can still be used (its blob or snapshot is there)."""

    def source_files(self, step: Step) -> dict[str, list[Any]] | None:
        """For a COPY from the context: path -> [content digest, mode, uid, gid]."""


@dataclass(frozen=True, slots=True)
class ImportedHit:
    """A step's result found in an imported cache (--cache-from), not in the local index."""

    diff_id: str  # "" for a step that changed nothing
    size: int
    created: float  # when the step first ran, wherever that was
    source: str  # what build records call the cache: "import:<ref or dir>"


class CacheImports(Protocol):
    """Caches beyond the local index, asked after it misses (builder/cachexport).

    A hit's layer is fetched only when something reads it: ``ensure`` is
    called with the layers a step about to run stands on, and the engine
    calls it with the final image's layers, so the layers of hits nobody
    reads never leave the cache.
    """

    def lookup(self, key: str) -> ImportedHit | None:
        """The step's result in the first imported cache that has it."""

    def ensure(self, layers: Iterable[LayerRef]) -> None:
        """Make the imported layers among ``layers`` local (fetched, verified, indexed)."""


class Progress(Protocol):
    def step_started(self, step: Step) -> None: ...
    def step_cached(self, step: Step) -> None: ...
    def step_finished(self, step: Step, seconds: float) -> None: ...


@dataclass
class BuildStats:
    """Counts for the summary line; updated under the solver's lock."""

    steps: int = 0
    cached: int = 0
    ran: int = 0
    # Per keyed step: (step id, cache key, was it a hit, seconds, layer bytes,
    # the inputs the key was made from, for explaining misses).
    records: list[tuple[int, str, bool, float, int, dict[str, Any]]] = field(
        default_factory=list
    )
    # Per keyed step id: where a hit came from ("local", "import:<ref>"; ""
    # when the step ran) and the key of the state it stood on.
    sources: dict[int, str] = field(default_factory=dict)
    parents: dict[int, str] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        keyed = self.cached + self.ran
        return self.cached / keyed if keyed else 1.0


def base_state(stage: Stage, states: Mapping[int, StageState]) -> StageState:
    base = stage.base
    if isinstance(base, StageSource):
        parent = states[base.stage]
        return StageState(parent.key, parent.layers, stage.initial, parent.history)
    if isinstance(base, ScratchBase):
        return StageState(
            KeyBuilder("pybuild.base.v1").text("scratch").hexdigest(), (), stage.initial, ()
        )
    assert isinstance(base, BaseImage)
    key = KeyBuilder("pybuild.base.v1").text(base.manifest_digest).hexdigest()
    return StageState(key, base.layers, stage.initial, base.history)


def step_key(step: Step, parent_key: str, source_digest: str) -> str:
    """The cache key of a layer-making step: parent, what it does, what it reads."""
    instruction = step.instruction
    # A --link layer is made on an empty root, so its key leaves the parent out
    # (the state after it still chains through the parent: see chained_key).
    builder = KeyBuilder(f"pybuild.{step.kind}.v1").text(
        LINKED_PARENT if step.linked else parent_key
    )
    before = step.before
    if step.kind == "run":
        builder.texts(getattr(instruction, "command", ()))
        builder.text(str(getattr(instruction, "prepends_shell", False)))
        builder.texts(before.effective_shell())
        builder.pairs(before.env).pairs(step.key_args)
        builder.text(before.effective_workdir()).text(before.user)
        builder.texts(getattr(instruction, "mounts", ()))
        builder.text(getattr(instruction, "network", "")).text(getattr(instruction, "security", ""))
        for heredoc in getattr(instruction, "heredocs", ()):
            builder.text(heredoc.name).text(heredoc.content).text(str(heredoc.chomp))
        if step.mounts:
            # Each --mount as expanded (never a secret's value), then what its binds read.
            for mount in step.mounts:
                builder.texts(key_fields(mount.spec))
            builder.text(source_digest)
    elif step.kind == "copy":
        for name in ("sources", "destination", "chown", "chmod", "link", "parents",
                     "excludes", "keep_git_dir", "checksum", "unpack"):
            value = getattr(instruction, name, None)
            builder.text(repr(value))
        for content in getattr(instruction, "source_contents", ()):
            builder.text(content.path).text(content.data)
        builder.text(instruction.keyword)
        builder.text(before.effective_workdir()).text(before.user)
        builder.text(source_digest)
    elif step.kind == "mkdir":
        builder.text(step.after.effective_workdir()).text(before.user)
    return builder.hexdigest()


LINKED_PARENT = "linked"
"""What a --link step's key (and its explained inputs) name as the parent: none."""


def chained_key(step: Step, parent_key: str, key: str) -> str:
    """The key of the state after a step: the step's own key, unless the step is --link,
    whose key ignores the parent; the state after it (what later steps chain on) must
    not, or a RUN after COPY --link would hit over a changed base."""
    if not step.linked:
        return key
    return KeyBuilder("pybuild.linked-state.v1").text(parent_key).text(key).hexdigest()


class Solver:
    def __init__(
        self,
        *,
        executor: StepExecutor,
        index: CacheIndex,
        progress: Progress,
        no_cache: bool = False,
        workers: int = 4,
        abort: threading.Event | None = None,
        source_date_epoch: int | None = None,
        imports: CacheImports | None = None,
        key_lock: Callable[[str], contextlib.AbstractContextManager[object]] | None = None,
        no_cache_stages: frozenset[int] = frozenset(),
    ) -> None:
        self._executor = executor
        # Held around running a missed step, across processes (cache/keylocks.py):
        # a build that waited finds the layer the other one made.
        self._key_lock = key_lock or (lambda key: contextlib.nullcontext())
        # --no-cache-filter: the stages whose steps never hit the cache.
        self._no_cache_stages = no_cache_stages
        # --cache-from: asked when the local index misses; which keys it answered.
        self._imports = imports
        self._imported: dict[str, str] = {}
        self._index = index
        self._progress = progress
        self._no_cache = no_cache
        self._workers = workers
        # Set when the build stops, before waiting for the other stages, so
        # the executor can kill their running steps instead of finishing them.
        self._abort = abort
        # SOURCE_DATE_EPOCH: every new history entry is dated to it, and it
        # enters every layer key (its layers' mtimes are clamped to it, so a
        # layer made under one epoch is not the layer of another, or of none).
        self._epoch = source_date_epoch
        self._epoch_created = "" if source_date_epoch is None else epoch_timestamp(
            source_date_epoch
        )
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[tuple[LayerRef | None, str]]] = {}
        self.stats = BuildStats()

    def solve(self, graph: Graph) -> dict[int, StageState]:
        """Build every stage of graph; returns each stage's final state."""
        states: dict[int, StageState] = {}
        if len(graph.stages) == 1:
            # Nothing to overlap: starting a worker thread would only add latency.
            (stage,) = graph.stages
            states[stage.index] = self._solve_stage(stage, [])
            return states
        futures: dict[int, Future[StageState]] = {}
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="stage") as pool:
            for stage in graph.stages:
                dependencies = [futures[index] for index in sorted(stage.dependencies())]
                futures[stage.index] = pool.submit(self._solve_stage, stage, dependencies)
            try:
                # The first failure anywhere stops the build: do not wait for
                # the stages before it in the list to finish first.
                done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
                for future in done:
                    if (failure := future.exception()) is not None:
                        raise failure
                for index, future in futures.items():
                    states[index] = future.result()
            except BaseException:
                if self._abort is not None:
                    self._abort.set()
                for future in futures.values():
                    future.cancel()
                raise
        return states

    def _solve_stage(
        self, stage: Stage, dependencies: list[Future[StageState]]
    ) -> StageState:
        for dependency in dependencies:
            dependency.result()
        sources = {
            index: future.result()
            for index, future in zip(sorted(stage.dependencies()), dependencies, strict=True)
        }
        state = base_state(stage, sources)
        base = _base_name(stage)
        for step in stage.steps:
            state = self._solve_step(step, state, sources, base)
        return state

    def _solve_step(
        self, step: Step, parent: StageState, sources: Mapping[int, StageState], base: str
    ) -> StageState:
        with self._lock:
            self.stats.steps += 1
        if not step.makes_layer:
            self._progress.step_started(step)
            self._progress.step_finished(step, 0.0)
            # A config-only step dates from the layer before it, so a fully
            # cached rebuild gives the same config, hence the same image.
            created = parent.history[-1].created if parent.history else ""
            created = self._epoch_created or created
            history = (*parent.history, _history(step, empty=True, created=created))
            return StageState(parent.key, parent.layers, step.after, history)
        digest = ""
        if (step.kind == "copy" and step.source is not None) or (
            step.kind == "run" and step.mounts
        ):
            digest = self._executor.source_digest(step, sources)
        key = step_key(step, parent.key, digest)
        if self._epoch is not None:
            key = KeyBuilder("pybuild.epoch.v1").text(key).text(str(self._epoch)).hexdigest()
        files = self._executor.source_files(step) if step.kind == "copy" else None
        inputs = step_inputs(step, LINKED_PARENT if step.linked else parent.key, base, files,
                             source_digest=digest)
        started = time.perf_counter()
        layer, cached, created = self._layer_for(step, key, parent, sources)
        seconds = time.perf_counter() - started
        with self._lock:
            if cached:
                self.stats.cached += 1
            else:
                self.stats.ran += 1
            self.stats.records.append(
                (step.id, key, cached, seconds, layer.size if layer else 0, inputs)
            )
            self.stats.sources[step.id] = self._imported.get(key, "local") if cached else ""
            self.stats.parents[step.id] = parent.key
        layers = parent.layers if layer is None else (*parent.layers, layer)
        created = self._epoch_created or created
        history = (*parent.history, _history(step, empty=layer is None, created=created))
        return StageState(chained_key(step, parent.key, key), layers, step.after, history)

    def _layer_for(
        self, step: Step, key: str, parent: StageState, sources: Mapping[int, StageState]
    ) -> tuple[LayerRef | None, bool, str]:
        """(layer, was it a hit, when it was made): from the index, a running twin, or by running."""
        if not self._skips_cache(step):
            hit = self._local_hit(step, key)
            if hit is not None:
                return hit
            if self._imports is not None:
                imported = self._imports.lookup(key)
                if imported is not None:
                    with self._lock:
                        self._imported[key] = imported.source
                    self._progress.step_cached(step)
                    layer = LayerRef(imported.diff_id, imported.size) if imported.diff_id else None
                    return layer, True, timestamp(imported.created)
        with self._lock:
            running = self._inflight.get(key)
            owner = running is None
            if owner:
                running = Future()
                self._inflight[key] = running
        assert running is not None
        if not owner:
            # An identical step is running in another stage: wait for it.
            self._progress.step_cached(step)
            layer, created = running.result()
            return layer, True, created
        try:
            with self._key_lock(key):
                # Another build process may have run it while this one waited for the lock.
                hit = None if self._skips_cache(step) else self._local_hit(step, key)
                if hit is not None:
                    running.set_result((hit[0], hit[2]))
                    return hit
                return self._run(step, key, parent, sources, running)
        except BaseException as err:
            if not running.done():  # _run settles its own failures
                running.set_exception(err)
                with self._lock:
                    self._inflight.pop(key, None)
            raise

    def _skips_cache(self, step: Step) -> bool:
        return self._no_cache or step.stage in self._no_cache_stages

    def _local_hit(self, step: Step, key: str) -> tuple[LayerRef | None, bool, str] | None:
        """The step's result from the local index, if its layer is still there."""
        entry = self._index.lookup(key)
        if entry is None:
            return None
        layer = LayerRef(entry.diff_id, entry.size) if entry.diff_id else None
        if layer is None or self._executor.has_layer(layer):
            self._index.touch(key)
            self._progress.step_cached(step)
            return layer, True, timestamp(entry.created)
        self._index.forget(key)  # its blob is gone: run the step again
        return None

    def _run(
        self, step: Step, key: str, parent: StageState, sources: Mapping[int, StageState],
        running: Future[tuple[LayerRef | None, str]],
    ) -> tuple[LayerRef | None, bool, str]:
        """Run a missed step (holding its key's lock) and record its layer."""
        self._progress.step_started(step)
        started = time.perf_counter()
        try:
            if self._imports is not None:
                # What the step stands on or reads may be imported hits not fetched yet.
                self._imports.ensure(_layers_read(parent, sources))
            layer = self._executor.execute(step, parent, sources)
        except BaseException as err:
            running.set_exception(err)
            with self._lock:
                del self._inflight[key]
            raise
        made = time.time()
        self._index.record(
            CacheEntry(key, layer.diff_id if layer else "", layer.size if layer else 0, made)
        )
        created = timestamp(made)
        running.set_result((layer, created))
        self._progress.step_finished(step, time.perf_counter() - started)
        return layer, False, created


def _layers_read(parent: StageState, sources: Mapping[int, StageState]) -> list[LayerRef]:
    """Every layer a step may read: its parent's and those of the stages it depends on."""
    layers = list(parent.layers)
    for source in sources.values():
        layers.extend(source.layers)
    return layers


def _base_name(stage: Stage) -> str:
    """What a stage starts from, as explanations name it."""
    if isinstance(stage.base, StageSource):
        return f"stage {stage.base.stage}"
    if isinstance(stage.base, ScratchBase):
        return "scratch"
    return f"{stage.base.reference}@{stage.base.manifest_digest}"


def _history(step: Step, *, empty: bool, created: str) -> HistoryRecord:
    return HistoryRecord(created=created, created_by=step.created_by,
                         comment="buildkit.dockerfile.v0", empty_layer=empty)


def epoch_timestamp(seconds: int) -> str:
    """SOURCE_DATE_EPOCH as Go marshals a whole-second time.Time: no fraction."""
    import datetime

    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with nanosecond-free precision, as Go prints time.Time."""
    import datetime

    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

