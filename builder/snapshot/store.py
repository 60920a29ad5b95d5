"""The snapshot store: one unpacked dir per layer or step, and scratch mounts over them.

Layout under the pybuild root::

    ROOT/snapshots/<key>/fs     a snapshot, usable as an overlay lower dir
    ROOT/tmp/<random>/          staging and scratch; nothing here is relied on

Every snapshot lands by one rename(2) of a fully written dir, so a reader
sees a snapshot whole or not at all, and a crash leaves at worst litter in
ROOT/tmp.  Before the rename the file system is synced (syncfs), so a power
loss cannot leave a landed snapshot with empty files; one syncfs per
snapshot costs far less than an fsync per file.  Two creators of the same key both succeed: the second rename
fails because the first took the name, and the loser throws its copy away.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from builder.errors import StoreError

# apply, mount and ctypes are imported where a snapshot is made or mounted:
# asking whether one exists (all a fully cached build does) needs none of them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

__all__ = ["ActiveSnapshot", "SnapshotStore"]

# Keys name directories: a diff_id's hex or a step id, never a path.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Overlay bookkeeping a committed upper may carry (origin, impure, nlink...).
# Only the opaque marker means anything to a lower layer.
_OVERLAY_XATTR_PREFIXES = (b"trusted.overlay.", b"user.overlay.")
_OPAQUE_XATTRS = frozenset({b"trusted.overlay.opaque", b"user.overlay.opaque"})


class ActiveSnapshot:
    """A mounted scratch root: ``rootfs`` is the merged view, ``upper`` collects changes.

    Handed out by SnapshotStore.prepare, which unmounts it and removes its
    scratch dir when the block ends.  Inside the block the caller runs the
    step in ``rootfs``, calls ``unmount()`` to stop writes, turns ``upper``
    into a layer (diff.write_layer) and may ``SnapshotStore.adopt`` it.
    """

    __slots__ = ("_mount", "lower_dirs", "rootfs", "scratch", "upper", "work")

    def __init__(
        self,
        *,
        scratch: Path,
        lower_dirs: tuple[Path, ...],
        stack: contextlib.ExitStack,
    ) -> None:
        self.scratch = scratch
        self.lower_dirs = lower_dirs
        self.upper = scratch / "upper"
        self.work = scratch / "work"
        self.rootfs = scratch / "rootfs"
        self._mount = stack

    def unmount(self) -> None:
        """Unmount ``rootfs`` now; idempotent.  ``upper`` is then safe to read or adopt."""
        self._mount.close()


class SnapshotStore:
    """Snapshots under ``root`` (the pybuild root dir), keyed by diff_id hex or step id."""

    __slots__ = ("_durable", "_snapshots", "_tmp", "root")

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        """``durable=False`` skips the syncfs before landing (tests, throwaway roots)."""
        self.root = root
        self._durable = durable
        self._snapshots = root / "snapshots"
        self._tmp = root / "tmp"

    def path(self, key: str) -> Path:
        """Where the snapshot for ``key`` lives (``ROOT/snapshots/<key>/fs``), present or not."""
        if not _KEY_PATTERN.fullmatch(key):
            raise StoreError(f"snapshot key {key!r} is not a plain name")
        return self._snapshots / key / "fs"

    def exists(self, key: str) -> bool:
        return self.path(key).is_dir()

    def _staging_dir(self) -> Path:
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._snapshots.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self._tmp))

    def _land(self, key: str, staging: Path) -> Path:
        """Rename ``staging`` (holding ``fs``) to the key's place; a lost race is fine."""
        final = self.path(key)
        try:
            if self._durable:
                _sync_file_system(staging)
            os.rename(staging, final.parent)
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                shutil.rmtree(staging, ignore_errors=True)
                raise StoreError(f"storing snapshot {key}: {err.strerror}") from err
            # Someone else landed the same key first; theirs is as good.
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def ensure_from_tar(
        self, key: str, open_tar: Callable[[], BinaryIO], *, userxattr: bool = False
    ) -> Path:
        """The snapshot for ``key``, extracting the tar ``open_tar`` opens if it is missing.

        ``open_tar`` is called only on a miss; the stream it returns is
        closed here.  The tar's digest is not checked here: the blob store
        verifies what it hands out.
        """
        final = self.path(key)
        if final.is_dir():
            return final
        staging = self._staging_dir()
        try:
            with open_tar() as stream:
                from builder.snapshot import apply

                apply.extract_layer(stream, staging / "fs", userxattr=userxattr)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._land(key, staging)

    def adopt(self, key: str, upper: Path) -> Path:
        """Make a committed upper dir the snapshot for ``key``, by rename (no copy).

        ``upper`` must be unmounted and on the store's file system (prepare
        puts it under ROOT/tmp).  Overlay's bookkeeping xattrs other than the
        opaque marker are dropped, so an adopted snapshot equals one
        extracted from the same layer.  If ``key`` exists already, ``upper``
        is deleted and the existing snapshot returned.
        """
        final = self.path(key)
        if final.is_dir():
            shutil.rmtree(upper, ignore_errors=True)
            return final
        _drop_overlay_bookkeeping(upper)
        staging = self._staging_dir()
        try:
            os.rename(upper, staging / "fs")
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise StoreError(f"adopting {upper} as snapshot {key}: {err.strerror}") from err
        return self._land(key, staging)

    def remove(self, key: str) -> None:
        """Delete the snapshot for ``key`` if present; the caller ensures no mount uses it.

        The dir is first renamed into ROOT/tmp, so a crash mid-delete never
        leaves a half snapshot under its key.
        """
        final = self.path(key)
        if not final.parent.exists():
            return
        doomed = self._staging_dir()
        try:
            os.rename(final.parent, doomed / "snapshot")
        except FileNotFoundError:
            pass
        except OSError as err:
            raise StoreError(f"removing snapshot {key}: {err.strerror}") from err
        finally:
            shutil.rmtree(doomed, ignore_errors=True)

    @contextlib.contextmanager
    def prepare(
        self,
        lower_keys: Sequence[str],
        *,
        keep_upper_on_error: bool = False,
        userxattr: bool = False,
    ) -> Iterator[ActiveSnapshot]:
        """Mount a fresh upper over the snapshots of ``lower_keys`` (top first) for the block.

        On exit, however it happens, the overlay is unmounted and the scratch
        dir removed.  With ``keep_upper_on_error`` an exception leaves
        ``upper`` in place for inspection (and says where in a note on the
        exception); its work dir and mount point still go.
        """
        from builder.snapshot import mount

        lower_dirs = tuple(self.path(key) for key in lower_keys)
        for key, lower in zip(lower_keys, lower_dirs):
            if not lower.is_dir():
                raise StoreError(f"preparing a snapshot: no snapshot {key} under {self.root}")
        scratch = self._staging_dir()
        failed = False
        with contextlib.ExitStack() as stack:
            active = ActiveSnapshot(scratch=scratch, lower_dirs=lower_dirs, stack=stack)
            try:
                for directory in (active.upper, active.work, active.rootfs):
                    directory.mkdir()
                stack.enter_context(
                    mount.overlay(
                        lower_dirs, active.upper, active.work, active.rootfs, userxattr=userxattr
                    )
                )
                yield active
            except BaseException as err:
                failed = True
                if keep_upper_on_error and active.upper.is_dir():
                    err.add_note(f"the step's upper dir is kept at {active.upper}")
                raise
            finally:
                stack.close()
                if failed and keep_upper_on_error:
                    shutil.rmtree(active.work, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        active.rootfs.rmdir()
                else:
                    shutil.rmtree(scratch, ignore_errors=True)




def _sync_file_system(path: Path) -> None:
    """Flush the file system holding ``path``: one call for a whole extracted tree."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc().syncfs(fd) != 0:
            import ctypes

            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)


def _drop_overlay_bookkeeping(upper: Path) -> None:
    root = os.fsencode(upper)
    try:
        _drop_overlay_xattrs(root)
        for directory, subdirs, files in os.walk(root):
            for name in (*subdirs, *files):
                _drop_overlay_xattrs(os.path.join(directory, name))
    except OSError as err:
        raise StoreError(f"adopting {upper}: {err}") from err


def _drop_overlay_xattrs(path: bytes) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as err:
        if err.errno == errno.ENOTSUP:
            return
        raise
    for xattr in names:
        raw = os.fsencode(xattr)
        if raw.startswith(_OVERLAY_XATTR_PREFIXES) and raw not in _OPAQUE_XATTRS:
            os.removexattr(path, raw, follow_symlinks=False)


@functools.cache
def _libc() -> ctypes.CDLL:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.syncfs.argtypes = (ctypes.c_int,)
    libc.syncfs.restype = ctypes.c_int
    return libc
