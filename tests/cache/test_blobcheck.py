"""cache/blobcheck.py: the xxh3-128 recorded on a blob when it lands, and reads checked by it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

from builder.errors import StoreError
from cache import blobcheck
from cache.blobs import BlobStore
from cache.verify import verify


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "root")


def _record_of(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, blobcheck.ATTRIBUTE)
    except OSError:
        return None


def _flip_a_byte(path: Path, offset: int) -> None:
    # In place: the file, and so its record, stays; only the bytes change.
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_a_blob_lands_with_the_xxh3_of_its_content(blobs: BlobStore) -> None:
    data = os.urandom(2_500_000)
    with blobs.writer() as writer:
        for start in range(0, len(data), 700_000):
            writer.write(data[start : start + 700_000])
        ref = writer.commit()
    assert _record_of(blobs.path(ref.digest)) == xxhash.xxh3_128(data).hexdigest().encode()


def test_a_read_checked_by_the_record_finds_a_changed_byte(blobs: BlobStore) -> None:
    ref = blobs.put_bytes(os.urandom(1_000_000))
    _flip_a_byte(blobs.path(ref.digest), 654_321)
    with pytest.raises(StoreError, match="no longer matches the xxh3-128 checksum"):
        blobs.read_bytes(ref.digest)


def test_a_blob_without_a_record_is_checked_by_sha256_and_then_gets_one(
    blobs: BlobStore,
) -> None:
    data = b"a blob from a store older than the record" * 1000
    ref = blobs.put_bytes(data)
    path = blobs.path(ref.digest)
    os.removexattr(path, blobcheck.ATTRIBUTE)
    assert blobs.read_bytes(ref.digest) == data
    assert _record_of(path) == xxhash.xxh3_128(data).hexdigest().encode()


def test_a_blob_without_a_record_that_rotted_fails_by_sha256_and_gets_none(
    blobs: BlobStore,
) -> None:
    ref = blobs.put_bytes(b"x" * 10_000)
    path = blobs.path(ref.digest)
    os.removexattr(path, blobcheck.ATTRIBUTE)
    _flip_a_byte(path, 5000)
    with pytest.raises(StoreError, match="its content hashes to sha256:"):
        blobs.read_bytes(ref.digest)
    assert _record_of(path) is None


def test_a_garbled_record_is_ignored_and_replaced(blobs: BlobStore) -> None:
    data = b"content" * 100
    ref = blobs.put_bytes(data)
    path = blobs.path(ref.digest)
    os.setxattr(path, blobcheck.ATTRIBUTE, b"not a checksum")
    assert blobs.read_bytes(ref.digest) == data
    assert _record_of(path) == xxhash.xxh3_128(data).hexdigest().encode()


def test_verify_finds_a_stale_record_and_repair_records_it_afresh(blobs: BlobStore) -> None:
    data = b"sound content" * 1000
    ref = blobs.put_bytes(data)
    path = blobs.path(ref.digest)
    os.setxattr(path, blobcheck.ATTRIBUTE, b"0" * 32)
    with pytest.raises(StoreError, match="no longer matches"):
        blobs.read_bytes(ref.digest)
    (finding,) = verify(blobs.root)
    assert (finding.kind, finding.name) == ("blob", ref.digest)
    assert "stale" in finding.problem
    (repaired,) = verify(blobs.root, repair=True)
    assert repaired.repaired and path.exists()
    assert blobs.read_bytes(ref.digest) == data
    assert verify(blobs.root) == []


def test_verify_still_judges_the_content_by_sha256(blobs: BlobStore) -> None:
    ref = blobs.put_bytes(b"y" * 10_000)
    path = blobs.path(ref.digest)
    _flip_a_byte(path, 10)
    # A rotted blob whose record was taken over the rotted bytes: sha256 still tells.
    with open(path, "rb") as file:
        blobcheck.record(file.fileno(), xxhash.xxh3_128(path.read_bytes()).hexdigest())
    (finding,) = verify(blobs.root)
    assert "its content hashes to sha256:" in finding.problem
