"""An overlay upper dir → one deterministic OCI layer tar stream.

The upper dir of an overlay mounted with index=off, redirect_dir=off and
metacopy=off (see mount.py) is already the diff: every entry in it is new or
changed, a char device 0/0 is a deletion, and an opaque directory replaced
whatever the lower layers had there.  This module only translates that into
the OCI layer format (umoci's oci/layer/generate.go does the same for Go).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from builder.errors import StoreError
from builder.snapshot import tarformat
from builder.snapshot.tarformat import TarHeader

__all__ = ["OPAQUE_MARKER", "WHITEOUT_PREFIX", "LayerStats", "write_layer"]

WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"

# Host bookkeeping that must not travel in a layer: overlay's own markers
# (translated into .wh. entries instead) and the SELinux label of the build
# host, which the runtime assigns anew.
_SKIPPED_XATTR_PREFIXES = (b"trusted.overlay.", b"user.overlay.")
_SKIPPED_XATTRS = frozenset({b"security.selinux"})

_TAR_TYPES = frozenset(
    {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO}
)
_COPY_CHUNK = 1 << 20
_FLUSH_AT = 1 << 20


@dataclass(frozen=True, slots=True)
class LayerStats:
    """What write_layer wrote: entries (PAX headers not counted), tar bytes, digest.

    ``diff_id`` is ``sha256:<hex>`` of the uncompressed stream, which is what
    an OCI image config lists in rootfs.diff_ids (None when the caller's ``out``
    hashes the stream itself; see write_layer).  ``is_empty`` means the
    upper dir held no change; the caller then adds no layer.
    """

    entries: int
    bytes: int
    is_empty: bool
    diff_id: str | None


@dataclass(slots=True)
class _WalkState:
    """What one write_layer call carries from entry to entry."""

    opaque_xattr: bytes
    source_date_epoch: int | None
    first_link_of: dict[tuple[int, int], bytes] = field(default_factory=dict)


class _Sink:
    """Buffers small writes, counts and hashes everything that goes to ``out``."""

    __slots__ = ("_buffer", "_hash", "_out", "chunk", "written")

    def __init__(self, out: BinaryIO, *, digest: bool) -> None:
        self._out = out
        self._buffer = bytearray()
        self._hash = hashlib.sha256() if digest else None
        self.written = 0
        # One read buffer for every file: allocating (and zeroing) a fresh
        # megabyte per file cost more than the copying itself.
        self.chunk = memoryview(bytearray(_COPY_CHUNK))

    def write(self, data: bytes | memoryview) -> None:
        if len(data) >= _FLUSH_AT:
            # Big chunks skip the buffer rather than being copied into it.
            self.flush()
            if self._hash is not None:
                self._hash.update(data)
            self._out.write(data)
            self.written += len(data)
            return
        self._buffer += data
        if len(self._buffer) >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            if self._hash is not None:
                self._hash.update(self._buffer)
            self._out.write(self._buffer)
            self.written += len(self._buffer)
            self._buffer = bytearray()

    def diff_id(self) -> str | None:
        return None if self._hash is None else "sha256:" + self._hash.hexdigest()


def write_layer(
    upper: Path,
    out: BinaryIO,
    *,
    source_date_epoch: int | None = None,
    userxattr: bool = False,
    digest: bool = True,
) -> LayerStats:
    """Write ``upper`` as an uncompressed OCI layer tar to ``out``; the caller closes ``out``.

    Deterministic: entries in depth-first order with each directory's
    children sorted by name bytes (so parents come before children), numeric
    ids with empty uname/gname, mtimes truncated to whole seconds and, with
    ``source_date_epoch``, clamped to it; no atime or ctime; PAX headers only
    for what ustar cannot hold.  The same tree always gives the same bytes.

    Whiteouts and opaque markers carry mode 0, ids 0 and mtime 0: they record
    only that something is gone, and fixed values keep two builds that delete
    the same file byte-identical.  File contents are streamed, never read
    whole.  The upper dir must not be changing (unmount first).

    ``userxattr`` says the overlay was mounted with userxattr, so opaque
    directories carry user.overlay.opaque rather than trusted.overlay.opaque.
    Overlay's own xattrs of either namespace never go into the layer.

    ``digest=False`` leaves the diff_id out, for an ``out`` that hashes what it
    is given anyway (a blob writer): hashing every layer twice cost a
    CPU-second per GB of layer.
    """
    sink = _Sink(out, digest=digest)
    entries = 0
    walk = _WalkState(
        opaque_xattr=b"user.overlay.opaque" if userxattr else b"trusted.overlay.opaque",
        source_date_epoch=source_date_epoch,
    )
    root = os.fsencode(upper)
    try:
        for relative, info in _walk(root):
            entries += _write_entry(sink, root, relative, info, walk)
    except OSError as err:
        raise StoreError(f"writing layer from {upper}: {err}") from err
    sink.write(tarformat.END_OF_ARCHIVE)
    sink.flush()
    return LayerStats(
        entries=entries,
        bytes=sink.written,
        is_empty=entries == 0,
        diff_id=sink.diff_id(),
    )


def _walk(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """(relative path, lstat) depth first, children sorted, the root itself left out.

    An explicit stack rather than recursion: a deep tree must not hit
    Python's recursion limit.
    """
    stack: list[Iterator[tuple[bytes, os.stat_result]]] = [_children(root, b"")]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        relative, info = entry
        yield entry
        if stat.S_ISDIR(info.st_mode):
            stack.append(_children(root, relative))


def _children(root: bytes, relative: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    directory = os.path.join(root, relative) if relative else root
    with os.scandir(directory) as listing:
        found = [(entry.name, entry.stat(follow_symlinks=False)) for entry in listing]
    found.sort(key=_tar_name_order)
    for name, info in found:
        yield (relative + b"/" + name if relative else name), info


def _tar_name_order(item: tuple[bytes, os.stat_result]) -> bytes:
    # Siblings are ordered by the name they get in the tar, so a whiteout for
    # "b" sorts as ".wh.b", among the other dot names.
    name, info = item
    return WHITEOUT_PREFIX + name if _is_whiteout(info) else name


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _write_entry(
    sink: _Sink,
    root: bytes,
    relative: bytes,
    info: os.stat_result,
    walk: _WalkState,
) -> int:
    """Write one upper dir entry; returns how many tar entries that took."""
    path = os.path.join(root, relative)
    mode = info.st_mode
    if _is_whiteout(info):
        # Checked before hard links: overlay links every whiteout it makes
        # to one shared inode in its work dir.
        parent, _, name = relative.rpartition(b"/")
        marker = (parent + b"/" if parent else b"") + WHITEOUT_PREFIX + name
        sink.write(tarformat.encode_header(_marker_header(marker)))
        return 1
    if stat.S_IFMT(mode) not in _TAR_TYPES:
        # Sockets (and anything stranger) have no tar form; Docker and
        # BuildKit leave them out of layers too.
        return 0
    mtime = info.st_mtime_ns // 1_000_000_000
    if walk.source_date_epoch is not None:
        mtime = min(mtime, walk.source_date_epoch)
    header = TarHeader(
        name=relative,
        type_flag=tarformat.TYPE_REGULAR,
        mode=stat.S_IMODE(mode),
        uid=info.st_uid,
        gid=info.st_gid,
        mtime=mtime,
        xattrs=_xattrs(path),
    )
    if stat.S_ISDIR(mode):
        header = replace(header, name=relative + b"/", type_flag=tarformat.TYPE_DIRECTORY)
        sink.write(tarformat.encode_header(header))
        if _is_opaque(path, walk.opaque_xattr):
            sink.write(tarformat.encode_header(_marker_header(relative + b"/" + OPAQUE_MARKER)))
            return 2
        return 1
    if info.st_nlink > 1:
        inode = (info.st_dev, info.st_ino)
        first = walk.first_link_of.get(inode)
        if first is not None:
            link = replace(header, type_flag=tarformat.TYPE_HARDLINK, link_name=first)
            sink.write(tarformat.encode_header(link))
            return 1
        walk.first_link_of[inode] = relative
    if stat.S_ISREG(mode):
        _write_file(sink, path, header)
        return 1
    if stat.S_ISLNK(mode):
        header = replace(header, type_flag=tarformat.TYPE_SYMLINK, link_name=os.readlink(path))
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        header = replace(
            header,
            type_flag=tarformat.TYPE_CHAR if stat.S_ISCHR(mode) else tarformat.TYPE_BLOCK,
            device_major=os.major(info.st_rdev),
            device_minor=os.minor(info.st_rdev),
        )
    else:
        header = replace(header, type_flag=tarformat.TYPE_FIFO)
    sink.write(tarformat.encode_header(header))
    return 1


def _write_file(sink: _Sink, path: bytes, header: TarHeader) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        sink.write(tarformat.encode_header(replace(header, size=size)))
        view = sink.chunk
        remaining = size
        while remaining:
            count = os.readv(fd, [view[: min(remaining, _COPY_CHUNK)]])
            if count == 0:
                raise StoreError(
                    f"writing layer: {os.fsdecode(header.name)} shrank while being read"
                )
            sink.write(view[:count])
            remaining -= count
        sink.write(tarformat.padding(size))
    finally:
        os.close(fd)


def _marker_header(name: bytes) -> TarHeader:
    return TarHeader(name=name, type_flag=tarformat.TYPE_REGULAR, mode=0, uid=0, gid=0)


def _is_opaque(path: bytes, opaque_xattr: bytes) -> bool:
    try:
        return os.getxattr(path, opaque_xattr, follow_symlinks=False) == b"y"
    except OSError as err:
        if err.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise


def _xattrs(path: bytes) -> tuple[tuple[bytes, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as err:
        if err.errno == errno.ENOTSUP:
            return ()
        raise
    kept: list[tuple[bytes, bytes]] = []
    for name in sorted(os.fsencode(name) for name in names):
        if name in _SKIPPED_XATTRS or name.startswith(_SKIPPED_XATTR_PREFIXES):
            continue
        kept.append((name, os.getxattr(path, name, follow_symlinks=False)))
    return tuple(kept)
