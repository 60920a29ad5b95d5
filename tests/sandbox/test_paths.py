"""Paths inside a root: symlinks resolve as if the root were "/", and never lead out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.sandbox import paths


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "etc" / "passwd").write_text("p")
    return tmp_path


@pytest.mark.parametrize(("path", "expected"), [
    ("/", ""),
    ("/etc/passwd", "etc/passwd"),
    ("etc//./passwd", "etc/passwd"),
    ("/../../etc/passwd", "etc/passwd"),
    ("/missing/../etc", "etc"),
    ("/missing/deeper", "missing/deeper"),
])
def test_plain_paths(root: Path, path: str, expected: str) -> None:
    assert paths.resolve(str(root), path) == expected


def test_absolute_symlink_restarts_at_the_root(root: Path) -> None:
    (root / "lib").symlink_to("/usr/lib")
    (root / "escape").symlink_to("/etc")
    assert paths.resolve(str(root), "/lib/x") == "usr/lib/x"
    assert paths.resolve(str(root), "/escape/passwd") == "etc/passwd"


def test_relative_symlink_dotdot_stops_at_the_root(root: Path) -> None:
    (root / "usr" / "up").symlink_to("../../../../../etc")
    assert paths.resolve(str(root), "/usr/up/passwd") == "etc/passwd"


def test_dangling_symlink_resolves_to_its_target(root: Path) -> None:
    (root / "etc" / "resolv.conf").symlink_to("../run/resolved/stub.conf")
    assert paths.resolve(str(root), "/etc/resolv.conf") == "run/resolved/stub.conf"


def test_symlink_loop_is_eloop(root: Path) -> None:
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with pytest.raises(OSError) as caught:
        paths.resolve(str(root), "/a")
    assert caught.value.errno == 40


def test_open_directory_refuses_a_symlink_swapped_in(root: Path) -> None:
    relative = paths.resolve(str(root), "/usr/lib")
    (root / "usr" / "lib").rmdir()
    (root / "usr" / "lib").symlink_to("/")
    with pytest.raises(OSError):
        os.close(paths.open_directory(str(root), relative))


def test_open_directory_creates_missing_directories(root: Path) -> None:
    os.close(paths.open_directory(str(root), "a/b/c", create=True))
    assert (root / "a" / "b" / "c").is_dir()


def test_read_file_follows_links_inside_only(root: Path, tmp_path_factory:
                                             pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret"
    outside.write_text("host secret")
    (root / "link").symlink_to(outside)
    assert paths.read_file(str(root), "/link", limit=100) is None
    (root / "good").symlink_to("etc/passwd")
    assert paths.read_file(str(root), "/good", limit=100) == b"p"


def test_read_file_refuses_what_is_not_a_regular_file(root: Path) -> None:
    os.mkfifo(root / "fifo")
    assert paths.read_file(str(root), "/fifo", limit=100) is None
    assert paths.read_file(str(root), "/etc", limit=100) is None
    assert paths.read_file(str(root), "/", limit=100) is None


def test_read_file_has_a_limit(root: Path) -> None:
    (root / "big").write_bytes(b"x" * 101)
    with pytest.raises(OSError, match="larger than 100 bytes"):
        paths.read_file(str(root), "/big", limit=100)
