"""Reading a layer stream: gzip/zstd found by magic bytes, and headers checked strictly."""

from __future__ import annotations

import contextlib
import io
import sys
import tarfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO, Self, cast

__all__ = ["is_bad_input", "members", "open_layer"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# tarfile's own names for a bad checksum and a short header (not in its __all__).
_HEADER_ERRORS: tuple[type[Exception], ...] = (
    vars(tarfile)["InvalidHeaderError"],
    vars(tarfile)["TruncatedHeaderError"],
)


class _StrictTarInfo(tarfile.TarInfo):
    """A TarInfo whose reader treats a corrupt header mid-stream as an error.

    ``tarfile`` ends iteration quietly when a later header has a bad checksum
    or is cut short, which would leave a half-extracted layer looking whole.
    """

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _HEADER_ERRORS as err:
            raise _CorruptHeader(str(err)) from err


class _CorruptHeader(Exception):
    pass


class _Replay(io.RawIOBase):
    """Gives back bytes already read from a stream, then the rest of it."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _decompressed(tar: BinaryIO) -> BinaryIO:
    """The plain tar stream, unwrapping gzip or zstd found by their magic bytes."""
    head = b""
    while len(head) < 4 and (more := tar.read(4 - len(head))):
        head += more
    stream: BinaryIO = io.BufferedReader(_Replay(head, tar))
    if head.startswith(_GZIP_MAGIC):
        import gzip

        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    if head.startswith(_ZSTD_MAGIC):
        import pyzstd

        return cast(BinaryIO, pyzstd.ZstdFile(stream, mode="rb"))
    return stream


@contextlib.contextmanager
def open_layer(tar: BinaryIO) -> Iterator[tarfile.TarFile]:
    """A streaming TarFile over ``tar`` (plain, gzip or zstd); ``tar`` itself stays open."""
    with (
        _decompressed(tar) as stream,
        tarfile.open(fileobj=stream, mode="r|", tarinfo=_StrictTarInfo) as archive,
    ):
        yield archive


def members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members in stream order; read each one's data before asking for the next."""
    while (member := archive.next()) is not None:
        yield member
        # Stream mode still remembers every member (typeshed does not declare
        # the list); nobody looks back, so let them go.
        archive.members.clear()  # type: ignore[attr-defined]


def is_bad_input(err: Exception) -> bool:
    """Whether ``err`` means a bad tar or a failed write, rather than a bug here."""
    if isinstance(err, (tarfile.TarError, _CorruptHeader, EOFError, OSError, zlib.error)):
        return True
    zstd = sys.modules.get("pyzstd")
    return zstd is not None and isinstance(err, zstd.ZstdError)
