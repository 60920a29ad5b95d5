"""One build, end to end: BuildRequest → plan → solve → image in the store → report.

This module wires the collaborators together and owns nothing else: the
planner reads images through ``resolve_image``, the solver runs steps through
the LayerExecutor, and the final stage becomes an OCI image in ROOT.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import DockerfileError, PybuildError, StoreError, UsageError
from builder.frontend import commands
from builder.image import oci
from builder.image.config import ContainerConfig, HistoryEntry, ImageConfig
from builder.image.config import Healthcheck as ConfigHealthcheck
from builder.image.store import ImageStore
from builder.plan.graph import BaseImage, Graph, HistoryRecord, LayerRef
from builder.plan.planner import PlanRequest, plan_build
from builder.plan.settings import HealthSettings, ImageSettings
from builder.progress import PlainProgress, make_progress, summary_line
from builder.request import BuildRequest, journal_key, resolved_build_args
from builder.solver import Solver, StageState, timestamp
from cache.blobs import BlobStore
from cache.index import CacheIndex
from cache.records import BuildRecord, BuildRecords, StepRecord, new_build_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.context import BuildContext

__all__ = ["BuildResult", "build", "open_root"]


@dataclass(frozen=True, slots=True)
class BuildResult:
    manifest_digest: str
    config_digest: str
    tags: tuple[str, ...]
    build_id: str
    steps: int
    cached: int
    ran: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Root:
    path: Path
    blobs: BlobStore
    images: ImageStore


def open_root(path: Path) -> Root:
    try:
        for sub in ("blobs/sha256", "snapshots", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"creating the pybuild root {path}: {err.strerror}") from err
    blobs = BlobStore(path)
    return Root(path, blobs, ImageStore(path, blobs=blobs))


def _settings_from_config(config: ContainerConfig) -> ImageSettings:
    env = tuple(tuple(entry.split("=", 1)) if "=" in entry else (entry, "") for entry in config.env)
    health = None
    if config.healthcheck is not None:
        check = config.healthcheck
        health = HealthSettings(check.test, check.interval_ns, check.timeout_ns,
                                check.start_period_ns, check.start_interval_ns, check.retries)
    return ImageSettings(
        env=env,  # type: ignore[arg-type]
        workdir=config.working_dir,
        user=config.user,
        shell=config.shell,
        cmd=config.cmd or None,
        entrypoint=config.entrypoint or None,
        labels=config.labels,
        exposed_ports=config.exposed_ports,
        volumes=config.volumes,
        stop_signal=config.stop_signal,
        healthcheck=health,
        onbuild=config.on_build,
    )


def _names_a_registry(name: str) -> bool:
    """Whether a reference names its registry (``host.tld/...``, ``host:port/...``).

    Only those are pulled when missing: a bare ``busybox`` would mean Docker
    Hub, and pybuild does not reach out there unasked.
    """
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _image_resolver(
    root: Root, insecure_registries: tuple[str, ...] = (), *, always_pull: bool = False
) -> Callable[[str, commands.Instruction], BaseImage]:
    def resolve(name: str, instruction: commands.Instruction) -> BaseImage:
        try:
            if always_pull and _names_a_registry(name):
                raise StoreError("--pull: asking the registry first")
            manifest_desc = root.images.resolve(name)
        except StoreError as err:
            if not _names_a_registry(name):
                raise DockerfileError(
                    f"{name}: image not found in the local store ({root.path}); "
                    "use pybuild import, pybuild load or pybuild pull to add it",
                    location=instruction.location,
                ) from err
            manifest_desc = _pull(root, name, instruction, insecure_registries)
        manifest = root.images.manifest(manifest_desc)
        config = root.images.config(manifest_desc)
        layers = tuple(
            LayerRef(diff_id, layer.size)
            for diff_id, layer in zip(config.diff_ids, manifest.layers, strict=False)
        )
        history = tuple(
            HistoryRecord(entry.created, entry.created_by, entry.comment, entry.empty_layer)
            for entry in config.history
        )
        return BaseImage(
            reference=name,
            manifest_digest=manifest_desc.digest,
            settings=_settings_from_config(config.config),
            layers=layers,
            history=history,
            architecture=config.architecture,
            os=config.os,
            author=config.author,
        )

    return resolve


def _pull(
    root: Root, name: str, instruction: commands.Instruction, insecure: tuple[str, ...]
) -> oci.Descriptor:
    from builder.errors import RegistryError
    from builder.registry import RegistryOptions, pull

    try:
        return pull(name, root.images, root.blobs,
                    options=RegistryOptions(insecure_registries=insecure))
    except RegistryError as err:
        raise DockerfileError(f"pulling {name}: {err}", location=instruction.location) from err


def _container_config(settings: ImageSettings) -> ContainerConfig:
    health = None
    if settings.healthcheck is not None:
        check = settings.healthcheck
        health = ConfigHealthcheck(
            test=check.test, interval_ns=check.interval_ns, timeout_ns=check.timeout_ns,
            start_period_ns=check.start_period_ns, start_interval_ns=check.start_interval_ns,
            retries=check.retries,
        )
    ports = tuple(port if "/" in port else f"{port}/tcp" for port in settings.exposed_ports)
    return ContainerConfig(
        user=settings.user,
        exposed_ports=ports,
        env=tuple(f"{key}={value}" for key, value in settings.env),
        entrypoint=settings.entrypoint or (),
        cmd=settings.cmd or (),
        volumes=settings.volumes,
        working_dir=settings.workdir,
        labels=settings.labels,
        stop_signal=settings.stop_signal,
        healthcheck=health,
        on_build=settings.onbuild,
        shell=settings.shell,
    )


def _source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH from the environment, when it is set to whole seconds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(epoch) if epoch.isdigit() else None


def _export(
    root: Root, state: StageState, architecture: str, author: str, epoch_seconds: int | None
) -> oci.Descriptor:
    """Write the final stage as an image.

    Its ``created`` time is that of its newest history entry (the newest
    layer this build made or reused), so a fully cached rebuild writes the
    very same config and manifest, as docker's cached rebuilds keep their
    image ID.  SOURCE_DATE_EPOCH, when set, overrides every time.
    """
    epoch = ""
    if epoch_seconds is not None:
        moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.UTC)
        epoch = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    dated = [record.created for record in state.history if record.created]
    created = epoch or (max(dated) if dated else timestamp(time.time()))
    history = tuple(
        HistoryEntry(
            created=epoch or record.created or created,
            created_by=record.created_by,
            comment=record.comment,
            empty_layer=record.empty_layer,
        )
        for record in state.history
    )
    config = ImageConfig(
        architecture=architecture,
        os="linux",
        created=created,
        author=author,
        config=_container_config(state.settings),
        diff_ids=tuple(layer.diff_id for layer in state.layers),
        history=history,
    )
    layers = [oci.Descriptor(oci.OCI_LAYER, layer.diff_id, layer.size) for layer in state.layers]
    return root.images.put_image(config, layers)


def _build_record(
    build_id: str, wall_start: float, request: BuildRequest, graph: Graph, solver: Solver,
    started: float, digest: str, outcome: str,
) -> BuildRecord:
    import json

    keyed = {record[0]: record for record in solver.stats.records}
    steps = []
    for stage in graph.stages:
        for step in stage.steps:
            _, key, cached, seconds, size, inputs = keyed.get(
                step.id, (step.id, "", False, 0.0, 0, {})
            )
            hit = -1 if not key else int(cached)
            steps.append(StepRecord(
                stage.name or str(stage.index), step.instruction.original,
                step.location.start_line, key, hit, seconds, size,
                json.dumps(inputs, sort_keys=True) if inputs else "",
            ))
    stats = solver.stats
    return BuildRecord(
        id=build_id, started=wall_start, dockerfile=request.dockerfile_name,
        target=request.target, steps=stats.steps, cached=stats.cached, ran=stats.ran,
        seconds=time.perf_counter() - started, digest=digest, outcome=outcome,
        step_records=tuple(steps),
    )


def _journal(
    request: BuildRequest, graph: Graph, manifest: str, context: BuildContext,
    solver: Solver,
) -> None:
    """Record this build so an identical rebuild can be answered from the journal."""
    from builder import journal
    from builder.progress import describe_step

    key = journal_key(request)
    if key is None:
        return
    ignore_files = [request.context / ".dockerignore"]
    if request.dockerfile_path is not None:
        name = request.dockerfile_path.name + ".dockerignore"
        ignore_files.insert(0, request.dockerfile_path.with_name(name))
    keys = {record[0]: record[1] for record in solver.stats.records}
    # Per step: what progress shows, whether it is keyed, and what a build
    # record of a replay needs (key, line, stage, instruction).
    lines = [
        (describe_step(step, stage.name), step.makes_layer, keys.get(step.id, ""),
         step.location.start_line, stage.name or str(stage.index), step.instruction.original)
        for stage in graph.stages
        for step in stage.steps
    ]
    journal.record(
        request.root, key,
        context=request.context.resolve(),
        manifest=manifest,
        lines=lines,
        steps=solver.stats.steps,
        cached=solver.stats.cached + solver.stats.ran,
        context_stats=context.visited_stats(),
        ignore_files=ignore_files,
        ignore_has_exceptions=context.ignore.has_exceptions,
    )


def build(request: BuildRequest, *, progress: PlainProgress | None = None) -> BuildResult:
    """Run one build; raises PybuildError subclasses on failure."""
    from builder.context import BuildContext, StatCache
    from builder.dockerignore import load_ignore
    from builder.ops.executor import LayerExecutor
    from builder.plan.planner import platform_args
    from builder.snapshot.store import SnapshotStore

    started = time.perf_counter()
    if not request.context.is_dir():
        raise UsageError(f"context {request.context}: not a directory")
    root = open_root(request.root)
    graph = plan_build(
        request.dockerfile,
        PlanRequest(build_args=resolved_build_args(request), target=request.target,
                    filename=request.dockerfile_name),
        _image_resolver(root, request.insecure_registries, always_pull=request.pull),
    )
    total = sum(len(stage.steps) for stage in graph.stages)
    view = progress or make_progress(request.progress, total)
    view.set_stage_names({stage.index: stage.name for stage in graph.stages})
    context = BuildContext(
        request.context.resolve(),
        load_ignore(request.context, request.dockerfile_path),
        stat_cache=StatCache(request.root / "statcache"),
    )
    epoch = _source_date_epoch()
    executor = LayerExecutor(
        blobs=root.blobs,
        snapshots=SnapshotStore(request.root),
        context=context,
        log=view.step_log,
        source_date_epoch=epoch,
    )
    solver = Solver(
        executor=executor,
        index=CacheIndex(request.root / "cache.db"),
        progress=view,
        no_cache=request.no_cache,
        abort=executor.cancelled,
    )
    records = BuildRecords(request.root / "cache.db")
    build_id = new_build_id()
    wall_start = time.time()
    try:
        states = solver.solve(graph)
    except PybuildError as err:
        records.save(_build_record(build_id, wall_start, request, graph, solver,
                                   started, "", str(err).splitlines()[0]))
        raise
    finally:
        view.close()
    target = graph.stage(graph.target)
    base = target.base
    architecture = platform_args()["TARGETARCH"]
    author = base.author if isinstance(base, BaseImage) else ""
    manifest = _export(root, states[graph.target], architecture, author, epoch)
    tags = tuple(root.images.tag(name, manifest) for name in request.tags)
    config_digest = root.images.manifest(manifest).config.digest
    seconds = time.perf_counter() - started
    stats = solver.stats
    records.save(_build_record(build_id, wall_start, request, graph, solver, started,
                               manifest.digest, "ok"))
    if not request.no_cache:
        _journal(request, graph, manifest.digest, context, solver)
    view.message(summary_line(steps=stats.steps, cached=stats.cached, ran=stats.ran,
                              seconds=seconds, digest=manifest.digest))
    return BuildResult(manifest.digest, config_digest, tags, build_id, stats.steps, stats.cached,
                       stats.ran, seconds)
