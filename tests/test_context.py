"""builder/context.py: the filtered walk, the stat cache and source checksums."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import xxhash

from builder.context import (
    BuildContext,
    EntryKind,
    SourceNotFound,
    SourceView,
    StatCache,
    expand_source,
    resolve_in_root,
)
from builder.dockerignore import IgnoreRules


def make_tree(root: Path, spec: Mapping[str, str | None]) -> None:
    """``name: text`` makes a file, ``name/: None`` a directory, ``name: "->target"`` a link."""
    for name, value in spec.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if value is not None and value.startswith("->"):
            path.symlink_to(value[2:])
        else:
            path.write_text(value or "")


def context(root: Path, *patterns: str, cache: StatCache | None = None) -> BuildContext:
    return BuildContext(root, IgnoreRules.from_patterns(list(patterns)), stat_cache=cache)


def paths(ctx: BuildContext) -> list[str]:
    return [entry.path for entry in ctx.entries(checksums=False)]


TREE = {
    "Dockerfile": "FROM scratch",
    ".dockerignore": "",
    "a.txt": "a",
    "b.md": "b",
    "sub/c.txt": "c",
    "sub/keep.md": "k",
    "sub/deep/d.txt": "d",
    "logs/x.log": "x",
    "link": "->sub/c.txt",
    "outside": "->/etc/passwd",
}

# (ignore patterns, expected visible paths), in walk order.
WALK_CASES = [
    (
        [],
        [
            ".dockerignore",
            "Dockerfile",
            "a.txt",
            "b.md",
            "link",
            "logs",
            "logs/x.log",
            "outside",
            "sub",
            "sub/c.txt",
            "sub/deep",
            "sub/deep/d.txt",
            "sub/keep.md",
        ],
    ),
    (
        ["*.md", "logs", "Dockerfile", ".dockerignore"],
        [
            "a.txt",
            "link",
            "outside",
            "sub",
            "sub/c.txt",
            "sub/deep",
            "sub/deep/d.txt",
            "sub/keep.md",
        ],
    ),
    (
        ["sub", "!sub/deep/d.txt"],
        [
            ".dockerignore",
            "Dockerfile",
            "a.txt",
            "b.md",
            "link",
            "logs",
            "logs/x.log",
            "outside",
            "sub",
            "sub/deep",
            "sub/deep/d.txt",
        ],
    ),
    (["*", "!sub/*.md"], ["sub", "sub/keep.md"]),
    (["*", "!**/*.txt"], ["a.txt", "sub", "sub/c.txt", "sub/deep", "sub/deep/d.txt"]),
    # fsutil's walk reuses a parent's per-pattern results, so an exception that matched a
    # directory that was not excluded does not re-include what a later pattern excludes
    # below it (patternmatcher.MatchesOrParentMatches would include sub/deep/d.txt).
    (
        ["**/*.txt", "!sub/deep"],
        [
            ".dockerignore",
            "Dockerfile",
            "b.md",
            "link",
            "logs",
            "logs/x.log",
            "outside",
            "sub",
            "sub/deep",
            "sub/keep.md",
        ],
    ),
    (
        ["sub/deep/"],
        [
            ".dockerignore",
            "Dockerfile",
            "a.txt",
            "b.md",
            "link",
            "logs",
            "logs/x.log",
            "outside",
            "sub",
            "sub/c.txt",
            "sub/keep.md",
        ],
    ),
]


@pytest.mark.parametrize(("patterns", "expected"), WALK_CASES)
def test_walk_applies_dockerignore_like_fsutil(
    tmp_path: Path, patterns: list[str], expected: list[str]
) -> None:
    make_tree(tmp_path, TREE)
    assert paths(context(tmp_path, *patterns)) == expected


def test_entries_describe_files_links_and_directories(tmp_path: Path) -> None:
    make_tree(tmp_path, {"f": "hello", "d/": None, "l": "->f"})
    os.chmod(tmp_path / "f", 0o4751)
    os.utime(tmp_path / "f", ns=(1, 1_500_000_000_123_456_789))
    entries = {e.path: e for e in context(tmp_path).entries()}
    f = entries["f"]
    assert (f.kind, f.mode, f.size, f.mtime_ns) == (
        EntryKind.FILE,
        0o4751,
        5,
        1_500_000_000_123_456_789,
    )
    assert f.checksum == xxhash.xxh3_128(b"hello").hexdigest()
    assert (entries["d"].kind, entries["d"].checksum) == (EntryKind.DIR, "")
    assert (entries["l"].kind, entries["l"].link_target, entries["l"].checksum) == (
        EntryKind.SYMLINK,
        "f",
        "",
    )


def test_walk_never_follows_symlinks_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make_tree(outside, {"secret": "s"})
    root = tmp_path / "ctx"
    make_tree(root, {"escape": f"->{outside}", "up": "->../outside"})
    entries = list(context(root).entries())
    assert [(e.path, e.kind) for e in entries] == [
        ("escape", EntryKind.SYMLINK),
        ("up", EntryKind.SYMLINK),
    ]


class OpenCounter:
    """Counts files opened under one directory, through Python's audit hooks."""

    hooked: ClassVar[list[OpenCounter]] = []

    def __init__(self, root: Path) -> None:
        self.prefix = os.fsencode(root)
        self.count = 0

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args[0] is not None:
            path = args[0] if isinstance(args[0], bytes) else os.fsencode(str(args[0]))
            if path.startswith(self.prefix) and os.path.isfile(path):
                self.count += 1


