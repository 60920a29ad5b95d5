"""--cache-to: this build's step results → a cache another machine can import.

mode=min exports the steps whose layers make up the final image (the
target stage, and the stages it is built FROM); mode=max every keyed step
of every stage the build ran.  Each step becomes a CacheRecord read back
from the local index (which, by the time the build ends, holds every step
of the build: the ones that ran, the local hits and the imported hits whose
layers were fetched).  type=inline puts the min records in the image config
itself; type=local and type=registry write an OCI manifest (see
document.py) through a target that takes the layers first and the manifest
last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from builder.cachexport.document import (
    CONFIG_MEDIA_TYPE,
    INLINE_KEY,
    CacheDocument,
    CacheRecord,
    MountRecord,
)
from builder.cachexport.imports import ImportChain
from builder.cachexport.options import CacheSpec
from builder.errors import CacheError, RegistryError, StoreError
from builder.image import oci
from builder.plan.graph import Graph, StageSource
from builder.registry.client import RegistryOptions
from builder.solver import BuildStats
from cache.blobs import BlobStore
from cache.index import CacheIndex

__all__ = ["BuiltSteps", "export_caches", "inline_config"]


class CacheTarget(Protocol):
    def put_layers(self, layers: Sequence[oci.Descriptor]) -> list[oci.Descriptor]:
        """Make the target hold each store layer; the blob each is held as."""

    def finish(self, manifest: oci.Manifest, config: bytes) -> None:
        """Write the config and the manifest that makes the cache visible."""


@dataclass(frozen=True, slots=True)
class _Step:
    key: str
    parent: str
    created_by: str


@dataclass(frozen=True, slots=True)
class BuiltSteps:
    """The keyed steps of one build, in Dockerfile order, by export mode."""

    all_steps: tuple[_Step, ...]
    final_steps: tuple[_Step, ...]

    @classmethod
    def of(cls, graph: Graph, stats: BuildStats) -> BuiltSteps:
        keys = {record[0]: record[1] for record in stats.records}
        final = _final_chain(graph)
        every: dict[str, _Step] = {}
        in_final: dict[str, _Step] = {}
        for stage in graph.stages:
            for step in stage.steps:
                key = keys.get(step.id)
                if not key:
                    continue
                item = _Step(key, stats.parents.get(step.id, ""), step.created_by)
                every.setdefault(key, item)
                if stage.index in final:
                    in_final.setdefault(key, item)
        return cls(tuple(every.values()), tuple(in_final.values()))

    def for_mode(self, mode: str) -> tuple[_Step, ...]:
        return self.all_steps if mode == "max" else self.final_steps


def _final_chain(graph: Graph) -> set[int]:
    """The target stage and the stages it stands on (FROM <stage>): the final image's layers."""
    chain = set()
    index: int | None = graph.target
    while index is not None and index not in chain:
        chain.add(index)
        base = graph.stage(index).base
        index = base.stage if isinstance(base, StageSource) else None
    return chain


def _records(steps: Sequence[_Step], index: CacheIndex) -> list[CacheRecord]:
    records = []
    for step in steps:
        entry = index.lookup(step.key)
        if entry is None:
            continue  # pruned by another process meanwhile: nothing to export
        records.append(CacheRecord(
            key=step.key, parent=step.parent, diff_id=entry.diff_id, size=entry.size,
            created=entry.created, created_by=step.created_by,
        ))
    return records


def inline_config(steps: BuiltSteps, index: CacheIndex) -> dict[str, Any]:
    """The image config key of ``--cache-to type=inline``: the final image's records."""
    document = CacheDocument(mode="min", records=tuple(_records(steps.final_steps, index)))
    return {INLINE_KEY: document.to_json()}


def export_caches(
    specs: Sequence[CacheSpec],
    steps: BuiltSteps,
    *,
    root: Path,
    blobs: BlobStore,
    index: CacheIndex,
    imports: ImportChain | None,
    options: RegistryOptions,
    warn: Callable[[str], None],
) -> None:
    """Write every non-inline --cache-to; a failure is a CacheError unless ignore-error."""
    for spec in specs:
        if spec.type == "inline":
            continue  # written into the image config by the engine
        try:
            _export(spec, steps.for_mode(spec.mode), root=root, blobs=blobs, index=index,
                    imports=imports, options=options)
        except (CacheError, RegistryError, StoreError, OSError) as err:
            text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            message = f"--cache-to {spec.label}: {text}"
            if not spec.ignore_error:
                raise CacheError(message) from err
            warn(f"warning: {message}")


def _export(
    spec: CacheSpec,
    steps: Sequence[_Step],
    *,
    root: Path,
    blobs: BlobStore,
    index: CacheIndex,
    imports: ImportChain | None,
    options: RegistryOptions,
) -> None:
    from builder.cachexport.mounts import mount_layers

    if imports is not None:
        imports.ensure_keys(step.key for step in steps)  # hits whose layers are still remote
    records = _records(steps, index)
    layers = {record.diff_id: record.size for record in records if record.diff_id}
    mounts = mount_layers(root, blobs) if spec.cache_mounts else []
    for _, layer in mounts:
        layers.setdefault(layer.diff_id, layer.size)
    stored = [oci.Descriptor(oci.OCI_LAYER, diff_id, size) for diff_id, size in layers.items()]
    target = _target(spec, blobs, options)
    held = dict(zip(layers, target.put_layers(stored), strict=True))
    document = CacheDocument(
        mode=spec.mode,
        records=tuple(replace(record, blob=held[record.diff_id].digest) if record.diff_id
                      else record for record in records),
        mounts=tuple(MountRecord(mount_id, layer.diff_id, held[layer.diff_id].digest)
                     for mount_id, layer in mounts),
    )
    config = document.to_bytes()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = oci.Manifest(
        config=oci.Descriptor(CONFIG_MEDIA_TYPE, config_digest, len(config)),
        layers=tuple(dict.fromkeys(held.values())),
    )
    target.finish(manifest, config)


def _target(spec: CacheSpec, blobs: BlobStore, options: RegistryOptions) -> CacheTarget:
    if spec.type == "local":
        from builder.cachexport.local import LocalTarget

        return LocalTarget(Path(spec.location), blobs)
    from builder.cachexport.registry import RegistryTarget

    return RegistryTarget(spec.location, options, blobs)
