"""RUN --mount at run time: what each planned mount becomes in the sandbox, and its key part.

- bind: a stage's or an image's root through a throw-away overlay (so ``rw``
  writes vanish with it), or a copy of the build context as .dockerignore
  lets it through (owned 0:0, as BuildKit's context arrives).  ``source`` is
  resolved inside that root, symlinks included, never on the host.
- cache: ROOT/cachemounts (cache/mounts.py), locked for the step: shared
  users together, ``locked`` users one at a time, a ``private`` user alone or
  else on a fresh throw-away directory.  A new cache is seeded from its
  ``from`` (the ``source`` inside it), or shaped by mode/uid/gid.  Its
  contents never enter a layer (a mount, not the root) nor a key.
- tmpfs: the sandbox's own tmpfs.
- secret: the value, read now from the --secret source, as a read-only file
  in the step's memory (sandbox ContentMount) and/or an env variable; the
  step's output has it masked.
- ssh: a relay socket to the --ssh agent (ops/sshagent.py); SSH_AUTH_SOCK
  names the first ssh mount, as BuildKit sets it.

Keys: a bind adds what it reads (stage key, image digest, context digest of
its source); a cache ``from`` adds its stage key or image digest, never the
cache's contents; secrets and agents add nothing but their spec.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError, MountUnavailable
from builder.plan.graph import (
    ContextSource,
    ImageSource,
    LayerRef,
    NamedContextSource,
    PlannedMount,
    StageSource,
    Step,
)
from builder.plan.mounts import RunMount
from builder.sandbox.spec import BindMount, ContentMount, Mount, TmpfsMount
from builder.secrets import SecretSource, SshSource, read_secret
from builder.solver import StageState
from cache.mounts import CacheMounts, LockMode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.context import BuildContext, SourceView

__all__ = ["MountPreparer", "PreparedMounts"]

ContextFor = Callable[[ContextSource | NamedContextSource, Step], "BuildContext"]
OpenLayers = Callable[[tuple[LayerRef, ...]], AbstractContextManager[Path]]


@dataclass(frozen=True, slots=True)
class PreparedMounts:
    """What a RUN's mounts add to its sandbox: mounts, env variables, values to mask."""

    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    masked: tuple[bytes, ...] = ()


