"""ADD of a local archive: recognising a tar by its bytes and extracting it safely.

A file is an archive when its first bytes name a compression BuildKit knows
(gzip, bzip2, xz, zstd) or none, and what they decompress to starts with a
valid tar header; the file's name plays no part.  Anything else is copied
as a plain file by the caller.

Extraction follows BuildKit's ``applyRootArchive`` (v0.23+): every entry
lands inside the extraction directory.  A leading ``/`` is dropped (as GNU
tar does), a name that climbs out with ``..`` is refused, and symlinks met
on the way to an entry are followed as if the extraction directory were
the root; one whose relative target climbs out is refused.  Owners come
from the archive unless ``--chown`` gives one; implied parent directories
are 0755 and owned by root.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import IO, cast

from builder.dockerignore import clean_path
from builder.errors import UnpackError

__all__ = ["Compression", "UnpackError", "detect_compression", "extract_archive", "is_archive"]

_MAX_SYMLINKS = 255
_CHUNK = 1 << 20


class Compression(Enum):
    NONE = "none"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"


_MAGIC = (
    (b"\x42\x5a\x68", Compression.BZIP2),
    (b"\x1f\x8b\x08", Compression.GZIP),
    (b"\xfd\x37\x7a\x58\x5a\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
)
_DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
)


def detect_compression(header: bytes) -> Compression:
    """The compression the first bytes announce (moby's DetectCompression, with zstd's
    skippable frames, 0x184D2A50-5F little-endian, as newer moby reads them)."""
    for magic, compression in _MAGIC:
        if header.startswith(magic):
            return compression
    if len(header) >= 4 and header[1:4] == b"\x2a\x4d\x18" and header[0] & 0xF0 == 0x50:
        return Compression.ZSTD
    return Compression.NONE


@contextmanager
def _decompressed(path: str | bytes | os.PathLike[str]) -> Iterator[IO[bytes]]:
    with ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        compression = detect_compression(raw.peek(10)[:10])
        stream: object = raw
        if compression is Compression.GZIP:
            stream = stack.enter_context(gzip.GzipFile(fileobj=raw))
        elif compression is Compression.BZIP2:
            stream = stack.enter_context(bz2.BZ2File(raw))
        elif compression is Compression.XZ:
            stream = stack.enter_context(lzma.LZMAFile(raw))
        elif compression is Compression.ZSTD:
            import pyzstd  # late: only ADD of a zstd archive pays for it

            stream = stack.enter_context(pyzstd.ZstdFile(raw))
        yield cast(IO[bytes], stream)


def is_archive(path: str | bytes | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file that decompresses to a tar with at least one entry.

    As in BuildKit, an empty tar (only its end blocks) is not an archive and
    gets copied as a file.
    """
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with _decompressed(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            return tar.next() is not None
    except _DECOMPRESSION_ERRORS:
        return False
    except Exception as err:  # pyzstd's error type is only importable with pyzstd
        if type(err).__name__ == "ZstdError":
            return False
        raise


def extract_archive(
    archive: str | bytes | os.PathLike[str],
    dest_dir: str | bytes | os.PathLike[str],
    *,
    owner: tuple[int, int] | None = None,
) -> None:
    """Extract ``archive`` into the existing directory ``dest_dir``; ``owner`` overrides the
    archive's owners (ADD --chown).  Directory times are set last, deepest first."""
    root = os.fsencode(dest_dir)
    directory_times: list[tuple[bytes, int, int]] = []
    try:
        with _decompressed(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                _extract_member(tar, member, root, owner, directory_times)
    except UnpackError:
        raise
    except _DECOMPRESSION_ERRORS as err:
        raise UnpackError(f"extracting {os.fsdecode(archive)}: {err}") from err
    for path, atime, mtime in reversed(directory_times):
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    root: bytes,
    owner: tuple[int, int] | None,
    directory_times: list[tuple[bytes, int, int]],
) -> None:
    name = _local_name(member.name)
    if not name:
        return
    resolved = _resolve(root, name, follow_leaf=member.isdir())
    if not resolved:
        return
    _make_parents(root, resolved)
    path = root + b"/" + os.fsencode(resolved)
    _clear_target(path, member)
    uid, gid = owner if owner is not None else (member.uid, member.gid)
    atime, mtime = _times(member)
    mode = member.mode & 0o7777
    if member.isdir():
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        os.lchown(path, uid, gid)
        os.chmod(path, mode)
        directory_times.append((path, atime, mtime))
    elif member.isreg():
        _write_file(tar, member, path, uid, gid, mode, atime, mtime)
    elif member.issym():
        os.symlink(member.linkname, path)
        os.lchown(path, uid, gid)
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)
    elif member.islnk():
        _hard_link(root, member, path, uid, gid, mode, atime, mtime)
    elif member.isfifo() or member.ischr() or member.isblk():
        kind = stat.S_IFIFO if member.isfifo() else stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        os.lchown(path, uid, gid)
        os.chmod(path, mode)
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)
    else:
        raise UnpackError(f"unsupported tar entry {member.name!r} type {member.type!r}")


