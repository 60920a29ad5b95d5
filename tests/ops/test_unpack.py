"""builder/ops/unpack.py: archive detection by content and safe extraction."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
import pyzstd

from builder.ops.unpack import (
    Compression,
    UnpackError,
    detect_compression,
    extract_archive,
    is_archive,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set owners")

Member = tuple[str, str, Any]  # (name, type, payload): f=text, d=None, l=symlink, h=hardlink


def tar_bytes(
    members: list[Member],
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mtime, info.mode = uid, gid, mtime, mode
            data = None
            if kind == "f":
                data = payload.encode()
                info.size = len(data)
            elif kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "p":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


COMPRESSORS = {
    "plain": lambda data: data,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": pyzstd.compress,
}


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    result: dict[str, tuple[Any, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            info = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                result[rel] = ("l", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                result[rel] = ("d", stat.S_IMODE(info.st_mode))
            elif stat.S_ISREG(info.st_mode):
                result[rel] = ("f", stat.S_IMODE(info.st_mode), path.read_text())
            else:
                result[rel] = ("p",)
    return result


def extract(tmp_path: Path, data: bytes, **kwargs: Any) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    archive = tmp_path / "archive"
    archive.write_bytes(data)
    dest = tmp_path / "dest"
    dest.mkdir(exist_ok=True)
    extract_archive(archive, dest, **kwargs)
    return dest


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"\x1f\x8b\x08\x00", Compression.GZIP),
        (b"BZh91AY", Compression.BZIP2),
        (b"\xfd7zXZ\x00\x00", Compression.XZ),
        (b"\x28\xb5\x2f\xfd\x00", Compression.ZSTD),
        (b"\x50\x2a\x4d\x18\x00", Compression.ZSTD),
        (b"\x5f\x2a\x4d\x18", Compression.ZSTD),
        (b"\x1f\x8b", Compression.NONE),
        (b"ustar", Compression.NONE),
        (b"", Compression.NONE),
    ],
)
def test_detect_compression_by_magic_bytes(header: bytes, expected: Compression) -> None:
    assert detect_compression(header) is expected


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_every_compression_is_recognised_and_extracted(tmp_path: Path, compression: str) -> None:
    data = COMPRESSORS[compression](tar_bytes([("a/b.txt", "f", "hello"), ("c", "f", "x")]))
    archive = tmp_path / "whatever.name"
    archive.write_bytes(data)
    assert is_archive(archive)
    dest = extract(tmp_path, data)
    assert tree(dest) == {
        "a": ("d", 0o755),
        "a/b.txt": ("f", 0o644, "hello"),
        "c": ("f", 0o644, "x"),
    }


@pytest.mark.parametrize(
    "data",
    [
        b"just text\n",
        gzip.compress(b"gzipped text, not a tar"),
        tar_bytes([]),
        b"",
        gzip.compress(tar_bytes([])),
    ],
    ids=["text", "gzip-not-tar", "empty-tar", "empty-file", "gzip-empty-tar"],
)
def test_non_archives_are_not_archives(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "thing.tar.gz"
    path.write_bytes(data)
    assert not is_archive(path)


def test_a_directory_or_symlink_is_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "a.tar").write_bytes(tar_bytes([("x", "f", "")]))
    (tmp_path / "link.tar").symlink_to("a.tar")
    assert not is_archive(tmp_path / "link.tar")
    assert not is_archive(tmp_path)


# (id, members, expected tree or the UnpackError message)
TRAVERSAL_CASES: list[tuple[str, list[Member], dict[str, tuple[Any, ...]] | str]] = [
    ("dot-dot name", [("../evil", "f", "x")], "archive path '../evil' is outside extraction root"),
    ("dot-dot inside name", [("a/../../evil", "f", "x")], "outside extraction root"),
    (
        "absolute name lands inside",
        [("/etc/passwd", "f", "x")],
        {"etc": ("d", 0o755), "etc/passwd": ("f", 0o644, "x")},
    ),
    (
        "write through absolute symlink lands inside",
        [("lnk", "l", "/etc"), ("lnk/passwd", "f", "x")],
        {"lnk": ("l", "/etc"), "etc": ("d", 0o755), "etc/passwd": ("f", 0o644, "x")},
    ),
    (
        "write through escaping relative symlink is refused",
        [("up", "l", "../../.."), ("up/x", "f", "x")],
        "archive symlink 'up' points outside extraction root",
    ),
    (
        "write through inner relative symlink",
        [("d/", "d", None), ("s", "l", "d"), ("s/f", "f", "x")],
        {"d": ("d", 0o755), "s": ("l", "d"), "d/f": ("f", 0o644, "x")},
    ),
    (
        "a symlink entry may point anywhere (it is only data)",
        [("l", "l", "/etc/shadow")],
        {"l": ("l", "/etc/shadow")},
    ),
    (
        "file entry replaces a symlink, not written through",
        [("l", "l", "/etc/target"), ("l", "f", "new")],
        {"l": ("f", 0o644, "new")},
    ),
    (
        "hardlink inside",
        [("a", "f", "data"), ("b", "h", "a")],
        {"a": ("f", 0o644, "data"), "b": ("f", 0o644, "data")},
    ),
    ("hardlink escaping", [("b", "h", "../../etc/passwd")], "outside extraction root"),
    ("hardlink to root", [("b", "h", "/")], "targets extraction root"),
    (
        "hardlink through escaping symlink",
        [("up", "l", "../.."), ("b", "h", "up/x")],
        "points outside extraction root",
    ),
    ("dot entries are skipped", [("./", "d", None), ("./a", "f", "x")], {"a": ("f", 0o644, "x")}),
    (
        "dir replaces file",
        [("x", "f", "1"), ("x/", "d", None), ("x/y", "f", "2")],
        {"x": ("d", 0o755), "x/y": ("f", 0o644, "2")},
    ),
    (
        "implied parents are 0755",
        [("p/q/r", "f", "x")],
        {"p": ("d", 0o755), "p/q": ("d", 0o755), "p/q/r": ("f", 0o644, "x")},
    ),
    ("fifo", [("pipe", "p", None)], {"pipe": ("p",)}),
]


@pytest.mark.parametrize(
    ("members", "expected"), [c[1:] for c in TRAVERSAL_CASES], ids=[c[0] for c in TRAVERSAL_CASES]
)
def test_extraction_never_leaves_the_destination(
    tmp_path: Path, members: list[Member], expected: dict[str, tuple[Any, ...]] | str
) -> None:
    outside = tmp_path / "etc"
    if isinstance(expected, str):
        with pytest.raises(UnpackError, match=expected):
            extract(tmp_path, tar_bytes(members))
    else:
        assert tree(extract(tmp_path, tar_bytes(members))) == expected
    assert not outside.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive", "dest"]


def test_existing_symlink_in_destination_is_followed_inside_it(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "lib").symlink_to("/usr/lib")
    extract(tmp_path, tar_bytes([("lib/x.so", "f", "so")]))
    assert (dest / "usr" / "lib" / "x.so").read_text() == "so"


def test_modes_and_times_are_kept(tmp_path: Path) -> None:
    dest = extract(
        tmp_path,
        tar_bytes([("d/", "d", None), ("d/s", "f", "x")], mode=0o4755, mtime=1_234_567_890),
    )
    info = os.lstat(dest / "d" / "s")
    assert (stat.S_IMODE(info.st_mode), info.st_mtime_ns) == (0o4755, 1_234_567_890 * 10**9)
    assert os.lstat(dest / "d").st_mtime_ns == 1_234_567_890 * 10**9


@needs_root
def test_owners_come_from_the_archive_unless_chown(tmp_path: Path) -> None:
    data = tar_bytes([("d/", "d", None), ("d/f", "f", "x"), ("d/l", "l", "f")], uid=42, gid=43)
    dest = extract(tmp_path, data)
    assert {
        (os.lstat(dest / p).st_uid, os.lstat(dest / p).st_gid) for p in ("d", "d/f", "d/l")
    } == {(42, 43)}
    chowned = extract(tmp_path / "o", data, owner=(7, 8))
    assert {os.lstat(chowned / p).st_uid for p in ("d", "d/f", "d/l")} == {7}
    implied = extract(tmp_path / "i", tar_bytes([("p/f", "f", "x")], uid=5, gid=5), owner=(9, 9))
    assert os.lstat(implied / "p").st_uid == 0
    assert os.lstat(implied / "p" / "f").st_uid == 9


def test_corrupt_archive_is_an_unpack_error(tmp_path: Path) -> None:
    data = gzip.compress(tar_bytes([("a", "f", "x" * 10000)]))
    with pytest.raises(UnpackError, match="extracting"):
        extract(tmp_path, data[: len(data) // 2])