class MountPreparer:
    """Prepares RUN --mount for one build (one pybuild root, one context, its secrets)."""

    def __init__(
        self,
        *,
        root: Path,
        context_for: ContextFor,
        context_lock: threading.Lock,
        open_layers: OpenLayers,
        secrets: tuple[SecretSource, ...] = (),
        ssh: tuple[SshSource, ...] = (),
        cancelled: threading.Event | None = None,
    ) -> None:
        self._staging = root / "tmp"
        self._caches = CacheMounts(root)
        self._context_for = context_for
        self._context_lock = context_lock
        self._open_layers = open_layers
        # The last --secret/--ssh of an id wins, as buildx's do.
        self._secrets = {source.id: source for source in secrets}
        self._ssh = {source.id: source for source in ssh}
        self._cancelled = cancelled

    # -- keys -------------------------------------------------------------------------

    def digest(self, step: Step, sources: Mapping[int, StageState]) -> str:
        """What the step's mounts read, for its cache key (one part per mount)."""
        parts: list[str] = []
        for planned in step.mounts:
            source = planned.source
            if isinstance(source, StageSource):
                parts.append("stage:" + sources[source.stage].key)
            elif isinstance(source, ImageSource):
                parts.append("image:" + source.image.manifest_digest)
            elif source is not None and planned.spec.type == "bind":
                parts.append("context:" + self._context_digest(planned, source, step))
            else:
                parts.append("")
        return "\0".join(parts)

    def _context_digest(
        self, planned: PlannedMount, source: ContextSource | NamedContextSource, step: Step
    ) -> str:
        context = self._context_for(source, step)
        wanted = planned.spec.source.lstrip("/") or "."
        with self._context_lock:
            try:
                return context.checksum_sources([wanted])
            except BuildError as err:
                raise _unavailable(step, planned.spec, f"{err}") from err

    # -- running ----------------------------------------------------------------------

    @contextlib.contextmanager
    def prepare(
        self, step: Step, sources: Mapping[int, StageState], run_env: Mapping[str, str]
    ) -> Iterator[PreparedMounts]:
        """Everything the step's mounts need, held for the block, released after."""
        with contextlib.ExitStack() as stack:
            caches = self._lock_caches(stack, step, sources)
            mounts: list[Mount] = []
            env: list[tuple[str, str]] = []
            masked: list[bytes] = []
            ssh_targets: list[str] = []
            for index, planned in enumerate(step.mounts):
                spec = planned.spec
                if spec.type == "bind":
                    host, inside = self._bind_source(stack, planned, step, sources)
                    mounts.append(BindMount(host, _target(spec), readonly=spec.readonly,
                                            subpath=inside))
                elif spec.type == "cache":
                    data, inside = caches[index]
                    mounts.append(BindMount(data, _target(spec), readonly=spec.readonly,
                                            subpath=inside))
                elif spec.type == "tmpfs":
                    mounts.append(TmpfsMount(_target(spec), spec.size, readonly=spec.readonly))
                elif spec.type == "secret":
                    self._secret(step, spec, mounts, env, masked)
                else:
                    ssh_targets.append(_target(spec))
                    self._agent(stack, step, spec, mounts)
            if ssh_targets and "SSH_AUTH_SOCK" not in run_env:
                env.append(("SSH_AUTH_SOCK", ssh_targets[0]))
            yield PreparedMounts(tuple(mounts), tuple(env), tuple(masked))

    # -- bind -------------------------------------------------------------------------

    def _bind_source(
        self,
        stack: contextlib.ExitStack,
        planned: PlannedMount,
        step: Step,
        sources: Mapping[int, StageState],
    ) -> tuple[Path, str]:
        """The host directory to bind from and the path inside it (the sandbox resolves
        that path within the directory when it mounts)."""
        spec, source = planned.spec, planned.source
        if isinstance(source, ContextSource | NamedContextSource):
            return self._context_copy(stack, planned, source, step), ""
        root = stack.enter_context(self._open_layers(_layers(source, sources)))
        _inside(root, spec.source, step, spec)  # a missing source is named here
        return root, spec.source

    def _context_copy(
        self,
        stack: contextlib.ExitStack,
        planned: PlannedMount,
        source: ContextSource | NamedContextSource,
        step: Step,
    ) -> Path:
        """The context's ``source`` as the build sees it, copied: ignored files are absent
        and the step can neither see the host's owners nor change the context."""
        from builder.context import resolve_in_root

        context = self._context_for(source, step)
        with self._context_lock:
            view = context.view()
        rel = resolve_in_root(planned.spec.source, view.lstat, view.readlink)
        info = view.lstat(rel)
        if info is None:
            raise _unavailable(step, planned.spec, f'"/{rel}": not found in the build context')
        directory = self._scratch(stack, "bind-")
        copy = directory / "source"
        _copy_from_view(view, rel, info, copy, owner=(0, 0))
        return copy

    # -- cache ------------------------------------------------------------------------

    def _lock_caches(
        self, stack: contextlib.ExitStack, step: Step, sources: Mapping[int, StageState]
    ) -> dict[int, tuple[Path, str]]:
        """Each cache mount's host directory (and path inside it), locked for the step.

        Locks are taken in id order (two steps never wait for each other in a
        circle), and an id mounted twice by one step is locked once.
        """
        wanted = sorted(
            ((planned.spec.id, index) for index, planned in enumerate(step.mounts)
             if planned.spec.type == "cache"),
        )
        held: dict[str, Path] = {}
        found: dict[int, tuple[Path, str]] = {}
        for mount_id, index in wanted:
            planned = step.mounts[index]
            if mount_id not in held:
                held[mount_id] = self._cache_data(stack, planned, step, sources)
            found[index] = (held[mount_id], self._cache_subdir(held[mount_id], planned))
        return found

    def _cache_data(
        self,
        stack: contextlib.ExitStack,
        planned: PlannedMount,
        step: Step,
        sources: Mapping[int, StageState],
    ) -> Path:
        spec = planned.spec
        modes: dict[str, LockMode] = {"shared": "shared", "locked": "exclusive",
                                      "private": "try-exclusive"}

        def initialize(data: Path) -> None:
            self._initialize_cache(data, planned, step, sources)

        data = stack.enter_context(self._caches.use(
            spec.id, modes[spec.sharing], initialize=initialize, cancelled=self._is_cancelled))
        if data is None:
            # sharing=private and another step has it: a fresh one of our own, thrown away.
            data = self._scratch(stack, "cache-") / "data"
            data.mkdir()
            initialize(data)
        return data

    def _initialize_cache(
        self, data: Path, planned: PlannedMount, step: Step, sources: Mapping[int, StageState]
    ) -> None:
        """A new cache: a copy of ``from``'s source, else an empty dir shaped by mode/uid/gid.

        As in BuildKit, mode/uid/gid without a source make a new empty root
        (even with ``from``); a source inside an empty cache is made below.
        """
        spec = planned.spec
        shaped = spec.mode is not None or spec.uid is not None or spec.gid is not None
        if planned.source is not None and (spec.source or not shaped):
            self._seed(data, planned, step, sources)
            return
        os.chown(data, spec.uid or 0, spec.gid or 0)
        os.chmod(data, 0o755 if spec.mode is None else spec.mode & 0o7777)

    def _seed(
        self, data: Path, planned: PlannedMount, step: Step, sources: Mapping[int, StageState]
    ) -> None:
        spec, source = planned.spec, planned.source
        if isinstance(source, ContextSource | NamedContextSource):
            from builder.context import resolve_in_root

            context = self._context_for(source, step)
            with self._context_lock:
                view = context.view()
            rel = resolve_in_root(spec.source, view.lstat, view.readlink)
            info = view.lstat(rel)
            if info is None or not stat.S_ISDIR(info.st_mode):
                raise _unavailable(step, spec, f'"/{rel}": no such directory in the build '
                                   "context")
            _copy_from_view(view, rel, info, data, owner=(0, 0), replace_root=True)
            return
        assert isinstance(source, StageSource | ImageSource)
        with self._open_layers(_layers(source, sources)) as root:
            origin = _inside(root, spec.source, step, spec)
            if not origin.is_dir():
                raise _unavailable(step, spec, f"{spec.source} in {spec.from_name} is not a "
                                   "directory")
            _copy_tree(origin, data, replace_root=True)

    def _cache_subdir(self, data: Path, planned: PlannedMount) -> str:
        """``source`` inside a cache without ``from``: a directory of the cache, made if
        missing; with ``from``, the seed already was that source.  Steps sharing the
        cache may change it meanwhile, so the sandbox resolves it again when mounting."""
        spec = planned.spec
        if planned.source is not None or not spec.source.strip("/"):
            return ""
        from builder.sandbox import paths

        relative = paths.resolve(str(data), spec.source)
        fd = paths.open_directory(str(data), relative, create=True)
        os.close(fd)
        return relative

    # -- secrets and agents -----------------------------------------------------------

    def _secret(self, step: Step, spec: RunMount, mounts: list[Mount],
                env: list[tuple[str, str]], masked: list[bytes]) -> None:
        source = self._secrets.get(spec.id)
        value = None if source is None else read_secret(source)
        if value is None:
            if spec.required:
                raise _unavailable(step, spec, f"secret {spec.id} not found: pass it with "
                                   f"--secret id={spec.id},src=FILE (or env=VAR)")
            return
        if spec.target is not None:
            mounts.append(ContentMount(spec.target, value,
                                       0o400 if spec.mode is None else spec.mode & 0o7777,
                                       spec.uid or 0, spec.gid or 0))
        if spec.env:
            env.append((spec.env, os.fsdecode(value)))
        if value:
            masked.append(value)
            stripped = value.strip()
            if stripped and stripped != value:
                masked.append(stripped)

    def _agent(self, stack: contextlib.ExitStack, step: Step, spec: RunMount,
               mounts: list[Mount]) -> None:
        from builder.ops.sshagent import agent_relay

        source = self._ssh.get(spec.id)
        if source is None:
            if spec.required:
                raise _unavailable(step, spec, f"no SSH agent for id {spec.id}: pass "
                                   f"--ssh {spec.id}[=SOCKET]")
            return
        relay = stack.enter_context(agent_relay(
            source.socket, self._staging, mode=0o600 if spec.mode is None else spec.mode & 0o7777,
            uid=spec.uid or 0, gid=spec.gid or 0))
        mounts.append(BindMount(relay, _target(spec), readonly=True))

    # -- pieces -----------------------------------------------------------------------

    def _scratch(self, stack: contextlib.ExitStack, prefix: str) -> Path:
        self._staging.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=prefix, dir=self._staging))
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        return directory

    def _is_cancelled(self) -> bool:
        return self._cancelled is not None and self._cancelled.is_set()


