"""extract_layer: metadata restored, whiteouts made overlay's way, nothing written outside dest."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import pyzstd

from builder.errors import StoreError
from builder.snapshot.apply import extract_layer
from tests.snapshot.trees import Entry, needs_root, view_of


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def _entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    mode: int = 0o644,
    linkname: str = "",
    mtime: int = 1000,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    info.mtime = mtime
    return info


def _file(name: str, data: bytes = b"data", **options: int) -> tuple[tarfile.TarInfo, bytes]:
    return _entry(name, **options), data  # type: ignore[arg-type]


def _dir(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes]:
    return _entry(name, tarfile.DIRTYPE, mode=mode), b""


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return _entry(name, tarfile.SYMTYPE, mode=0o777, linkname=target), b""


def _hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return _entry(name, tarfile.LNKTYPE, linkname=target), b""


class _Pipe(io.RawIOBase):
    """A stream that cannot seek, like a blob read from a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 7))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _extract(data: bytes, dest: Path) -> int:
    return extract_layer(io.BufferedReader(_Pipe(data)), dest)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A dir beside dest holding a secret, which no layer may touch."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "secret").write_text("keep")
    return place


def _untouched(tmp_path: Path, outside: Path, before: dict[str, Entry]) -> None:
    assert view_of(outside) == before
    assert sorted(os.listdir(tmp_path)) == ["dest", "outside"]