@pytest.fixture
def opens() -> Iterator[Any]:
    # Audit hooks cannot be removed: one hook forwards to the current test's counter.
    if not OpenCounter.hooked:
        OpenCounter.hooked.append(OpenCounter(Path("/nonexistent")))
        sys.addaudithook(lambda event, args: OpenCounter.hooked[0](event, args))

    def start(root: Path) -> OpenCounter:
        OpenCounter.hooked[0] = counter = OpenCounter(root)
        return counter

    yield start
    OpenCounter.hooked[0] = OpenCounter(Path("/nonexistent"))


def test_unchanged_context_is_not_read_again(tmp_path: Path, opens: Any) -> None:
    root = tmp_path / "ctx"
    make_tree(root, {f"d{i % 7}/f{i}": f"content {i}" for i in range(200)})
    db = tmp_path / "state" / "stat.cache"
    counter = opens(root)
    first = list(context(root, cache=StatCache(db, racy_window_ns=0)).entries())
    assert counter.count == 200
    counter = opens(root)
    again = list(context(root, cache=StatCache(db, racy_window_ns=0)).entries())
    assert counter.count == 0
    assert again == first


def test_changed_file_is_read_again_alone(tmp_path: Path, opens: Any) -> None:
    root = tmp_path / "ctx"
    make_tree(root, {f"f{i}": "same size" for i in range(20)})
    db = tmp_path / "stat.cache"
    list(context(root, cache=StatCache(db, racy_window_ns=0)).entries())
    (root / "f3").write_text("SAME SIZE")
    counter = opens(root)
    entries = {e.path: e for e in context(root, cache=StatCache(db, racy_window_ns=0)).entries()}
    assert counter.count == 1
    assert entries["f3"].checksum == xxhash.xxh3_128(b"SAME SIZE").hexdigest()


def test_racily_recent_files_are_not_trusted(tmp_path: Path, opens: Any) -> None:
    root = tmp_path / "ctx"
    make_tree(root, {"fresh": "x"})
    db = tmp_path / "stat.cache"
    list(context(root, cache=StatCache(db, racy_window_ns=3_600 * 10**9)).entries())
    counter = opens(root)
    list(context(root, cache=StatCache(db, racy_window_ns=3_600 * 10**9)).entries())
    assert counter.count == 1