def _target(spec: RunMount) -> str:
    assert spec.target is not None
    return spec.target


def _layers(
    source: StageSource | ImageSource | None, sources: Mapping[int, StageState]
) -> tuple[LayerRef, ...]:
    if isinstance(source, StageSource):
        return sources[source.stage].layers
    assert isinstance(source, ImageSource)
    return source.image.layers


def _unavailable(step: Step, spec: RunMount, reason: str) -> MountUnavailable:
    what = f"--mount=type={spec.type}" + (f",target={spec.target}" if spec.target else "")
    return MountUnavailable(f"{what}: {reason}", location=step.location)


def _inside(root: Path, source: str, step: Step, spec: RunMount) -> Path:
    """``source`` in ``root`` with every symlink resolved inside root; it must exist."""
    from builder.sandbox import paths

    relative = paths.resolve(str(root), source or "/")
    host = root / relative if relative else root
    if not os.path.lexists(host):
        where = spec.from_name or "the build context"
        raise _unavailable(step, spec, f'"/{relative}": not found in {where}')
    return host


# -- copying trees (a context's visible files, a stage's directory) --------------------


def _copy_from_view(view: SourceView, rel: str, info: os.stat_result, dest: Path, *,
                    owner: tuple[int, int], replace_root: bool = False) -> None:
    """Copy what ``view`` shows at ``rel`` to ``dest``, owned by ``owner``."""
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        if not replace_root:
            dest.mkdir()
        for name in view.listdir(rel):
            child = f"{rel}/{name}" if rel else name
            child_info = view.lstat(child)
            if child_info is not None:
                _copy_from_view(view, child, child_info, dest / name, owner=owner)
    elif stat.S_ISLNK(mode):
        os.symlink(view.readlink(rel), dest)
    elif stat.S_ISREG(mode):
        shutil.copyfile(view.host_path(rel), dest, follow_symlinks=False)
    elif stat.S_ISSOCK(mode) and view.sockets_as_files:
        dest.touch()
    else:
        return  # fifos and devices do not travel in a context
    os.chown(dest, *owner, follow_symlinks=False)
    if not stat.S_ISLNK(mode):
        os.chmod(dest, stat.S_IMODE(mode))
    os.utime(dest, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _copy_tree(source: Path, dest: Path, *, replace_root: bool = False) -> None:
    """Copy a directory of a stage's root as it is: types, modes, owners, times."""
    info = os.lstat(source)
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        if not replace_root:
            dest.mkdir()
        with os.scandir(source) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            _copy_tree(source / name, dest / name)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(source), dest)
    elif stat.S_ISREG(mode):
        shutil.copyfile(source, dest, follow_symlinks=False)
    elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        os.mknod(dest, mode, info.st_rdev)
    else:
        return  # a socket is nothing without its server
    os.chown(dest, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(mode):
        os.chmod(dest, stat.S_IMODE(mode))
    os.utime(dest, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
