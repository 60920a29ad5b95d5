"""An OCI layer tar → a snapshot dir that overlay can use as one lower layer.

Each layer gets its own dir (as containerd's overlay snapshotter keeps them),
so a deletion cannot be carried out here: it is recorded the way overlay
records one in an upper dir, as a char device 0/0 for ``.wh.name`` and as
the opaque xattr for ``.wh..wh..opq``, and the overlay stack applies it.

Nothing in the tar may reach outside ``dest``: every parent is opened one
component at a time relative to its parent's fd with O_NOFOLLOW, so a
symlink that an earlier entry made (or any ``..``) cannot redirect a write.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from builder.errors import StoreError
from builder.snapshot import tarstream

__all__ = ["extract_layer"]

_WHITEOUT_PREFIX = b".wh."
_OPAQUE_MARKER = b".wh..wh..opq"
# Other ".wh..wh." names are AUFS bookkeeping (".wh..wh.plnk"); Docker skips them.
_AUFS_META_PREFIX = b".wh..wh."
_COPY_CHUNK = 1 << 20

# Overlay's markers come only from .wh. entries, never from a layer's own
# xattrs: a layer could otherwise plant redirects or opaque flags.
_REFUSED_XATTR_PREFIXES = (b"trusted.overlay.", b"user.overlay.")
_SKIPPED_XATTRS = frozenset({b"security.selinux"})

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def extract_layer(tar: BinaryIO, dest: Path, *, userxattr: bool = False) -> int:
    """Unpack a layer tar (plain, gzip or zstd) into ``dest``; return the entry count.

    ``dest`` is created if missing and should be empty: it becomes a snapshot
    dir holding only this layer.  Whiteouts become char devices 0/0, opaque
    markers become ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` with
    ``userxattr``).  Modes (setuid, setgid, sticky included), numeric
    owners, mtimes, xattrs, hard links, symlinks, devices and fifos are
    restored.  A later entry replaces an earlier one of the same name; a
    whiteout never removes an entry of its own layer.

    Absolute names, ``..`` components, a parent that is a symlink or not a
    directory, and hard links whose target is missing or outside raise
    StoreError naming the member, as do corrupt or truncated tars.  The
    caller closes ``tar``.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(dest, _DIR_FLAGS)
    except OSError as err:
        raise StoreError(f"extracting layer into {dest}: {err.strerror}") from err
    extractor = _Extractor(
        root_fd=root_fd,
        opaque_xattr=b"user.overlay.opaque" if userxattr else b"trusted.overlay.opaque",
    )
    count = 0
    name = "(first header)"
    try:
        with tarstream.open_layer(tar) as archive:
            for member in tarstream.members(archive):
                name = member.name
                extractor.apply(member, archive)
                count += 1
                name = f"(header after {member.name})"
        extractor.finish()
    except StoreError:
        raise
    except Exception as err:
        if not tarstream.is_bad_input(err):
            raise
        raise StoreError(f"extracting layer into {dest}: member {name}: {err}") from err
    finally:
        extractor.close()
    return count


def _member_parts(member: tarfile.TarInfo) -> tuple[bytes, ...]:
    raw = os.fsencode(member.name)
    if raw.startswith(b"/"):
        raise StoreError(f"extracting layer: member {member.name}: absolute path refused")
    parts = tuple(part for part in raw.split(b"/") if part not in (b"", b"."))
    if b".." in parts:
        raise StoreError(f"extracting layer: member {member.name}: '..' component refused")
    return parts


@dataclass(slots=True)
class _Extractor:
    """State of one extraction: the root fd, a cached parent fd, deferred dir mtimes."""

    root_fd: int
    opaque_xattr: bytes
    cached_parent: tuple[tuple[bytes, ...], int] | None = None
    dir_mtimes: dict[tuple[bytes, ...], int] = field(default_factory=dict)

    def close(self) -> None:
        self._forget_parent()
        os.close(self.root_fd)

    def _forget_parent(self) -> None:
        if self.cached_parent is not None:
            os.close(self.cached_parent[1])
            self.cached_parent = None

    def _open_dir(self, parts: tuple[bytes, ...], member: str, *, create: bool) -> int:
        """A new fd for the dir at ``parts`` under the root, never following a symlink."""
        fd = os.dup(self.root_fd)
        try:
            for index, part in enumerate(parts):
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise StoreError(
                            f"extracting layer: member {member}: "
                            f"{os.fsdecode(b'/'.join(parts[: index + 1]))} does not exist"
                        ) from None
                    os.mkdir(part, 0o700, dir_fd=fd)
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    os.chmod(next_fd, 0o755)
                except OSError as err:
                    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise StoreError(
                        f"extracting layer: member {member}: "
                        f"{os.fsdecode(b'/'.join(parts[: index + 1]))} is a symlink or "
                        "not a directory; refusing to write through it"
                    ) from err
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, parts: tuple[bytes, ...], member: str) -> int:
        """The (cached) parent dir fd of ``parts``; owned by the extractor."""
        parent = parts[:-1]
        if self.cached_parent is not None and self.cached_parent[0] == parent:
            return self.cached_parent[1]
        fd = self._open_dir(parent, member, create=True)
        self._forget_parent()
        self.cached_parent = (parent, fd)
        return fd

    def _remove(self, parent_fd: int, name: bytes, *, keep_dir: bool) -> bool:
        """Remove ``name`` unless absent (or a dir kept); True if a dir is still there."""
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(info.st_mode):
            if keep_dir:
                return True
            # The cached parent fd is this entry's parent, never inside the
            # removed tree, so the cache stays valid.
            shutil.rmtree(name, dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)
        return False

    def apply(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        parts = _member_parts(member)
        if not parts:
            if not member.isdir():
                raise StoreError(f"extracting layer: member {member.name}: the root must be a dir")
            self._set_dir_metadata(self.root_fd, (), member)
            return
        base = parts[-1]
        if base.startswith(_WHITEOUT_PREFIX):
            self._apply_whiteout(parts, member)
            return
        parent_fd = self._parent(parts, member.name)
        if member.isdir():
            if not self._remove(parent_fd, base, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=parent_fd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                self._set_dir_metadata(fd, parts, member)
            finally:
                os.close(fd)
            return
        self._remove(parent_fd, base, keep_dir=False)
        if member.isreg():
            self._write_file(parent_fd, base, member, archive)
        elif member.issym():
            os.symlink(os.fsencode(member.linkname), base, dir_fd=parent_fd)
            self._set_path_metadata(parent_fd, base, member, chmod=False)
        elif member.islnk():
            self._link(parent_fd, base, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            if member.isfifo():
                os.mkfifo(base, 0o600, dir_fd=parent_fd)
            else:
                device = os.makedev(member.devmajor, member.devminor)
                os.mknod(base, kind | 0o600, device, dir_fd=parent_fd)
            self._set_path_metadata(parent_fd, base, member, chmod=True)
        else:
            raise StoreError(
                f"extracting layer: member {member.name}: unsupported entry type {member.type!r}"
            )

    def _apply_whiteout(self, parts: tuple[bytes, ...], member: tarfile.TarInfo) -> None:
        base = parts[-1]
        if base == _OPAQUE_MARKER:
            parent_fd = self._parent(parts, member.name)
            os.setxattr(parent_fd, self.opaque_xattr, b"y")
            return
        if base.startswith(_AUFS_META_PREFIX):
            return
        hidden = base[len(_WHITEOUT_PREFIX) :]
        if hidden in (b"", b".", b".."):
            raise StoreError(f"extracting layer: member {member.name}: bad whiteout name")
        parent_fd = self._parent(parts, member.name)
        try:
            os.stat(hidden, dir_fd=parent_fd, follow_symlinks=False)
            # An entry of this very layer: a whiteout hides only lower layers.
            return
        except FileNotFoundError:
            pass
        os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)

    def _write_file(
        self, parent_fd: int, base: bytes, member: tarfile.TarInfo, archive: tarfile.TarFile
    ) -> None:
        fd = os.open(
            base,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=parent_fd,
        )
        try:
            source = archive.extractfile(member)
            if source is not None:
                with source:
                    while chunk := source.read(_COPY_CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
            # Owner before mode (chown clears setuid), and xattrs last since a
            # write or chown would drop security.capability.
            os.chown(fd, member.uid, member.gid)
            os.chmod(fd, member.mode & 0o7777)
            self._set_xattrs(fd, member)
            os.utime(fd, ns=(_mtime_ns(member), _mtime_ns(member)))
        finally:
            os.close(fd)

    def _link(self, parent_fd: int, base: bytes, member: tarfile.TarInfo) -> None:
        target_raw = os.fsencode(member.linkname)
        target_parts = tuple(part for part in target_raw.split(b"/") if part not in (b"", b"."))
        if target_raw.startswith(b"/") or b".." in target_parts or not target_parts:
            raise StoreError(
                f"extracting layer: member {member.name}: "
                f"hard link target {member.linkname} is outside the layer"
            )
        target_parent = self._open_dir(target_parts[:-1], member.name, create=False)
        try:
            os.link(
                target_parts[-1],
                base,
                src_dir_fd=target_parent,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
        except FileNotFoundError as err:
            raise StoreError(
                f"extracting layer: member {member.name}: "
                f"hard link target {member.linkname} is not in the layer"
            ) from err
        finally:
            os.close(target_parent)

    def _set_dir_metadata(self, fd: int, parts: tuple[bytes, ...], member: tarfile.TarInfo) -> None:
        os.chown(fd, member.uid, member.gid)
        os.chmod(fd, member.mode & 0o7777)
        self._set_xattrs(fd, member)
        # Entries created inside later would bump the mtime: set it at the end.
        self.dir_mtimes[parts] = _mtime_ns(member)

    def _set_path_metadata(
        self, parent_fd: int, base: bytes, member: tarfile.TarInfo, *, chmod: bool
    ) -> None:
        """Metadata for entries that must not be opened (symlinks, devices, fifos)."""
        os.chown(base, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        if chmod:
            # Just created by mknod/mkfifo, so following is safe here.
            os.chmod(base, member.mode & 0o7777, dir_fd=parent_fd)
        # The xattr calls take no dir fd; name the verified parent by its fd.
        self._set_xattrs(f"/proc/self/fd/{parent_fd}/{os.fsdecode(base)}", member)
        mtime = _mtime_ns(member)
        os.utime(base, ns=(mtime, mtime), dir_fd=parent_fd, follow_symlinks=False)

    def _set_xattrs(self, target: int | str, member: tarfile.TarInfo) -> None:
        for key, value in sorted(member.pax_headers.items()):
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr.") :].encode("utf-8", "surrogateescape")
            if name in _SKIPPED_XATTRS or name.startswith(_REFUSED_XATTR_PREFIXES):
                continue
            raw = value.encode("utf-8", "surrogateescape")
            if isinstance(target, int):
                os.setxattr(target, name, raw)
            else:
                os.setxattr(target, name, raw, follow_symlinks=False)

    def finish(self) -> None:
        """Set the directory mtimes deferred while their contents were written."""
        self._forget_parent()
        for parts, mtime in self.dir_mtimes.items():
            try:
                fd = self._open_dir(parts, "(directory times)", create=False)
            except StoreError:
                continue  # replaced by a later entry
            try:
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)


def _mtime_ns(member: tarfile.TarInfo) -> int:
    mtime = member.mtime
    if isinstance(mtime, int):
        return mtime * 1_000_000_000
    return round(mtime * 1_000_000_000)