def test_corrupt_or_foreign_cache_file_is_ignored(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx", {"f": "x"})
    db = tmp_path / "stat.cache"
    db.write_bytes(b"pybuild.statcache.v1\n\x05\x00ab")
    entries = list(context(tmp_path / "ctx", cache=StatCache(db, racy_window_ns=0)).entries())
    assert entries[0].checksum == xxhash.xxh3_128(b"x").hexdigest()
    db.write_bytes(b"something else")
    assert list(context(tmp_path / "ctx", cache=StatCache(db)).entries()) == entries


def test_cache_forgets_files_removed_from_the_context(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    make_tree(root, {"a": "1", "b": "2"})
    db = tmp_path / "stat.cache"
    list(context(root, cache=StatCache(db, racy_window_ns=0)).entries())
    size = db.stat().st_size
    (root / "b").unlink()
    list(context(root, cache=StatCache(db, racy_window_ns=0)).entries())
    assert db.stat().st_size < size


def test_cache_is_written_by_rename(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx", {"a": "1"})
    db = tmp_path / "stat.cache"
    list(context(tmp_path / "ctx", cache=StatCache(db, racy_window_ns=0)).entries())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctx", "stat.cache"]


# --- checksum_sources --------------------------------------------------------------------


def digest(root: Path, sources: list[str], *patterns: str, **kwargs: bool) -> str:
    return context(root, *patterns).checksum_sources(sources, **kwargs)


def test_checksum_ignores_mtimes_but_not_content_or_mode(tmp_path: Path) -> None:
    make_tree(tmp_path, {"d/f": "one", "d/g": "two"})
    base = digest(tmp_path, ["d"])
    os.utime(tmp_path / "d" / "f", ns=(0, 0))
    assert digest(tmp_path, ["d"]) == base
    (tmp_path / "d" / "f").write_text("ONE")
    changed = digest(tmp_path, ["d"])
    assert changed != base
    os.chmod(tmp_path / "d" / "f", 0o755)
    assert digest(tmp_path, ["d"]) != changed
    assert digest(tmp_path, ["d"], mode_overridden=True) == digest(
        tmp_path, ["d"], mode_overridden=True
    )


def test_checksum_mode_left_out_when_chmod_overrides(tmp_path: Path) -> None:
    make_tree(tmp_path, {"f": "x"})
    before = digest(tmp_path, ["f"], mode_overridden=True)
    os.chmod(tmp_path / "f", 0o700)
    assert digest(tmp_path, ["f"], mode_overridden=True) == before
    assert digest(tmp_path, ["f"]) != before


def test_checksum_frames_names(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    make_tree(one, {"d/ab": "c"})
    make_tree(two, {"d/a": "bc"})
    assert digest(one, ["d"]) != digest(two, ["d"])
    make_tree(tmp_path / "three", {"d/x": "1", "d/y": "2"})
    make_tree(tmp_path / "four", {"d/y": "1", "d/x": "2"})
    assert digest(tmp_path / "three", ["d"]) != digest(tmp_path / "four", ["d"])


def test_checksum_follows_named_symlink_inside_root(tmp_path: Path) -> None:
    make_tree(tmp_path, {"real": "data", "link": "->real", "abs": "->/real"})
    assert digest(tmp_path, ["link"]) != digest(tmp_path, ["real"])  # the name is hashed too
    (tmp_path / "real").write_text("other")
    assert digest(tmp_path, ["link"]) != digest(tmp_path, ["link"], mode_overridden=True)


def test_checksum_of_ignored_or_missing_source_is_not_found(tmp_path: Path) -> None:
    make_tree(tmp_path, {"secret": "s", "link": "->secret"})
    with pytest.raises(SourceNotFound, match='"/secret": not found'):
        digest(tmp_path, ["secret"], "secret")
    with pytest.raises(SourceNotFound, match='"/link": not found'):
        digest(tmp_path, ["link"], "secret")
    with pytest.raises(SourceNotFound, match='"/nope": not found'):
        digest(tmp_path, ["nope"])


def test_checksum_of_wildcards_and_whole_context(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": "a", "b.txt": "b", "c.md": "c"})
    txt = digest(tmp_path, ["*.txt"])
    (tmp_path / "c.md").write_text("changed")
    assert digest(tmp_path, ["*.txt"]) == txt
    assert digest(tmp_path, ["*.nomatch"]) == digest(tmp_path, ["*.nomatch"])
    whole = digest(tmp_path, ["."])
    (tmp_path / "a.txt").write_text("A")
    assert digest(tmp_path, ["."]) != whole


def test_checksum_leaves_out_local_owners(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    make_tree(tmp_path, {"f": "x"})
    before = digest(tmp_path, ["f"])
    os.chown(tmp_path / "f", 1234, 5678)
    assert digest(tmp_path, ["f"]) == before


# --- source lookup inside a root ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "follow_final", "expected"),
    [
        ("a/b", True, "a/b"),
        ("abs/x", True, "etc/x"),
        ("rel/x", True, "real/x"),
        ("up/x", True, "x"),
        ("../../x", True, "x"),
        ("abs", False, "abs"),
        ("loop/x", True, None),
        ("real/../abs/y", True, "etc/y"),
        ("rel/../f", True, "f"),
    ],
)
def test_resolve_in_root_acts_as_if_chrooted(
    tmp_path: Path, path: str, follow_final: bool, expected: str | None
) -> None:
    make_tree(
        tmp_path,
        {"real/": None, "abs": "->/etc", "rel": "->real", "up": "->../../..", "loop": "->loop"},
    )
    view = SourceView(tmp_path)
    if expected is None:
        with pytest.raises(Exception, match="too many levels"):
            resolve_in_root(path, view.lstat, view.readlink, follow_final=follow_final)
    else:
        assert (
            resolve_in_root(path, view.lstat, view.readlink, follow_final=follow_final) == expected
        )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("*.txt", ["a.txt", "b.txt"]),
        ("sub/*", ["sub/c.txt", "sub/d"]),
        ("*/c.txt", ["sub/c.txt"]),
        ("s?b", ["sub"]),
        ("[ab].txt", ["a.txt", "b.txt"]),
        ("nomatch*", []),
        ("a.txt", ["a.txt"]),
        ("missing", ["missing"]),
        ("../../a.txt", ["a.txt"]),
        ("/sub/../a.txt", ["a.txt"]),
        ("lnk/*", ["sub/c.txt", "sub/d"]),
    ],
)
def test_expand_source_like_resolve_wildcards(
    tmp_path: Path, source: str, expected: list[str]
) -> None:
    make_tree(tmp_path, {"a.txt": "", "b.txt": "", "sub/c.txt": "", "sub/d/": None, "lnk": "->sub"})
    assert [path for path, _ in expand_source(SourceView(tmp_path), source)] == expected


def test_expand_source_with_missing_wildcard_parent_fails(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="lstat /nodir: no such file or directory"):
        expand_source(SourceView(tmp_path), "nodir/*.txt")


def test_socket_and_fifo_are_reported_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        kinds = {e.path: e.kind for e in context(tmp_path).entries()}
    finally:
        sock.close()
    assert kinds == {"fifo": EntryKind.FIFO, "sock": EntryKind.SOCKET}


def test_context_view_hides_ignored_paths(tmp_path: Path) -> None:
    make_tree(tmp_path, {"keep": "k", "drop/x": "x", "drop/y": "y"})
    view = context(tmp_path, "drop", "!drop/y").view()
    assert view.lstat("drop/x") is None
    assert view.lstat("drop/y") is not None
    assert view.listdir("") == ("drop", "keep")
    assert view.listdir("drop") == ("y",)
    assert view.owner == (0, 0)


@pytest.mark.slow
def test_warm_checksum_of_large_context_costs_only_stats(tmp_path: Path, opens: Any) -> None:
    root = tmp_path / "ctx"
    for i in range(5000):
        sub = root / f"dir{i // 500}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{i}").write_bytes(os.urandom(123))
    (root / "big").write_bytes(os.urandom(8 << 20))
    db = tmp_path / "stat.cache"
    start = time.perf_counter()
    cold = context(root, cache=StatCache(db, racy_window_ns=0)).checksum_sources(["."])
    cold_seconds = time.perf_counter() - start
    counter = opens(root)
    start = time.perf_counter()
    warm = context(root, cache=StatCache(db, racy_window_ns=0)).checksum_sources(["."])
    warm_seconds = time.perf_counter() - start
    assert warm == cold
    assert counter.count == 0
    assert warm_seconds < cold_seconds
