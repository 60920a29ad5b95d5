"""A tarfile writer over any stream, pipes and stdout included, without tarfile's stream mode.

Stream mode ("w|") wraps the output in tarfile's _Stream, which tries to
finish the archive from its finaliser when an export fails midway and then
writes to a closed file. Plain "w" mode only needs ``tell()``, so the output
is wrapped in a position counter instead; used as a context manager, the
TarFile writes the end-of-archive blocks only when the block succeeds.
"""

from __future__ import annotations

import tarfile
from typing import IO, BinaryIO, cast

__all__ = ["open_tar_writer"]

_COPY_BUFFER = 1 << 20


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
