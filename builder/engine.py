"""One build, end to end: BuildRequest → plan → solve → image in the store → report.

This module wires the collaborators together and owns nothing else: the
planner reads images through ``resolve_image``, the solver runs steps through
the LayerExecutor, and the final stage becomes an OCI image in ROOT.
"""

from __future__ import annotations

import datetime
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
from builder.plan.graph import BaseImage, Graph, HistoryRecord, LayerRef, Step
from builder.plan.planner import PlanRequest, plan_build
from builder.plan.settings import HealthSettings, ImageSettings
from builder.progress import PlainProgress, make_progress, summary_line
from builder.request import BuildRequest, journal_key, resolved_build_args, source_date_epoch
from builder.solver import Solver, StageState, epoch_timestamp, timestamp
from cache.blobs import BlobStore
from cache.index import CacheIndex
from cache.records import BuildRecord, BuildRecords, StepRecord, new_build_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from builder.cachexport.imports import ImportChain
    from builder.checks.findings import CheckResult, CheckWarning
    from builder.context import BuildContext
    from builder.contexts import ContextResolver
    from cache.leases import Lease

__all__ = ["BuildResult", "build", "check_dockerfile", "open_root"]


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
    warnings: tuple[CheckWarning, ...] = ()  # the build checks' findings, printed at the end


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
    root: Root,
    insecure_registries: tuple[str, ...] = (),
    *,
    always_pull: bool = False,
    progress_mode: str = "quiet",
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
            manifest_desc = _pull(root, name, instruction, insecure_registries, progress_mode)
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
    root: Root,
    name: str,
    instruction: commands.Instruction,
    insecure: tuple[str, ...],
    progress_mode: str = "quiet",
) -> oci.Descriptor:
    from builder.errors import RegistryError
    from builder.registry import RegistryOptions, pull
    from builder.transfer_progress import make_transfer_progress

    # The build's view does not exist yet (it counts the steps planning finds):
    # FROM's pull shows its layers in the same mode on its own.
    progress = make_transfer_progress(progress_mode)
    try:
        return pull(name, root.images, root.blobs,
                    options=RegistryOptions(insecure_registries=insecure), progress=progress)
    except RegistryError as err:
        raise DockerfileError(f"pulling {name}: {err}", location=instruction.location) from err
    finally:
        progress.close()


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


def _clamped(created: str, epoch: str, epoch_seconds: int) -> str:
    """A history time no later than SOURCE_DATE_EPOCH, as BuildKit's exporter clamps them.

    Entries older than the epoch (a base image's) keep their time; later or
    undated ones become the epoch.
    """
    if created:
        try:
            moment = datetime.datetime.fromisoformat(created)
        except ValueError:
            return epoch
        if moment.tzinfo is not None and moment.timestamp() <= epoch_seconds:
            return created
    return epoch