ESCAPES = {
    "dot-dot": [_file("../escaped")],
    "dot-dot-inside": [_dir("a"), _file("a/../../escaped")],
    "absolute": [_file("/etc/escaped")],
    "write-through-symlink": [_symlink("link", "../outside"), _file("link/secret", b"pwned")],
    "write-through-absolute-symlink": [_symlink("link", "/"), _file("link/escaped")],
    "dir-through-symlink": [_symlink("link", "../outside"), _dir("link/sub")],
    "hardlink-dot-dot": [_hardlink("h", "../outside/secret")],
    "hardlink-absolute": [_hardlink("h", "/etc/passwd")],
    "hardlink-through-symlink": [_symlink("s", "../outside"), _hardlink("h", "s/secret")],
    "whiteout-through-symlink": [_symlink("s", "../outside"), _file("s/.wh.secret", b"")],
    "opaque-through-symlink": [_symlink("s", "../outside"), _file("s/.wh..wh..opq", b"")],
    "whiteout-of-dot-dot": [_file(".wh..", b"")],
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_entries_that_would_escape_dest_are_refused(
    tmp_path: Path, outside: Path, case: str
) -> None:
    before = view_of(outside)
    with pytest.raises(StoreError, match="member") as caught:
        _extract(_tar(*ESCAPES[case]), tmp_path / "dest")
    assert ESCAPES[case][-1][0].name in str(caught.value)
    _untouched(tmp_path, outside, before)


def test_file_replacing_a_symlink_does_not_write_through_it(tmp_path: Path, outside: Path) -> None:
    before = view_of(outside)
    dest = tmp_path / "dest"
    _extract(
        _tar(
            _symlink("f", "../outside/secret"),
            _file("f", b"mine", mode=0o600),
            _symlink("d", "../outside"),
            _dir("d", mode=0o700),
        ),
        dest,
    )
    assert (dest / "f").read_bytes() == b"mine" and not (dest / "f").is_symlink()
    assert (dest / "d").is_dir() and not (dest / "d").is_symlink()
    _untouched(tmp_path, outside, before)


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _extract(
        _tar(
            _dir("a"),
            _file("a/inner"),
            _file("a", b"now a file"),
            _file("b"),
            _dir("b", mode=0o700),
            _dir("c", mode=0o700),
            _dir("c", mode=0o750),
        ),
        dest,
    )
    assert (dest / "a").read_bytes() == b"now a file"
    assert (dest / "b").is_dir()
    assert stat.S_IMODE(os.stat(dest / "c").st_mode) == 0o750


def test_missing_parents_are_created(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _extract(_tar(_file("x/y/z", b"deep")), dest)
    assert (dest / "x" / "y" / "z").read_bytes() == b"deep"
    assert stat.S_IMODE(os.stat(dest / "x").st_mode) == 0o755


def test_hardlink_to_a_missing_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="member h: .*nowhere"):
        _extract(_tar(_dir("d"), _hardlink("h", "d/nowhere")), tmp_path / "dest")


def test_hardlinks_share_an_inode(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _extract(_tar(_file("a/f", b"x"), _hardlink("b/g", "a/f"), _hardlink("h", "./a/f")), dest)
    inodes = {os.stat(dest / name).st_ino for name in ("a/f", "b/g", "h")}
    assert len(inodes) == 1 and os.stat(dest / "h").st_nlink == 3


@needs_root
def test_whiteouts_and_opaque_markers_become_overlay_markers(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _extract(
        _tar(
            _file(".wh.gone", b""),
            _dir("d"),
            _file("d/.wh..wh..opq", b""),
            _file("d/kept"),
            _file("d/.wh.kept", b""),
            _file(".wh..wh.plnk", b""),
        ),
        dest,
    )
    gone = os.lstat(dest / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(dest / "d", "trusted.overlay.opaque") == b"y"
    # A whiteout hides lower layers only, never an entry of its own layer.
    assert (dest / "d" / "kept").read_bytes() == b"data"
    assert sorted(os.listdir(dest)) == ["d", "gone"]


def test_user_namespace_layout_marks_opaque_with_user_xattr(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    extract_layer(io.BytesIO(_tar(_dir("d"), _file("d/.wh..wh..opq", b""))), dest, userxattr=True)
    assert os.getxattr(dest / "d", "user.overlay.opaque") == b"y"


def test_overlay_xattrs_inside_a_layer_are_not_planted(tmp_path: Path) -> None:
    info, data = _file("f")
    info.pax_headers = {
        "SCHILY.xattr.user.overlay.opaque": "y",
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",
        "SCHILY.xattr.user.kept": "v",
    }
    dest = tmp_path / "dest"
    _extract(_tar((info, data)), dest)
    assert os.listxattr(dest / "f") == ["user.kept"]


@needs_root
def test_metadata_is_restored(tmp_path: Path) -> None:
    suid, suid_data = _file("bin/su", b"#!", mode=0o4755, mtime=1234)
    suid.uid, suid.gid = 1000, 1001
    suid.pax_headers = {"SCHILY.xattr.trusted.t": "\x00\udcff", "SCHILY.xattr.user.u": "v"}
    sticky, _ = _dir("tmp", mode=0o1777)
    sticky.mtime = 77
    null = _entry("dev/null", tarfile.CHRTYPE, mode=0o666)
    null.devmajor, null.devminor = 1, 3
    loop = _entry("dev/loop0", tarfile.BLKTYPE, mode=0o660)
    loop.devmajor, loop.devminor = 7, 0
    fifo = _entry("run/fifo", tarfile.FIFOTYPE, mode=0o620)
    link, _ = _symlink("bin/sh", "su")
    link.uid, link.mtime = 5, 99
    dest = tmp_path / "dest"
    count = _extract(
        _tar((suid, suid_data), (sticky, b""), (null, b""), (loop, b""), (fifo, b""), (link, b"")),
        dest,
    )
    assert count == 6
    seen = view_of(dest)
    assert seen["bin/su"] == Entry(
        kind="file",
        mode=0o4755,
        uid=1000,
        gid=1001,
        mtime=1234,
        content=seen["bin/su"].content,
        nlink=1,
        xattrs=((b"trusted.t", b"\x00\xff"), (b"user.u", b"v")),
    )
    assert seen["tmp"] == Entry(kind="dir", mode=0o1777, uid=0, gid=0, mtime=77)
    assert seen["dev/null"] == Entry(
        kind="char", mode=0o666, uid=0, gid=0, mtime=1000, device=(1, 3), nlink=1
    )
    assert seen["dev/loop0"].device == (7, 0) and seen["dev/loop0"].kind == "block"
    assert (seen["run/fifo"].kind, seen["run/fifo"].mode) == ("fifo", 0o620)
    assert seen["bin/sh"] == Entry(
        kind="symlink", mode=0o777, uid=5, gid=0, mtime=99, link="su", nlink=1
    )


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_compressed_layers_are_detected_by_magic(tmp_path: Path, compress: str) -> None:
    plain = _tar(_dir("d"), _file("d/f", b"x" * 100_000))
    packed = gzip.compress(plain) if compress == "gzip" else pyzstd.compress(plain)
    _extract(packed, tmp_path / "packed")
    _extract(plain, tmp_path / "plain")
    assert view_of(tmp_path / "packed") == view_of(tmp_path / "plain")


def test_corrupt_header_mid_stream_is_an_error_not_an_early_end(tmp_path: Path) -> None:
    data = bytearray(_tar(_file("first"), _file("second")))
    data[1024 + 148 : 1024 + 156] = b"0000000\0"  # the second header's checksum
    with pytest.raises(StoreError, match="after first"):
        _extract(bytes(data), tmp_path / "dest")


def test_truncated_file_data_is_an_error(tmp_path: Path) -> None:
    data = _tar(_file("big", b"x" * 5000))
    with pytest.raises(StoreError, match="member big"):
        _extract(data[:2048], tmp_path / "dest")


def test_garbage_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="extracting layer"):
        _extract(b"not a tar at all" * 64, tmp_path / "dest")


def test_the_callers_stream_stays_open(tmp_path: Path) -> None:
    stream = io.BytesIO(gzip.compress(_tar(_file("f"))))
    assert extract_layer(stream, tmp_path / "dest") == 1
    assert not stream.closed
