"""Tar writers over any stream, pipes and stdout included, without tarfile's stream mode.

Stream mode ("w|") wraps the output in tarfile's _Stream, which tries to
finish the archive from its finaliser when an export fails midway and then
writes to a closed file. Plain "w" mode only needs ``tell()``, so the output
is wrapped in a position counter instead; used as a context manager, the
TarFile writes the end-of-archive blocks only when the block succeeds.

Archives of blobs (oci, docker) use ``BlobTar``: the same bytes tarfile
writes, but a member's body can be copied file to file by the kernel, so a
layer of hundreds of MB never passes through Python when it needs no hashing,
or streamed in while it is being made, its header written last (the name
and size are known only at the end) when the output is a file.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import stat
import tarfile
from collections.abc import Callable
from typing import IO, BinaryIO, cast

from builder.export.writeback import EarlyWriteback

__all__ = ["BlobTar", "copy_into", "open_tar_writer"]

_COPY_BUFFER = 1 << 20
# A kernel copy is asked for in pieces this big: large enough that the system
# calls do not count, small enough that a signal is answered promptly.
_KERNEL_PIECE = 64 << 20
# Why a kernel copy may be refused: another file system, a pipe or an O_APPEND
# output for copy_file_range, a kernel without it; then the next way is tried.
_NOT_THIS_WAY = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
)


class _Counting:
    """Forwards writes to ``out`` and counts them; ``out`` is never closed here."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._position = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        self._out.flush()


def open_tar_writer(out: BinaryIO) -> tarfile.TarFile:
    """A PAX TarFile writing to ``out``; use it in ``with``, ``out`` stays open."""
    return tarfile.TarFile(
        fileobj=cast(IO[bytes], _Counting(out)),
        mode="w",
        format=tarfile.PAX_FORMAT,
        copybufsize=_COPY_BUFFER,
    )


