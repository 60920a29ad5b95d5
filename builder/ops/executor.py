"""The solver's StepExecutor: run a step on an overlay and commit its layer.

Every layer-making step goes the same way: make sure the parent's layers are
unpacked as snapshots, mount a fresh upper dir over them, do the step's work
in the merged root (RUN in the sandbox, COPY/ADD and WORKDIR's mkdir from
here), unmount, stream the upper dir as a tar into the blob store and keep
the upper dir itself as the layer's snapshot (a rename, no copy).  A step
that changed nothing adds no layer.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from builder.errors import BuildError, PybuildError, StepFailed
from builder.frontend import commands
from builder.plan.graph import (
    ContextSource,
    ImageSource,
    LayerRef,
    NamedContextSource,
    StageSource,
    Step,
)
from builder.solver import StageState
from cache.blobs import BlobStore

# What only a step that runs needs (sandbox, copy, layer writing) is imported
# when a step runs: a fully cached build must not pay for it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.context import BuildContext, SourceView
    from builder.ops.mounts import MountPreparer
    from builder.ops.remote import RemoteSources
    from builder.secrets import SecretSource, SshSource
    from builder.snapshot.store import SnapshotStore

__all__ = ["LayerExecutor"]


def _hex(diff_id: str) -> str:
    return diff_id.removeprefix("sha256:")


class LayerExecutor:
    """Runs steps for the solver over one pybuild root."""

    def __init__(
        self,
        *,
        blobs: BlobStore,
        snapshots: SnapshotStore,
        context: BuildContext | None,
        log: Callable[[Step, bytes], None],
        source_date_epoch: int | None = None,
        named_contexts: Mapping[str, BuildContext] | None = None,
        remote: RemoteSources | None = None,
        secrets: tuple[SecretSource, ...] = (),
        ssh: tuple[SshSource, ...] = (),
    ) -> None:
        # RUN --mount=type=secret|ssh sources (values are read when a step runs).
        self._secrets = secrets
        self._ssh = ssh
        self._mount_preparer: MountPreparer | None = None
        self._blobs = blobs
        # --build-context directories by name, and ADD's URL and git sources.
        self._named_contexts = dict(named_contexts or {})
        self._remote = remote
        self._snapshots = snapshots
        self._context = context
        self._log = log
        self._epoch = source_date_epoch
        # Set when the build stops (Ctrl-C, another stage failed): running
        # steps are killed instead of being waited for.
        self.cancelled = threading.Event()
        # Stages call in from several threads; the context's stat cache is one file.
        self._context_lock = threading.Lock()

    # -- the solver's protocol --------------------------------------------------

    def has_layer(self, layer: LayerRef) -> bool:
        return self._snapshots.exists(_hex(layer.diff_id)) or self._blobs.has(layer.diff_id)


    def source_files(self, step: Step) -> dict[str, list[Any]] | None:
        """What a COPY from the context reads, file by file, for explaining a miss."""
        from builder.context import expand_source
        from builder.ops.copy_digest import filtered_source_paths

        instruction = step.instruction
        if not isinstance(step.source, ContextSource) or self._context is None:
            return None
        assert isinstance(instruction, commands.Copy | commands.Add)
        parents = bool(getattr(instruction, "parents", False))
        with self._context_lock:
            view = self._context.view()
            stats = view.stats or {}
            if instruction.excludes or parents:
                # Exactly what the filtered copy reads: an excluded file never shows.
                try:
                    read = filtered_source_paths(view, step.local_sources,
                                                 excludes=instruction.excludes, parents=parents)
                except PybuildError:
                    read = frozenset()  # the copy itself reports it
                stats = {rel: info for rel, info in stats.items() if rel in read}
                wanted = {""}
            else:
                wanted = set()
                for source in step.local_sources:
                    try:
                        matches = expand_source(view, source)
                    except BuildError:
                        continue
                    for path, _ in matches:
                        wanted.add(path)
            files: dict[str, list[Any]] = {}
            for rel, info in stats.items():
                if not any(rel == path or rel.startswith(path + "/") or path in ("", ".")
                           for path in wanted):
                    continue
                digest = ""
                if stat.S_ISREG(info.st_mode):
                    host = os.fsencode(os.path.join(self._context.root, rel))
                    digest = self._context.checksum_file(host, info).hex()
                files[rel] = [digest, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid]
        return files

    def source_digest(self, step: Step, sources: Mapping[int, StageState]) -> str:
        if step.kind == "run":  # what its --mount binds read
            return self._mounts().digest(step, sources)
        instruction = step.instruction
        assert isinstance(instruction, commands.Copy | commands.Add)
        if step.remotes or isinstance(step.source, NamedContextSource):
            return self._named_or_remote_digest(step, sources)
        if isinstance(step.source, StageSource):
            return "stage:" + sources[step.source.stage].key
        if isinstance(step.source, ImageSource):
            return "image:" + step.source.image.manifest_digest
        if not instruction.sources:
            return ""
        context = self._require_context(step)
        # Only an octal --chmod makes the source's mode irrelevant: a symbolic
        # one (u+x, go=rX) starts from it.
        overridden = instruction.chmod[:1].isdigit()
        parents = bool(getattr(instruction, "parents", False))
        with self._context_lock:
            if instruction.excludes or parents:
                return "context-filtered:" + self._filtered_digest(
                    context, instruction.sources, instruction.excludes, parents, overridden
                )
            return "context:" + context.checksum_sources(
                list(instruction.sources), mode_overridden=overridden
            )

    @staticmethod
    def _filtered_digest(
        context: BuildContext,
        sources: tuple[str, ...],
        excludes: tuple[str, ...],
        parents: bool,
        mode_overridden: bool,
    ) -> str:
        """COPY --exclude/--parents: only what the copy takes enters the key."""
        from builder.ops.copy_digest import checksum_filtered_sources

        digest = checksum_filtered_sources(
            context.view(), sources, excludes=excludes, parents=parents,
            include_mode=not mode_overridden, file_checksum=context.checksum_file,
        )
        if context.stat_cache is not None:
            context.stat_cache.save()
        return digest

    def _named_or_remote_digest(self, step: Step, sources: Mapping[int, StageState]) -> str:
        """The digest of a COPY from a --build-context directory, or of an ADD with URL or
        git sources: its local sources as any copy's, then each remote source's."""
        instruction = step.instruction
        assert isinstance(instruction, commands.Copy | commands.Add)
        local = step.local_sources
        parts = []
        if isinstance(step.source, StageSource):
            parts.append("stage:" + sources[step.source.stage].key)
        elif isinstance(step.source, ImageSource):
            parts.append("image:" + step.source.image.manifest_digest)
        elif local:
            context = (self._named_context(step) if isinstance(step.source, NamedContextSource)
                       else self._require_context(step))
            overridden = instruction.chmod[:1].isdigit()
            parents = bool(getattr(instruction, "parents", False))
            with self._context_lock:
                # --parents keeps paths a plain prefix checksum would not see.
                if instruction.excludes or parents:
                    parts.append("context-filtered:" + self._filtered_digest(
                        context, local, instruction.excludes, parents, overridden))
                else:
                    parts.append("context:" + context.checksum_sources(
                        list(local), mode_overridden=overridden))
        if step.remotes:
            parts.append("remote:" + self._require_remote(step).digest(step))
        return "\0".join(parts)

    def _named_context(self, step: Step) -> BuildContext:
        assert isinstance(step.source, NamedContextSource)
        context = self._named_contexts.get(step.source.name)
        if context is None:
            raise StepFailed(f"no build context named {step.source.name!r}",
                             location=step.location)
        return context

    def _require_remote(self, step: Step) -> RemoteSources:
        if self._remote is None:
            raise StepFailed("this build cannot fetch URL or git sources",
                             location=step.location)
        return self._remote

    def execute(
        self, step: Step, parent: StageState, sources: Mapping[int, StageState]
    ) -> LayerRef | None:
        from builder.ops import run as run_op

        # COPY --link works on an empty root: its layer must not depend on the parent.
        lower = [] if step.linked else self._lower_keys(parent.layers)
        with self._snapshots.prepare(lower, keep_upper_on_error=step.kind == "run") as active:
            rootfs = active.rootfs
            if step.kind == "run":
                with self._mounts().prepare(step, sources, dict(step.run_env)) as prepared:
                    run_op.run_step(
                        step, rootfs, lambda data: self._log(step, data), cancel=self.cancelled,
                        prepared=prepared,
                    )
            elif step.kind == "copy":
                with self._source_view(step, sources) as view:
                    self._copy(step, rootfs, view)
            elif step.kind == "mkdir":
                self._mkdir(step, rootfs)
            active.unmount()
            return self._commit(active.upper)

    # -- pieces ---------------------------------------------------------------------

    def _mounts(self) -> MountPreparer:
        """RUN --mount's helper, made on first use (a build without mounts never pays)."""
        if self._mount_preparer is None:
            from builder.ops.mounts import MountPreparer

            self._mount_preparer = MountPreparer(
                root=self._snapshots.root,
                context_for=self._mount_context,
                context_lock=self._context_lock,
                open_layers=self._open_layers,
                secrets=self._secrets,
                ssh=self._ssh,
                cancelled=self.cancelled,
            )
        return self._mount_preparer

    def _mount_context(
        self, source: ContextSource | NamedContextSource, step: Step
    ) -> BuildContext:
        if isinstance(source, NamedContextSource):
            context = self._named_contexts.get(source.name)
            if context is None:
                raise StepFailed(f"no build context named {source.name!r}",
                                 location=step.location)
            return context
        return self._require_context(step)

    @contextlib.contextmanager
    def _open_layers(self, layers: tuple[LayerRef, ...]) -> Iterator[Path]:
        """A stage's or an image's root for the block, on a throw-away overlay."""
        with self._snapshots.prepare(self._lower_keys(layers)) as source:
            yield source.rootfs

    def _lower_keys(self, layers: tuple[LayerRef, ...]) -> list[str]:
        """Snapshot keys for an overlay over layers, top first, each once.

        Overlay refuses one dir twice (ELOOP), and two steps can make the same
        layer (RUNs that only touched the same directories).  Dropping the
        deeper copy changes nothing: the upper copy makes the same changes
        again, over everything between them.
        """
        keys: list[str] = []
        for layer in reversed(layers):  # overlay wants the top layer first
            key = _hex(layer.diff_id)
            if key in keys:
                continue
            self._snapshots.ensure_from_tar(key, functools.partial(self._open_blob, layer.diff_id))
            keys.append(key)
        return keys

    def _open_blob(self, digest: str) -> BinaryIO:
        return self._blobs.open(digest, verify=True)

    def _commit(self, upper: Path) -> LayerRef | None:
        from builder.snapshot.diff import write_layer

        with self._blobs.writer() as writer:
            # The writer hashes what it stores: the digest is its commit's.
            stats = write_layer(
                upper, cast(BinaryIO, writer), source_date_epoch=self._epoch, digest=False
            )
            if stats.is_empty:
                return None
            blob = writer.commit()
        self._snapshots.adopt(_hex(blob.digest), upper)
        return LayerRef(blob.digest, blob.size)

    def _require_context(self, step: Step) -> BuildContext:
        if self._context is None:
            raise StepFailed(
                "this build has no context to copy from", location=step.location
            )
        return self._context

    @contextlib.contextmanager
    def _source_view(
        self, step: Step, sources: Mapping[int, StageState]
    ) -> Iterator[SourceView | None]:
        from builder.context import SourceView

        if isinstance(step.source, ContextSource):
            instruction = step.instruction
            assert isinstance(instruction, commands.Copy | commands.Add)
            if not step.local_sources:
                yield None
                return
            with self._context_lock:
                view = self._require_context(step).view()
            yield view
            return
        if isinstance(step.source, NamedContextSource):
            with self._context_lock:
                view = self._named_context(step).view()
            yield view
            return
        if isinstance(step.source, StageSource):
            layers = sources[step.source.stage].layers
        else:
            assert isinstance(step.source, ImageSource)
            layers = step.source.image.layers
        # Another stage's or an image's root, read through a throw-away overlay.
        with self._snapshots.prepare(self._lower_keys(layers)) as source:
            yield SourceView(source.rootfs)

    def _copy(self, step: Step, rootfs: Path, view: SourceView | None) -> None:
        from builder.context import SourceView
        from builder.ops.chown import resolve_chown
        from builder.ops.copy import CopyRequest, InlineFile, copy_into

        instruction = step.instruction
        assert isinstance(instruction, commands.Copy | commands.Add)
        unpack = isinstance(instruction, commands.Add) and instruction.unpack is not False
        request = CopyRequest(
            sources=instruction.sources,
            inline_files=tuple(
                InlineFile(content.path, content.data.encode("utf-8", "surrogateescape"))
                for content in instruction.source_contents
            ),
            destination=instruction.destination,
            workdir=step.before.effective_workdir(),
            chown=instruction.chown,
            chmod=instruction.chmod,
            excludes=instruction.excludes,
            parents=bool(getattr(instruction, "parents", False)),
            unpack=unpack,
            keyword=instruction.keyword,
        )

        def resolve_owner(spec: str) -> tuple[int, int]:
            # COPY's own rules (not USER's); a --link copy has no passwd to read.
            return resolve_chown(None if step.linked else rootfs, spec)

        source = view if view is not None else SourceView(rootfs)
        try:
            if step.remotes:
                from builder.ops.remote import copy_with_remotes

                copy_with_remotes(rootfs, source, request, step, self._require_remote(step),
                                  resolve_owner=resolve_owner)
            else:
                copy_into(rootfs, source, request, resolve_owner=resolve_owner)
        except StepFailed:
            raise
        except BuildError as err:
            raise StepFailed(str(err), location=step.location) from err

    def _mkdir(self, step: Step, rootfs: Path) -> None:
        """WORKDIR creates its directory, owned by the current USER (BuildKit's rule)."""
        from builder.sandbox.paths import resolve
        from builder.sandbox.users import resolve_user

        path = step.after.effective_workdir()
        target = os.path.join(rootfs, resolve(os.fspath(rootfs), path))
        existed = os.path.isdir(target)
        os.makedirs(target, mode=0o755, exist_ok=True)
        if not existed and step.before.user:
            user = resolve_user(rootfs, step.before.user)
            os.chown(target, user.uid, user.gid)
