"""The content-addressed blob store: ROOT/blobs/sha256/<hex>, staged in ROOT/tmp/.

The contract is umoci's CAS engine (oci/cas/cas.go): a put is idempotent,
a blob is only ever visible complete (temp file, fsync, rename, fsync of the
directory), and a reader can ask for its bytes to be checked against the
digest. Nothing here knows what a blob means; manifests and layers are the
image package's business.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Self

import xxhash

from builder.errors import StoreError
from cache import blobcheck, files

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["BlobRef", "BlobStore", "BlobWriter", "validate_digest"]

# Strict on purpose: the hex part becomes a file name, so anything but 64
# lowercase hex digits (a "/", "..", an upper-case twin) must never get that far.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TEMP_PREFIX = "blob-"
_CHUNK = 1 << 20


def validate_digest(digest: str) -> str:
    """Return the digest if it is ``sha256:`` + 64 lowercase hex digits, else raise StoreError."""
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise StoreError(f"invalid digest {digest!r}: want sha256: and 64 lowercase hex digits")
    return digest


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A blob that is in the store: its sha256 digest and its size in bytes."""

    digest: str
    size: int


class BlobWriter:
    """Streams one blob into a temp file, hashing as it goes; ``commit`` makes it visible.

    Use it as a context manager: leaving the block without a commit, or by an
    exception, removes the temp file. The temp file is flock'ed while it is
    being written so ``BlobStore.sweep_staging`` can tell an abandoned one (its
    writer was killed) from one still in use.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._hash = hashlib.sha256()
        # The fast checksum later reads are checked against (cache/blobcheck.py).
        self._checksum = xxhash.xxh3_128()
        self._size = 0
        self._ref: BlobRef | None = None
        self._file, self._temp_path = _open_locked_temp(store.staging_dir)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append bytes to the blob; returns how many were written."""
        if self._file.closed:
            raise StoreError("writing blob: writer is already committed or closed")
        self._file.write(data)
        self._hash.update(data)
        self._checksum.update(data)
        self._size += len(data)
        return len(data)

    def flush(self) -> None:
        """Push buffered bytes to the temp file (lets the writer stand in for a BinaryIO)."""
        if not self._file.closed:
            self._file.flush()

    def fileno(self) -> int:
        """The temp file's descriptor, until commit or close: for OS-level work on the
        bytes written so far (after ``flush``), such as starting their write-back early."""
        return self._file.fileno()

    def commit(self, expected: str | None = None) -> BlobRef:
        """Make the blob visible under its digest and return it.

        ``expected`` (a digest) is checked before anything lands: a mismatch
        raises StoreError and leaves no blob and no temp file. Committing a
        blob that is already stored keeps the stored one (same bytes).
        """
        if self._ref is not None:
            return self._ref
        if self._file.closed:
            raise StoreError("committing blob: writer is already closed")
        digest = "sha256:" + self._hash.hexdigest()
        try:
            if expected is not None and validate_digest(expected) != digest:
                raise StoreError(f"committing blob: content is {digest}, expected {expected}")
            self._file.flush()
            os.fsync(self._file.fileno())
            os.fchmod(self._file.fileno(), 0o644)
            blobcheck.record(self._file.fileno(), self._checksum.hexdigest())
            target = self._store.path(digest)
            if not _refresh(target):
                try:
                    os.rename(self._temp_path, target)
                except OSError as err:
                    raise StoreError(f"committing blob {digest}: rename: {err}") from err
                _fsync_directory(target.parent)
        finally:
            self.close()
        self._ref = BlobRef(digest=digest, size=self._size)
        return self._ref

    def close(self) -> None:
        """Drop the temp file if it was not committed; closing twice is harmless."""
        if not self._file.closed:
            # Flushing what is buffered can fail (a full disk): the temp file
            # is discarded all the same, and must not be left behind for it.
            with contextlib.suppress(OSError):
                self._file.close()
        try:
            os.unlink(self._temp_path)
        except FileNotFoundError:
            pass


