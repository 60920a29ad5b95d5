"""What a build does for the store's sake: its lease, the gc after it, a full disk named as such.

engine.build runs inside ``build_lease``: the lease tells prune what the
build relies on (cache/leases.py); the keep-storage policy (``--gc-keep-storage``
or ROOT/config.json's ``gc.keepStorage``) is applied after the build, still
under the lease, so the image just built is never collected by its own
build; and running out of space anywhere in the store is reported as
"no space left on device" rather than as whatever write happened to fail.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from builder.errors import DiskFull, PybuildError, UsageError
from builder.plan.graph import BaseImage, Graph, ImageSource
from builder.request import BuildRequest
from cache.leases import Lease, Leases

__all__ = ["build_lease", "collect_after", "keep_storage", "lease_inputs",
           "no_cache_stages"]

_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def build_lease(request: BuildRequest) -> Iterator[Lease]:
    """Hold a lease on the build's root for the block; a full disk becomes DiskFull."""
    try:
        lease = Leases(request.root).acquire("build")
        try:
            yield lease
        finally:
            lease.release()
    except (OSError, PybuildError) as err:
        full = disk_full(err, request.root)
        if full is None:
            raise
        raise full from err


def disk_full(err: BaseException, root: Path) -> DiskFull | None:
    """A DiskFull for an error caused by a full file system anywhere in its chain, else None."""
    if isinstance(err, DiskFull):
        return None
    seen: BaseException | None = err
    while seen is not None:
        full = (isinstance(seen, OSError) and seen.errno in _FULL) or (
            isinstance(seen, sqlite3.Error)
            and getattr(seen, "sqlite_errorcode", None) == 13  # SQLITE_FULL
        )
        if full:
            return DiskFull(f"no space left on device for the store {root}: {err} "
                            "(pybuild prune clears what failed builds left behind)")
        seen = seen.__cause__ or seen.__context__
    return None


def lease_inputs(lease: Lease, graph: Graph) -> None:
    """Lease the layers of every image the build starts from or copies from, and its
    cache mounts (a step holds a mount's lock only while it runs)."""
    layers: list[str] = []
    mounts: list[str] = []
    for stage in graph.stages:
        if isinstance(stage.base, BaseImage):
            layers.extend(layer.diff_id for layer in stage.base.layers)
        for step in stage.steps:
            if isinstance(step.source, ImageSource):
                layers.extend(layer.diff_id for layer in step.source.image.layers)
            for mount in step.mounts:
                if isinstance(mount.source, ImageSource):
                    layers.extend(layer.diff_id for layer in mount.source.image.layers)
                if mount.spec.type == "cache":
                    mounts.append(mount.spec.id)
    with lease.guard():
        lease.use("layer", layers)
        lease.use("mount", mounts)


def no_cache_stages(request: BuildRequest, graph: Graph) -> frozenset[int]:
    """The stage indexes --no-cache-filter names (by name, or by index as FROM counts them)."""
    chosen: set[int] = set()
    for name in request.no_cache_filter:
        found = [stage.index for stage in graph.stages
                 if stage.name == name or (name.isdigit() and stage.index == int(name))]
        if not found:
            names = ", ".join(stage.name or str(stage.index) for stage in graph.stages)
            raise UsageError(f"--no-cache-filter {name}: no stage of that name in this build "
                             f"(its stages: {names})")
        chosen.update(found)
    return frozenset(chosen)


def keep_storage(request: BuildRequest) -> int | None:
    """The keep-storage limit for after the build: the flag, else the root's config."""
    if request.gc_keep_storage is not None:
        return request.gc_keep_storage
    from cache.gcpolicy import load_keep_storage

    return load_keep_storage(request.root)


def collect_after(request: BuildRequest, limit: int | None) -> None:
    """Prune least recently used cache until the store fits ``limit`` (None: no policy)."""
    if limit is None:
        return
    from cache.gc import collect_after_build

    try:
        result = collect_after_build(request.root, limit)
    except PybuildError as err:
        # The build itself succeeded; a gc that could not run is a warning.
        print(f"warning: gc after the build: {err}", file=sys.stderr)
        return
    if result is not None and result.removed and request.progress not in ("quiet", "rawjson"):
        from builder.cli_disk import format_size

        print(f"gc: removed {len(result.removed)} items, {format_size(result.reclaimed)} "
              f"(keep-storage {format_size(limit)})", file=sys.stderr)
