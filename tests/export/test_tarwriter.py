"""builder.export.tarwriter: BlobTar writes tarfile's bytes, whichever way a body gets in."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from builder.export import tarwriter
from builder.export.tarwriter import BlobTar, copy_into


def _header(name: str, size: int) -> tarfile.TarInfo:
    header = tarfile.TarInfo(name)
    header.size = size
    header.mode = 0o644
    header.mtime = 0
    header.uname = header.gname = ""
    return header


def _tarfile_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.TarFile(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            tar.addfile(_header(name, len(data)), io.BytesIO(data))
    return buffer.getvalue()


MEMBERS = [("small", b"x" * 700), ("blobs/sha256/" + "a" * 64, os.urandom(3 << 20) + b"tail")]


def _source(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / f"source-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


@pytest.mark.parametrize("way", ["bytes", "kernel", "hashed", "streamed"])
def test_every_way_in_gives_tarfiles_bytes(tmp_path: Path, way: str) -> None:
    out_path = tmp_path / "out.tar"
    seen = hashlib.sha256()
    with open(out_path, "wb") as out:
        tar = BlobTar(out)
        for name, data in MEMBERS:
            if way == "bytes":
                tar.add_bytes(_header(name, len(data)), data)
            elif way == "streamed":
                start = tar.begin_stream()
                for offset in range(0, len(data), 1 << 20):
                    tar.stream(data[offset : offset + (1 << 20)])
                tar.end_stream(start, _header(name, 0))
            else:
                fd = _source(tmp_path, data)
                try:
                    tar.add_file(
                        _header(name, len(data)), fd, update=seen.update if way == "hashed" else None
                    )
                finally:
                    os.close(fd)
        tar.finish()
    assert out_path.read_bytes() == _tarfile_bytes(MEMBERS)
    if way == "hashed":
        assert seen.digest() == hashlib.sha256(b"".join(data for _, data in MEMBERS)).digest()


def test_a_dropped_stream_leaves_no_trace(tmp_path: Path) -> None:
    out_path = tmp_path / "out.tar"
    with open(out_path, "wb") as out:
        tar = BlobTar(out)
        first, first_data = MEMBERS[0]
        tar.add_bytes(_header(first, len(first_data)), first_data)
        start = tar.begin_stream()
        tar.stream(b"duplicate" * 1000)
        tar.drop_stream(start)
        name, data = MEMBERS[1]
        tar.add_bytes(_header(name, len(data)), data)
        tar.finish()
    assert out_path.read_bytes() == _tarfile_bytes(MEMBERS)


def test_pipes_and_appending_files_cannot_take_a_stream(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb", closefd=False) as pipe:
            assert not BlobTar(pipe).can_stream
    finally:
        os.close(read_end)
        os.close(write_end)
    with open(tmp_path / "appended", "ab") as appending:
        assert not BlobTar(appending).can_stream
    assert not BlobTar(io.BytesIO()).can_stream
    with open(tmp_path / "file", "wb") as plain:
        assert BlobTar(plain).can_stream


def test_copy_into_a_pipe(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    fd = _source(tmp_path, data)
    read_end, write_end = os.pipe()
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        copy_into(fd, write_end, len(data))
    finally:
        os.close(write_end)
        reader.join()
        os.close(read_end)
        os.close(fd)
    assert bytes(received) == data


@pytest.mark.parametrize("refused", [1, 2])
def test_copy_into_falls_back_when_the_kernel_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: int
) -> None:
    data = os.urandom(200_000)
    fd = _source(tmp_path, data)

    def refuse(*_: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    ways = list(tarwriter._KERNEL_WAYS)
    monkeypatch.setattr(tarwriter, "_KERNEL_WAYS", (refuse,) * refused + tuple(ways[refused:]))
    target = tmp_path / "target"
    with open(target, "wb") as out:
        out.write(b"head")
        out.flush()
        copy_into(fd, out.fileno(), len(data))
    os.close(fd)
    assert target.read_bytes() == b"head" + data


def test_copy_into_notices_a_short_file(tmp_path: Path) -> None:
    fd = _source(tmp_path, b"short")
    with open(tmp_path / "target", "wb") as out, pytest.raises(OSError) as caught:
        copy_into(fd, out.fileno(), 100)
    os.close(fd)
    assert caught.value.errno == errno.ENODATA