def _write_file(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    path: bytes,
    uid: int,
    gid: int,
    mode: int,
    atime: int,
    mtime: int,
) -> None:
    source = tar.extractfile(member)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if source is not None:
            while chunk := source.read(_CHUNK):
                os.write(fd, chunk)
        # chown first: it clears set-id bits that chmod then restores.
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.utime(fd, ns=(atime, mtime))
    finally:
        os.close(fd)


def _hard_link(
    root: bytes,
    member: tarfile.TarInfo,
    path: bytes,
    uid: int,
    gid: int,
    mode: int,
    atime: int,
    mtime: int,
) -> None:
    target = _local_name(member.linkname)
    if not target:
        raise UnpackError(f"archive hardlink {member.name!r} targets extraction root")
    target_path = root + b"/" + os.fsencode(_resolve(root, target, follow_leaf=False))
    try:
        os.link(target_path, path, follow_symlinks=False)
    except FileNotFoundError as err:
        raise UnpackError(
            f"archive hardlink {member.name!r}: {member.linkname!r} not found"
        ) from err
    os.lchown(path, uid, gid)
    if not stat.S_ISLNK(os.lstat(path).st_mode):
        os.chmod(path, mode)
        os.utime(path, ns=(atime, mtime))


def _local_name(name: str) -> str:
    """An entry name made relative and clean; "" for the root; refused if it climbs out."""
    cleaned = clean_path(name.lstrip("/"))
    if cleaned == ".":
        return ""
    if cleaned == ".." or cleaned.startswith("../"):
        raise UnpackError(f"archive path {name!r} is outside extraction root")
    return cleaned


def _resolve(root: bytes, name: str, *, follow_leaf: bool) -> str:
    """``name`` with the symlinks on its way followed inside ``root``; refuses escapes.

    An absolute link target counts from ``root``; a relative one from the
    link's directory and must stay inside.  The leaf is followed only for
    directories (a file entry replaces a symlink rather than writing through it).
    """
    original = name
    for _ in range(_MAX_SYMLINKS):
        parts = name.split("/") if name else []
        resolved: list[str] = []
        redirected: str | None = None
        for index, part in enumerate(parts):
            if index == len(parts) - 1 and not follow_leaf:
                resolved.append(part)
                continue
            candidate = "/".join([*resolved, part])
            try:
                info = os.lstat(root + b"/" + os.fsencode(candidate))
            except FileNotFoundError:
                return "/".join(resolved + parts[index:])
            if not stat.S_ISLNK(info.st_mode):
                resolved.append(part)
                continue
            redirected = _link_base(root, candidate, resolved)
            redirected = "/".join(p for p in (redirected, *parts[index + 1 :]) if p)
            break
        if redirected is None:
            return "/".join(resolved)
        name = redirected
    raise UnpackError(f"too many symlinks resolving archive path {original!r}")


def _link_base(root: bytes, candidate: str, directory: list[str]) -> str:
    """Where the symlink ``candidate`` points, relative to ``root``; refuses a way out."""
    target = os.fsdecode(os.readlink(root + b"/" + os.fsencode(candidate)))
    if target.startswith("/"):
        return _local_name(target)
    base = clean_path(f"{'/'.join(directory) or '.'}/{target}")
    if base == ".." or base.startswith("../"):
        raise UnpackError(f"archive symlink {candidate!r} points outside extraction root")
    return "" if base == "." else base


def _make_parents(root: bytes, name: str) -> None:
    parent, _, _ = name.rpartition("/")
    current = b""
    for part in parent.split("/") if parent else []:
        current = current + b"/" + os.fsencode(part)
        path = root + current
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.stat(path).st_mode):
                raise UnpackError(
                    f"extracting into {os.fsdecode(current[1:])}: {os.strerror(errno.ENOTDIR)}"
                ) from None
            continue
        os.lchown(path, 0, 0)
        os.chmod(path, 0o755)


def _clear_target(path: bytes, member: tarfile.TarInfo) -> None:
    """Remove what is in the way, unless a directory meets a directory entry (they merge)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        if not member.isdir():
            shutil.rmtree(path)
    else:
        os.unlink(path)


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns: pax's exact decimal times when present, else whole seconds;
    out-of-range times become the epoch, as in BuildKit."""
    mtime = _pax_time(member, "mtime")
    if mtime is None:
        mtime = int(member.mtime) * 1_000_000_000
    atime = _pax_time(member, "atime")
    atime = mtime if atime is None or atime < mtime else atime
    return _bounded(atime), _bounded(mtime)


def _pax_time(member: tarfile.TarInfo, key: str) -> int | None:
    text = member.pax_headers.get(key)
    if text is None:
        return None
    try:
        return int(Decimal(text) * 1_000_000_000)
    except (InvalidOperation, ValueError):
        return None


def _bounded(ns: int) -> int:
    return ns if 0 <= ns < 1 << 63 else 0