class BlobTar:
    """A PAX tar written member by member to ``out`` (left open), byte for byte as tarfile
    writes it: header, body, padding to 512, and at ``finish`` two zero blocks padded to
    a 10 KiB record. Nothing is written after an error: the caller discards ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._offset = 0
        self._fd = _descriptor(out)
        # Streaming needs to write a header back: a regular file, not opened to append
        # (where Linux's pwrite ignores the offset). ``_base`` is where the tar begins.
        self._base: int | None = None
        self._writeback: EarlyWriteback | None = None
        if self._fd is not None and _rewritable(self._fd):
            self._base = out.tell()
            self._writeback = EarlyWriteback(self._fd)

    @property
    def can_stream(self) -> bool:
        """Whether ``begin_stream`` may be used (the output is a file it can rewrite)."""
        return self._base is not None

    def begin_stream(self) -> int:
        """Start a member whose body follows through ``stream``; returns its start for
        ``end_stream`` or ``drop_stream``. A zero block holds the header's place."""
        if self._base is None:
            raise OSError(errno.ESPIPE, "streaming a member needs a file to write back into")
        start = self._offset
        self._write(tarfile.NUL * tarfile.BLOCKSIZE)
        return start

    def stream(self, data: bytes) -> None:
        self._write(data)
        if self._writeback is not None:
            self._writeback.wrote(len(data))

    def end_stream(self, start: int, header: tarfile.TarInfo) -> None:
        """Pad the member begun at ``start`` and write its header (size filled in) in place."""
        assert self._base is not None and self._fd is not None
        header.size = self._offset - start - tarfile.BLOCKSIZE
        block = header.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
        if len(block) != tarfile.BLOCKSIZE:
            # Only a name of 100 bytes or more, or a size of 8 GiB or more, needs PAX
            # records; callers stream only blobs well under that.
            raise OSError(errno.EFBIG, f"member {header.name} needs PAX records: cannot stream")
        self._pad(header.size)
        self._out.flush()
        os.pwrite(self._fd, block, self._base + start)

    def drop_stream(self, start: int) -> None:
        """Forget the member begun at ``start``: the file is cut back to where it began."""
        assert self._base is not None and self._fd is not None
        self._out.flush()
        self._out.seek(self._base + start)
        os.ftruncate(self._fd, self._base + start)
        self._offset = start

    def add_bytes(self, header: tarfile.TarInfo, data: bytes = b"") -> None:
        """A member whose body is ``data`` (header.size must be its length)."""
        self._header(header)
        self._write(data)
        self._pad(len(data))

    def add_file(
        self,
        header: tarfile.TarInfo,
        source: int,
        *,
        update: Callable[[memoryview], object] | None = None,
    ) -> None:
        """A member whose body is the first header.size bytes of the file open as ``source``.

        With ``update`` every byte is read into Python and handed to it (a hash) before
        it is written; without, the kernel copies file to file where it can. Raises
        OSError(ENODATA) if the file is shorter than the header says.
        """
        self._header(header)
        if update is None and self._fd is not None:
            self._out.flush()  # the kernel writes at the descriptor's position
            copy_into(source, self._fd, header.size)
            if self._writeback is not None:
                self._writeback.wrote(header.size)
        else:
            self._copy_through(source, header.size, update)
        self._offset += header.size
        self._pad(header.size)

    def finish(self) -> None:
        self._write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        remainder = self._offset % tarfile.RECORDSIZE
        if remainder:
            self._write(tarfile.NUL * (tarfile.RECORDSIZE - remainder))
        self._out.flush()
        self.wait()

    def wait(self) -> None:
        """Let a background write-back end (before the output is synced or closed)."""
        if self._writeback is not None:
            self._writeback.wait()

    def _header(self, header: tarfile.TarInfo) -> None:
        self._write(header.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))

    def _write(self, data: bytes | memoryview) -> None:
        if data:
            self._out.write(data)
            self._offset += len(data)

    def _pad(self, size: int) -> None:
        remainder = size % tarfile.BLOCKSIZE
        if remainder:
            self._write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))

    def _copy_through(
        self, source: int, size: int, update: Callable[[memoryview], object] | None
    ) -> None:
        buffer = bytearray(min(size, _COPY_BUFFER) or 1)
        view = memoryview(buffer)
        done = 0
        while done < size:
            count = os.preadv(source, [view[: min(len(buffer), size - done)]], done)
            if not count:
                raise OSError(errno.ENODATA, "file ended before its recorded size")
            if update is not None:
                update(view[:count])
            self._out.write(view[:count])
            done += count


def copy_into(source: int, target: int, size: int) -> None:
    """Append ``size`` bytes from the start of file ``source`` to ``target`` at its position.

    copy_file_range first (it may share extents, and never leaves the kernel),
    then sendfile (any output since Linux 2.6.33, pipes included), then read and write;
    a way refused midway hands over to the next at the offset reached.
    """
    done = 0
    for way in _KERNEL_WAYS:
        try:
            while done < size:
                count = way(source, target, done, min(size - done, _KERNEL_PIECE))
                if not count:
                    raise OSError(errno.ENODATA, "file ended before its recorded size")
                done += count
            return
        except OSError as err:
            if err.errno not in _NOT_THIS_WAY:
                raise
    buffer = bytearray(min(size - done, _COPY_BUFFER))
    view = memoryview(buffer)
    while done < size:
        count = os.preadv(source, [view[: min(len(buffer), size - done)]], done)
        if not count:
            raise OSError(errno.ENODATA, "file ended before its recorded size")
        written = 0
        while written < count:
            written += os.write(target, view[written:count])
        done += count


def _copy_file_range(source: int, target: int, offset: int, count: int) -> int:
    return os.copy_file_range(source, target, count, offset)


def _sendfile(source: int, target: int, offset: int, count: int) -> int:
    return os.sendfile(target, source, offset, count)


_KERNEL_WAYS = (_copy_file_range, _sendfile)


def _rewritable(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and not fcntl.fcntl(fd, fcntl.F_GETFL) & (
            os.O_APPEND
        )
    except OSError:
        return False


def _descriptor(out: BinaryIO) -> int | None:
    """``out``'s file descriptor if it has one (a BytesIO has none)."""
    try:
        return out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
