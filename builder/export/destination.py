"""Where an export lands: a file or a directory that appears whole, or stdout.

A file is written to a temp file in the destination's own directory (so the
rename cannot cross file systems), fsynced, and renamed over ``dest``; a
failure removes the temp file and leaves ``dest`` as it was. ``-`` streams
to stdout with no temp file: a failure there leaves a truncated stream, as
``docker save`` does. A directory is filled beside ``dest`` and renamed into
place; to keep that a single rename, ``dest`` must be absent or empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from builder.errors import StoreError

__all__ = ["STDOUT", "open_directory", "open_file"]

STDOUT = "-"
_FILE_MODE = 0o666
_DIR_MODE = 0o755


@contextlib.contextmanager
def open_file(dest: str, *, stdout: BinaryIO | None = None) -> Iterator[BinaryIO]:
    """A writable stream for ``dest``; the file appears only if the block succeeds.

    ``stdout`` replaces sys.stdout's buffer for ``-`` (tests pass a BytesIO);
    it is flushed, never closed.
    """
    if dest == STDOUT:
        stream = stdout if stdout is not None else sys.stdout.buffer
        yield stream
        stream.flush()
        return
    path = Path(dest).absolute()
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise StoreError(f"writing {dest}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as file:
            yield file
            file.flush()
            os.fchmod(file.fileno(), _FILE_MODE & ~_umask())
            os.fsync(file.fileno())
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


@contextlib.contextmanager
def open_directory(dest: str) -> Iterator[Path]:
    """An empty directory beside ``dest`` that becomes ``dest`` if the block succeeds.

    Refuses (StoreError) a ``dest`` that exists and is not an empty directory:
    replacing a user's files is not an export's business.
    """
    path = Path(dest).absolute()
    _check_replaceable(path)
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise StoreError(f"writing {dest}: {err.strerror}") from err
    try:
        yield temp
        os.chmod(temp, _DIR_MODE & ~_umask())
        _check_replaceable(path)
        if path.is_dir():
            path.rmdir()
        os.rename(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_directory(path.parent)


def _check_replaceable(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise StoreError(f"writing {path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        raise StoreError(f"writing {path}: directory is not empty")


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse; the rename stands
            os.fsync(fd)
    finally:
        os.close(fd)
