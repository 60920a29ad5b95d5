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

from builder.errors import BuildError, StepFailed
from builder.frontend import commands
from builder.plan.graph import ContextSource, ImageSource, LayerRef, StageSource, Step
from builder.solver import StageState
from cache.blobs import BlobStore

# What only a step that runs needs (sandbox, copy, layer writing) is imported
# when a step runs: a fully cached build must not pay for it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.context import BuildContext, SourceView
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
    ) -> None:
        self._blobs = blobs
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

        instruction = step.instruction
        if not isinstance(step.source, ContextSource) or self._context is None:
            return None
        assert isinstance(instruction, commands.Copy | commands.Add)
        with self._context_lock:
            view = self._context.view()
            stats = view.stats or {}
            wanted: set[str] = set()
            for source in instruction.sources:
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
        instruction = step.instruction
        assert isinstance(instruction, commands.Copy | commands.Add)
        if isinstance(step.source, StageSource):
            return "stage:" + sources[step.source.stage].key
        if isinstance(step.source, ImageSource):
            return "image:" + step.source.image.manifest_digest
        if not instruction.sources:
            return ""
        context = self._require_context(step)
        overridden = bool(instruction.chmod)
        with self._context_lock:
            return "context:" + context.checksum_sources(
                list(instruction.sources), mode_overridden=overridden
            )

    def execute(
        self, step: Step, parent: StageState, sources: Mapping[int, StageState]
    ) -> LayerRef | None:
        from builder.ops import run as run_op

        lower = self._lower_keys(parent.layers)
        with self._snapshots.prepare(lower, keep_upper_on_error=step.kind == "run") as active:
            rootfs = active.rootfs
            if step.kind == "run":
                run_op.run_step(
                    step, rootfs, lambda data: self._log(step, data), cancel=self.cancelled
                )
            elif step.kind == "copy":
                with self._source_view(step, sources) as view:
                    self._copy(step, rootfs, view)
            elif step.kind == "mkdir":
                self._mkdir(step, rootfs)
            active.unmount()
            return self._commit(active.upper)

    # -- pieces ---------------------------------------------------------------------

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
            stats = write_layer(
                upper, cast(BinaryIO, writer), source_date_epoch=self._epoch
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
            if not instruction.sources:
                yield None
                return
            with self._context_lock:
                view = self._require_context(step).view()
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
        from builder.ops.copy import CopyRequest, InlineFile, copy_into
        from builder.sandbox.users import resolve_user

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
            user = resolve_user(rootfs, spec)
            return user.uid, user.gid

        source = view if view is not None else SourceView(rootfs)
        try:
            copy_into(rootfs, source, request, resolve_owner=resolve_owner)
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