def _export(
    root: Root, state: StageState, architecture: str, author: str, epoch_seconds: int | None,
    extra: dict[str, Any] | None = None,
) -> oci.Descriptor:
    """Write the final stage as an image.

    Its ``created`` time is that of its newest history entry (the newest
    layer this build made or reused), so a fully cached rebuild writes the
    very same config and manifest, as docker's cached rebuilds keep their
    image ID.  SOURCE_DATE_EPOCH, when set, is the image's time, and history
    entries later than it (all of this build's) are clamped to it.
    """
    epoch = "" if epoch_seconds is None else epoch_timestamp(epoch_seconds)
    dated = [record.created for record in state.history if record.created]
    created = epoch or (max(dated) if dated else timestamp(time.time()))
    history = tuple(
        HistoryEntry(
            created=(_clamped(record.created, epoch, epoch_seconds)
                     if epoch_seconds is not None else record.created or created),
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
        extra=extra or {},  # --cache-to type=inline: the cache records ride in the config
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
                source=solver.stats.sources.get(step.id, ""),
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
    from builder.ops.remote import reads_unpinned_remote
    from builder.progress import describe_step

    key = journal_key(request)
    if key is None or reads_unpinned_remote(graph):
        # A URL or git ref without a pin can change under the same Dockerfile.
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


def _cache_imports(
    request: BuildRequest, root: Root, index: CacheIndex, view: PlainProgress
) -> ImportChain:
    """--cache-from: the imported caches, in order, and their cache mounts restored."""
    from builder.cachexport import open_imports
    from builder.registry import RegistryOptions

    return open_imports(
        request.cache_from, root=request.root, store=root.images, index=index,
        options=RegistryOptions(insecure_registries=request.insecure_registries),
        warn=view.message,
    )


def _cache_exports(
    request: BuildRequest, root: Root, graph: Graph, solver: Solver, index: CacheIndex,
    imports: ImportChain | None, view: PlainProgress,
) -> None:
    """--cache-to (all but inline, which is in the image config already)."""
    from builder.cachexport.export import BuiltSteps, export_caches
    from builder.registry import RegistryOptions

    export_caches(
        request.cache_to, BuiltSteps.of(graph, solver.stats), root=request.root,
        blobs=root.blobs, index=index, imports=imports,
        options=RegistryOptions(insecure_registries=request.insecure_registries),
        warn=view.message,
    )


class _StepLogSink:
    """Every RUN step's output goes to the progress view and to the build's full logs.

    Logs are filed under the step's position in the build record, the number
    ``pybuild builds show`` and ``builds logs ID STEP`` use.
    """

    def __init__(self, root: Path, build_id: str, graph: Graph, view: PlainProgress) -> None:
        from cache.logs import StepLogs

        self._logs = StepLogs(root, build_id)
        self._view = view
        self._positions = {
            step.id: position
            for position, step in enumerate(
                (step for stage in graph.stages for step in stage.steps), start=1
            )
        }
        view.set_log_source(build_id, self._positions)

    def write(self, step: Step, data: bytes) -> None:
        self._logs.write(self._positions[step.id], data)
        self._view.step_log(step, data)

    def finish(self) -> None:
        from builder.errors import CacheError

        # The logs serve the record; losing them (a full disk) must not
        # turn a finished build into a failed one, but it is said.
        try:
            self._logs.finish()
        except CacheError as err:
            self._view.message(f"warning: {err}")


def _named_contexts(
    request: BuildRequest, root: Root,
    resolve_image: Callable[[str, commands.Instruction], BaseImage],
) -> ContextResolver | None:
    """The --build-context names the planner can ask for, or None without any."""
    if not request.build_contexts:
        return None
    from builder.contexts import ContextResolver, parse_build_context

    specs = tuple(parse_build_context(text) for text in request.build_contexts)
    return ContextResolver(specs, resolve_image=resolve_image, images=root.images,
                           blobs=root.blobs)


def check_dockerfile(
    request: BuildRequest, *, root: Root | None = None, all_stages: bool = False
) -> CheckResult:
    """The build checks of the request's Dockerfile, with its build args, target and ignore file.

    Base images are read from the store (pulled if missing and a registry is
    named), as the planner reads them; nothing is built.  ``all_stages``
    checks stages the target does not need too (``build --check``).
    """
    from builder.checks.runner import run_checks
    from builder.dockerignore import load_ignore

    root = root or open_root(request.root)
    return run_checks(
        request.dockerfile,
        filename=request.dockerfile_name,
        build_args=resolved_build_args(request),
        target=request.target,
        all_stages=all_stages,
        resolve_image=_image_resolver(root, request.insecure_registries),
        ignore=load_ignore(request.context, request.dockerfile_path),
    )


def build(request: BuildRequest, *, progress: PlainProgress | None = None) -> BuildResult:
    """Run one build; raises PybuildError subclasses on failure."""
    from builder import housekeeping

    limit = housekeeping.keep_storage(request)  # a bad gc policy stops the build before it runs
    with housekeeping.build_lease(request) as lease:
        result = _build(request, progress=progress, lease=lease)
        housekeeping.collect_after(request, limit)
    return result


def _build(request: BuildRequest, *, progress: PlainProgress | None, lease: Lease) -> BuildResult:
    """The build itself, under ``lease`` (builder/housekeeping.py)."""
    from builder import housekeeping
    from builder.context import BuildContext, StatCache
    from builder.dockerignore import load_ignore
    from builder.ops.executor import LayerExecutor
    from builder.plan.planner import platform_args
    from builder.snapshot.store import SnapshotStore
    from cache.keylocks import KeyLocks
    from cache.leased_index import LeasedIndex

    started = time.perf_counter()
    if not request.context.is_dir():
        raise UsageError(f"context {request.context}: not a directory")
    root = open_root(request.root)
    resolve_image = _image_resolver(root, request.insecure_registries, always_pull=request.pull,
                                    progress_mode=request.progress)
    named = _named_contexts(request, root, resolve_image)
    graph = plan_build(
        request.dockerfile,
        PlanRequest(build_args=resolved_build_args(request), target=request.target,
                    filename=request.dockerfile_name),
        resolve_image,
        resolve_context=named,
    )
    from builder.ops.run import check_entitlements

    check_entitlements(graph, request.allow)  # RUN --security=insecure needs --allow
    housekeeping.lease_inputs(lease, graph)
    # As BuildKit: checked once the plan stands, and before anything runs,
    # so "# check=error=true" stops the build before its first step.
    checks = check_dockerfile(request, root=root)
    if checks.failed:
        from builder.checks.report import render_short
        from builder.errors import BuildCheckFailed

        raise BuildCheckFailed(checks.failure_message(), report=render_short(checks.warnings))
    total = sum(len(stage.steps) for stage in graph.stages)
    view = progress or make_progress(request.progress, total)
    view.set_stage_names({stage.index: stage.name for stage in graph.stages})
    stat_cache = StatCache(request.root / "statcache")
    context = BuildContext(
        request.context.resolve(),
        load_ignore(request.context, request.dockerfile_path),
        stat_cache=stat_cache,
    )
    # Each --build-context directory is read through its own .dockerignore only.
    named_dirs = {
        name: BuildContext(path, load_ignore(path, None), stat_cache=stat_cache)
        for name, path in (named.directories() if named is not None else {}).items()
    }
    from builder.ops.remote import RemoteSources

    remote = RemoteSources(request.root)
    epoch = source_date_epoch(request)
    build_id = new_build_id()
    step_logs = _StepLogSink(request.root, build_id, graph, view)
    executor = LayerExecutor(
        blobs=root.blobs,
        snapshots=SnapshotStore(request.root),
        context=context,
        log=step_logs.write,
        source_date_epoch=epoch,
        named_contexts=named_dirs,
        remote=remote,
        secrets=request.secrets,
        ssh=request.ssh,
    )
    index = LeasedIndex(request.root / "cache.db", lease)
    imports = _cache_imports(request, root, index, view) if request.cache_from else None
    solver = Solver(
        executor=executor,
        index=index,
        progress=view,
        no_cache=request.no_cache,
        abort=executor.cancelled,
        source_date_epoch=epoch,
        imports=imports,
        key_lock=KeyLocks(request.root).hold,
        no_cache_stages=housekeeping.no_cache_stages(request, graph),
    )
    records = BuildRecords(request.root / "cache.db")
    wall_start = time.time()
    try:
        states = solver.solve(graph)
    except PybuildError as err:
        step_logs.finish()
        records.save(_build_record(build_id, wall_start, request, graph, solver,
                                   started, "", str(err).splitlines()[0]))
        raise
    finally:
        view.close()
        remote.close()
    step_logs.finish()
    target = graph.stage(graph.target)
    base = target.base
    architecture = platform_args()["TARGETARCH"]
    author = base.author if isinstance(base, BaseImage) else ""
    final = states[graph.target]
    if imports is not None:
        imports.ensure(final.layers)  # the image's imported hits, fetched only now
    inline = None
    if any(spec.type == "inline" for spec in request.cache_to):
        from builder.cachexport.export import BuiltSteps, inline_config

        inline = inline_config(BuiltSteps.of(graph, solver.stats), index)
    with lease.guard():  # no prune between writing the image and leasing or tagging it
        manifest = _export(root, final, architecture, author, epoch, inline)
        lease.use("blob", (manifest.digest,))
        tags = tuple(root.images.tag(name, manifest) for name in request.tags)
    config_digest = root.images.manifest(manifest).config.digest
    seconds = time.perf_counter() - started
    stats = solver.stats
    records.save(_build_record(build_id, wall_start, request, graph, solver, started,
                               manifest.digest, "ok"))
    if not request.no_cache:
        _journal(request, graph, manifest.digest, context, solver)
    if request.cache_to:
        _cache_exports(request, root, graph, solver, index, imports, view)
    view.message(summary_line(steps=stats.steps, cached=stats.cached, ran=stats.ran,
                              seconds=seconds, digest=manifest.digest))
    return BuildResult(manifest.digest, config_digest, tags, build_id, stats.steps, stats.cached,
                       stats.ran, seconds, warnings=checks.warnings)
