"""cache/blobs.py: atomic, idempotent, verified, and closed to digests that name paths."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from builder.errors import StoreError
from cache.blobs import BlobStore, validate_digest
from tests.conftest import REPO


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "root")


def staged(blobs: BlobStore) -> list[str]:
    return sorted(os.listdir(blobs.staging_dir))


def test_put_bytes_stores_content_under_its_digest(blobs: BlobStore) -> None:
    ref = blobs.put_bytes(b"hello")
    assert ref.digest == digest_of(b"hello")
    assert ref.size == 5
    assert blobs.path(ref.digest) == blobs.root / "blobs" / "sha256" / ref.digest[7:]
    assert blobs.path(ref.digest).read_bytes() == b"hello"
    assert blobs.has(ref.digest)
    assert blobs.size(ref.digest) == 5
    assert staged(blobs) == []


def test_put_bytes_is_idempotent_when_the_blob_exists(blobs: BlobStore) -> None:
    first = blobs.put_bytes(b"same")
    inode = blobs.path(first.digest).stat().st_ino
    second = blobs.put_bytes(b"same")
    assert second == first
    assert blobs.path(first.digest).stat().st_ino == inode
    with blobs.writer() as writer:
        writer.write(b"same")
        assert writer.commit() == first
    assert list(blobs.iter_digests()) == [first.digest]
    assert staged(blobs) == []


def test_writer_streams_chunks_and_commits_their_digest(blobs: BlobStore) -> None:
    chunks = [os.urandom(100_000) for _ in range(5)]
    with blobs.writer() as writer:
        for chunk in chunks:
            writer.write(chunk)
        assert writer.size == 500_000
        assert not any(blobs.iter_digests())  # nothing visible before commit
        ref = writer.commit(digest_of(b"".join(chunks)))
    assert ref.digest == digest_of(b"".join(chunks))
    assert blobs.path(ref.digest).stat().st_mode & 0o777 == 0o644
    assert staged(blobs) == []


def test_commit_with_a_wrong_expected_digest_leaves_nothing(blobs: BlobStore) -> None:
    with blobs.writer() as writer:
        writer.write(b"actual")
        with pytest.raises(StoreError, match="expected"):
            writer.commit(digest_of(b"other"))
    assert list(blobs.iter_digests()) == []
    assert staged(blobs) == []


def test_exception_inside_the_writer_removes_the_temp_file(blobs: BlobStore) -> None:
    with pytest.raises(RuntimeError), blobs.writer() as writer:
        writer.write(b"partial")
        assert len(staged(blobs)) == 1
        raise RuntimeError("boom")
    assert staged(blobs) == []
    assert list(blobs.iter_digests()) == []


def test_writer_left_without_commit_removes_the_temp_file(blobs: BlobStore) -> None:
    with blobs.writer() as writer:
        writer.write(b"never committed")
    assert staged(blobs) == []
    assert list(blobs.iter_digests()) == []
    with pytest.raises(StoreError):
        writer.write(b"more")


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from cache.blobs import BlobStore
writer = BlobStore(Path(sys.argv[1])).writer()
writer.write(b"x" * 100_000)
print("written", flush=True)
time.sleep(60)
writer.commit()
"""


def test_writer_killed_before_commit_leaves_no_blob(blobs: BlobStore) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(blobs.root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "written"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert list(blobs.iter_digests()) == []
    assert len(staged(blobs)) == 1  # a kill cannot clean up; the sweep does
    assert blobs.sweep_staging() == 1
    assert staged(blobs) == []


def test_sweep_keeps_the_temp_file_of_a_live_writer(blobs: BlobStore) -> None:
    with blobs.writer() as writer:
        writer.write(b"in progress")
        assert blobs.sweep_staging() == 0
        ref = writer.commit()
    assert blobs.read_bytes(ref.digest) == b"in progress"


def test_verified_read_returns_intact_content(blobs: BlobStore) -> None:
    data = os.urandom(3_000_000)
    ref = blobs.put_bytes(data)
    with blobs.open(ref.digest, verify=True) as reader:
        assert reader.read() == data
    with blobs.open(ref.digest, verify=True) as reader:
        assert b"".join(iter(lambda: reader.read(4096), b"")) == data


def test_verified_read_detects_corruption(blobs: BlobStore) -> None:
    ref = blobs.put_bytes(b"good content")
    path = blobs.path(ref.digest)
    path.chmod(0o644)
    path.write_bytes(b"evil content")
    with blobs.open(ref.digest) as reader:  # unverified: the caller's choice
        assert reader.read() == b"evil content"
    with pytest.raises(StoreError, match="corrupt"), blobs.open(ref.digest, verify=True) as reader:
        reader.read()
    with pytest.raises(StoreError, match="corrupt"):
        blobs.read_bytes(ref.digest)


def test_verified_read_detects_a_truncated_blob(blobs: BlobStore) -> None:
    ref = blobs.put_bytes(b"0123456789")
    os.truncate(blobs.path(ref.digest), 4)
    with pytest.raises(StoreError):
        blobs.read_bytes(ref.digest)


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../x",
        "sha256:" + "../" * 21 + "a",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "a" * 64 + "\n",
        "sha256:" + "a" * 32 + "/" + "a" * 31,
        "sha512:" + "a" * 128,
        "a" * 64,
        "",
    ],
)
def test_invalid_digests_are_refused_everywhere(blobs: BlobStore, digest: str) -> None:
    with pytest.raises(StoreError, match="invalid digest"):
        validate_digest(digest)
    for use in (blobs.path, blobs.has, blobs.size, blobs.delete, blobs.read_bytes):
        with pytest.raises(StoreError, match="invalid digest"):
            use(digest)
    with pytest.raises(StoreError, match="invalid digest"), blobs.writer() as writer:
        writer.write(b"x")
        writer.commit(digest)
    assert staged(blobs) == []


def test_missing_blobs_raise_store_errors(blobs: BlobStore) -> None:
    missing = digest_of(b"absent")
    assert not blobs.has(missing)
    with pytest.raises(StoreError, match="not found"):
        blobs.open(missing)
    with pytest.raises(StoreError, match="not found"):
        blobs.size(missing)
    assert blobs.delete(missing) is False


def test_delete_removes_a_blob(blobs: BlobStore) -> None:
    ref = blobs.put_bytes(b"doomed")
    assert blobs.delete(ref.digest) is True
    assert not blobs.has(ref.digest)


def test_iter_digests_is_sorted_and_skips_stray_files(blobs: BlobStore) -> None:
    refs = [blobs.put_bytes(bytes([n])) for n in range(5)]
    (blobs.blob_dir / "not-a-digest").write_bytes(b"")
    assert list(blobs.iter_digests()) == sorted(ref.digest for ref in refs)


def test_concurrent_writers_of_one_blob_both_succeed(blobs: BlobStore) -> None:
    data = os.urandom(1_000_000)
    results: list[str] = []

    def put() -> None:
        results.append(blobs.put_bytes(data).digest)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [digest_of(data)] * 8
    assert blobs.read_bytes(digest_of(data)) == data
    assert staged(blobs) == []
