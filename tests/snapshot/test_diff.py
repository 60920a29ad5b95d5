"""write_layer: an upper dir read back header by header, and reproducible to the byte."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from builder.snapshot.diff import LayerStats, write_layer
from tests.snapshot.trees import Member, file_contents, members_of, needs_root

SECOND = 1_000_000_000


def _touch(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def _build_upper(root: Path, *, reverse: bool = False) -> Path:
    """An upper dir as overlay leaves it: changes, a whiteout, an opaque dir.

    ``reverse`` creates the same tree in another order, so inode numbers and
    directory order on disk differ while the content does not.
    """
    upper = root / ("upper-reverse" if reverse else "upper")
    upper.mkdir()
    steps: list[Callable[[], object]] = [
        lambda: (upper / "a").mkdir(),
        lambda: (upper / "c").mkdir(),
        lambda: (upper / "dev").mkdir(),
        lambda: os.mknod(upper / "b", stat.S_IFCHR, os.makedev(0, 0)),
        lambda: os.mkfifo(upper / "fifo", 0o600),
    ]
    for step in reversed(steps) if reverse else steps:
        step()
    (upper / "a" / "file").write_bytes(b"hello")
    os.link(upper / "a" / "file", upper / "a" / "link")
    os.symlink("file", upper / "a" / "sym")
    os.setxattr(upper / "a", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "a" / "file", "user.k", b"v")
    os.setxattr(upper / "a" / "file", "trusted.overlay.origin", b"\x00host-only")
    (upper / "c" / "sgid").mkdir()
    (upper / "c" / "suid").write_bytes(b"#!/bin/sh\n")
    os.chown(upper / "c" / "suid", 1000, 1000)
    os.mknod(upper / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(upper / "dev" / "loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(upper / "sock"))
    for path, mode in (
        (upper / "a", 0o755),
        (upper / "c", 0o1777),
        (upper / "c" / "sgid", 0o2755),
        (upper / "c" / "suid", 0o4755),
        (upper / "a" / "file", 0o644),
        (upper / "dev" / "null", 0o666),
        (upper / "dev" / "loop0", 0o660),
        (upper / "fifo", 0o600),
        (upper / "dev", 0o755),
    ):
        os.chmod(path, mode)
    for path in sorted(upper.rglob("*"), key=lambda p: -len(p.parts)):
        _touch(path, 2000 * SECOND + 999_999_999)
    _touch(upper / "a", 1000 * SECOND + 500_000_000)
    return upper


def _layer(upper: Path, *, source_date_epoch: int | None = None) -> tuple[bytes, LayerStats]:
    out = io.BytesIO()
    stats = write_layer(upper, out, source_date_epoch=source_date_epoch)
    return out.getvalue(), stats


XATTR = (("SCHILY.xattr.user.k", "v"),)
EXPECTED = [
    Member(name=".wh.b", type=b"0", mode=0),
    Member(name="a", type=b"5", mode=0o755, mtime=1000),
    Member(name="a/.wh..wh..opq", type=b"0", mode=0),
    Member(name="a/file", type=b"0", mode=0o644, size=5, mtime=2000, pax=XATTR),
    Member(name="a/link", type=b"1", mode=0o644, mtime=2000, linkname="a/file", pax=XATTR),
    Member(name="a/sym", type=b"2", mode=0o777, mtime=2000, linkname="file"),
    Member(name="c", type=b"5", mode=0o1777, mtime=2000),
    Member(name="c/sgid", type=b"5", mode=0o2755, mtime=2000),
    Member(name="c/suid", type=b"0", mode=0o4755, uid=1000, gid=1000, size=10, mtime=2000),
    Member(name="dev", type=b"5", mode=0o755, mtime=2000),
    Member(name="dev/loop0", type=b"4", mode=0o660, mtime=2000, devmajor=7, devminor=0),
    Member(name="dev/null", type=b"3", mode=0o666, mtime=2000, devmajor=1, devminor=3),
    Member(name="fifo", type=b"6", mode=0o600, mtime=2000),
]


@needs_root
def test_without_a_digest_the_bytes_are_the_same_and_the_diff_id_is_left_out(
    tmp_path: Path,
) -> None:
    upper = _build_upper(tmp_path)
    data, stats = _layer(upper)
    out = io.BytesIO()
    unhashed = write_layer(upper, out, digest=False)
    assert out.getvalue() == data
    assert unhashed == LayerStats(stats.entries, stats.bytes, stats.is_empty, diff_id=None)


@needs_root
def test_upper_dir_becomes_exact_oci_headers(tmp_path: Path) -> None:
    data, stats = _layer(_build_upper(tmp_path))
    assert members_of(data) == EXPECTED
    assert file_contents(data) == {
        ".wh.b": b"",
        "a/.wh..wh..opq": b"",
        "a/file": b"hello",
        "c/suid": b"#!/bin/sh\n",
    }
    assert stats == LayerStats(
        entries=len(EXPECTED),
        bytes=len(data),
        is_empty=False,
        diff_id="sha256:" + hashlib.sha256(data).hexdigest(),
    )
    # Only the entry with an xattr needs a PAX header; the stream ends with
    # two zero blocks and no record padding.
    assert data.count(b"ustar\x0000") == len(EXPECTED) + 2
    assert data.endswith(bytes(1024)) and not data.endswith(bytes(1536))


@needs_root
def test_same_tree_gives_same_digest_whatever_the_creation_order(tmp_path: Path) -> None:
    first, first_stats = _layer(_build_upper(tmp_path))
    second, second_stats = _layer(_build_upper(tmp_path, reverse=True))
    again, _ = _layer(tmp_path / "upper")
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    assert first == again
    assert first_stats.diff_id == second_stats.diff_id


@needs_root
def test_source_date_epoch_clamps_later_mtimes_only(tmp_path: Path) -> None:
    data, _ = _layer(_build_upper(tmp_path), source_date_epoch=1500)
    mtimes = {member.name: member.mtime for member in members_of(data)}
    assert mtimes["a"] == 1000
    assert mtimes["a/file"] == 1500 and mtimes["c/suid"] == 1500
    assert mtimes[".wh.b"] == 0


def test_empty_upper_is_an_empty_layer(tmp_path: Path) -> None:
    data, stats = _layer(tmp_path)
    assert stats.is_empty and stats.entries == 0
    assert data == bytes(1024) and stats.bytes == 1024


def test_user_namespace_overlay_marks_opaque_with_user_xattr(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.setxattr(tmp_path / "d", "user.overlay.opaque", b"y")
    os.utime(tmp_path / "d", (5, 5))
    plain, _ = _layer(tmp_path)
    assert [member.name for member in members_of(plain)] == ["d"]
    out = io.BytesIO()
    write_layer(tmp_path, out, userxattr=True)
    assert members_of(out.getvalue()) == [
        Member(name="d", type=b"5", mode=0o755 & ~_umask(), mtime=5),
        Member(name="d/.wh..wh..opq", type=b"0", mode=0),
    ]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class _HashOnly:
    """A sink that keeps nothing, so memory use shows what write_layer holds."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)


def test_big_files_are_streamed_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as handle:
        handle.truncate(64 << 20)
        handle.seek(40 << 20)
        handle.write(b"marker")
    sink = _HashOnly()
    tracemalloc.start()
    try:
        stats = write_layer(tmp_path, sink)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.bytes > 64 << 20
    assert peak < 8 << 20
    assert stats.diff_id == "sha256:" + sink.digest.hexdigest()


def test_long_and_non_ascii_names_round_trip(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    (deep / "caf\u00e9").write_bytes(b"x")
    data, _ = _layer(tmp_path)
    names = [member.name for member in members_of(data)]
    assert names == ["d" * 90, "d" * 90 + "/" + "e" * 90, "d" * 90 + "/" + "e" * 90 + "/caf\u00e9"]


def test_sockets_are_left_out_even_when_hard_linked(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock"))
    os.link(tmp_path / "sock", tmp_path / "sock2")
    data, stats = _layer(tmp_path)
    assert stats.is_empty and members_of(data) == []