class BlobStore:
    """Blobs under ``root/blobs/sha256``, staged in ``root/tmp``.

    ``root`` is shared with the image store (it is an OCI image layout); two
    processes may write the same blob at once, and both end with it stored.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs" / "sha256"
        self.staging_dir = self.root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def writer(self) -> BlobWriter:
        """A new streaming writer; see BlobWriter for its contract."""
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> BlobRef:
        """Store ``data`` (idempotent: an existing blob is not rewritten)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if _refresh(self.path(digest)):
            return BlobRef(digest=digest, size=len(data))
        with self.writer() as writer:
            writer.write(data)
            return writer.commit(digest)

    def path(self, digest: str) -> Path:
        """Where the blob lives (or would); the digest is validated first."""
        return self.blob_dir / validate_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as err:
            raise StoreError(f"blob {digest} not found") from err

    def open(self, digest: str, *, verify: bool = False) -> io.BufferedReader:
        """Open a blob for reading; the caller closes it.

        With ``verify``, reaching the end raises StoreError if the bytes are
        not the blob's (checked against the xxh3-128 recorded when it landed,
        or else against ``digest``; see cache/blobcheck.py): a reader that
        stops early learns nothing, so read to the end before trusting it.
        """
        path = self.path(digest)
        try:
            raw = open(path, "rb", buffering=0)  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError as err:
            raise StoreError(f"blob {digest} not found") from err
        if not verify:
            return io.BufferedReader(raw, buffer_size=_CHUNK)
        return io.BufferedReader(_VerifyingReader(raw, digest), buffer_size=_CHUNK)

    def read_bytes(self, digest: str) -> bytes:
        """The whole blob, verified: for small blobs (manifests, configs)."""
        with self.open(digest, verify=True) as reader:
            return reader.read()

    def delete(self, digest: str) -> bool:
        """Remove a blob; returns False if it was not there. Reachability is gc's concern."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def iter_digests(self) -> Iterator[str]:
        """Every stored digest, sorted; stray files that are no digest are skipped."""
        names = sorted(entry.name for entry in os.scandir(self.blob_dir) if entry.is_file())
        for name in names:
            digest = "sha256:" + name
            if _DIGEST.fullmatch(digest):
                yield digest

    def sweep_staging(self) -> int:
        """Remove temp files left by writers that died; returns how many went.

        A live writer holds an flock on its temp file, so only files whose
        lock can be taken are abandoned. Safe to run beside live writers.
        """
        removed = 0
        for entry in sorted(os.scandir(self.staging_dir), key=lambda e: e.name):
            if entry.name.startswith(_TEMP_PREFIX) and files.remove_unlocked(entry.path):
                removed += 1
        return removed


class _VerifyingReader(io.RawIOBase):
    """A raw reader that checks what passes through at end of file (cache/blobcheck.py)."""

    def __init__(self, raw: io.FileIO, digest: str) -> None:
        super().__init__()
        self._raw = raw
        self._check = blobcheck.ContentCheck(raw.fileno(), digest)
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        count = self._raw.readinto(buffer)
        if count is None:
            return 0
        if count:
            self._check.update(memoryview(buffer)[:count])
        elif not self._checked:
            self._checked = True
            self._check.verify()
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_locked_temp(directory: Path) -> tuple[BinaryIO, str]:
    """A new temp file in ``directory``, flock'ed; retried if a sweeper removed it first."""
    while True:
        fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=directory)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if files.still_names(name, fd):
            return os.fdopen(fd, "wb", buffering=_CHUNK), name
        # A sweeper saw the file before we locked it and removed it: try again.
        os.close(fd)


def _refresh(path: Path) -> bool:
    """Mark a stored blob as just written (its mtime), if it is there; whether it is.

    A writer that finds its blob already stored reuses it; refreshing the
    mtime tells a concurrent prune (cache/gc.py) that a running build now
    relies on it, as if it had written it anew.
    """
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except PermissionError:
        pass  # a store shared read-only: the blob is there all the same
    return path.is_file()


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; some file systems refuse, which is fine."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
