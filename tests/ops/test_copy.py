"""builder/ops/copy.py: COPY/ADD semantics, asserted on the resulting trees."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from builder.context import BuildContext, SourceNotFound, SourceView
from builder.dockerignore import IgnoreRules
from builder.errors import BadFlag
from builder.ops.copy import Chmod, CopyError, CopyRequest, InlineFile, copy_into, parse_chmod

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set owners")

Spec = dict[str, Any]


def make_tree(root: Path, spec: Spec) -> None:
    """``"d/"``: directory 0755; ``"f": "text"`` or ``("text", mode)``: file;
    ``"l": "->target"``: symlink.  Modes are set exactly (no umask)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, value in spec.items():
        path = root / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
            os.chmod(path, value if isinstance(value, int) else 0o755)
        elif isinstance(value, str) and value.startswith("->"):
            path.symlink_to(value[2:])
        else:
            text, mode = value if isinstance(value, tuple) else (value, 0o644)
            path.write_text(text)
            os.chmod(path, mode)


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path below ``root``: ("d", mode), ("f", mode, text), ("l", target) or ("p", kind)."""
    tree: dict[str, tuple[Any, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            rel = str(path.relative_to(root))
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                tree[rel] = ("l", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                tree[rel] = ("d", stat.S_IMODE(info.st_mode))
            elif stat.S_ISREG(info.st_mode):
                tree[rel] = ("f", stat.S_IMODE(info.st_mode), path.read_text())
            else:
                tree[rel] = ("p", stat.S_IFMT(info.st_mode))
    return tree


def owners(root: Path) -> dict[str, tuple[int, int]]:
    result = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            info = os.lstat(Path(directory) / name)
            result[str((Path(directory) / name).relative_to(root))] = (info.st_uid, info.st_gid)
    return result


def run_copy(
    tmp_path: Path,
    source: Spec,
    request: CopyRequest,
    *,
    target: Spec | None = None,
    ignore: tuple[str, ...] = (),
    resolve: Any = None,
) -> Path:
    make_tree(tmp_path / "ctx", source)
    root = tmp_path / "root"
    make_tree(root, target or {})
    view = BuildContext(tmp_path / "ctx", IgnoreRules.from_patterns(list(ignore))).view()
    copy_into(root, view, request, resolve_owner=resolve)
    return root


SOURCE: Spec = {
    "a.txt": "a",
    "b.txt": "b",
    "run.sh": ("#!/bin/sh", 0o755),
    "dir/": 0o750,
    "dir/x": "x",
    "dir/sub/": None,
    "dir/sub/y": "y",
    "dir/skip.log": "log",
    "link": "->a.txt",
    "dir/inner-link": "->../b.txt",
}
DIR_TREE = {
    "x": ("f", 0o644, "x"),
    "sub": ("d", 0o755),
    "sub/y": ("f", 0o644, "y"),
    "skip.log": ("f", 0o644, "log"),
    "inner-link": ("l", "../b.txt"),
}


def under(prefix: str, tree: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    return {f"{prefix}/{k}": v for k, v in tree.items()}


# (id, request, target prepared, expected tree)
COPY_CASES: list[tuple[str, dict[str, Any], Spec, dict[str, tuple[Any, ...]]]] = [
    (
        "file into new dir by slash",
        {"sources": ("a.txt",), "destination": "/app/"},
        {},
        {"app": ("d", 0o755), "app/a.txt": ("f", 0o644, "a")},
    ),
    (
        "file to new name",
        {"sources": ("a.txt",), "destination": "/app/renamed"},
        {},
        {"app": ("d", 0o755), "app/renamed": ("f", 0o644, "a")},
    ),
    (
        "file into existing dir without slash",
        {"sources": ("a.txt",), "destination": "/app"},
        {"app/": 0o700},
        {"app": ("d", 0o700), "app/a.txt": ("f", 0o644, "a")},
    ),
    (
        "file over existing file",
        {"sources": ("b.txt",), "destination": "/app/a"},
        {"app/a": "old"},
        {"app": ("d", 0o755), "app/a": ("f", 0o644, "b")},
    ),
    (
        "directory copies its contents",
        {"sources": ("dir",), "destination": "/app"},
        {},
        {"app": ("d", 0o755), **under("app", DIR_TREE)},
    ),
    (
        "directory with trailing slash source",
        {"sources": ("dir/",), "destination": "/app/"},
        {},
        {"app": ("d", 0o755), **under("app", DIR_TREE)},
    ),
    (
        "directory merges into existing",
        {"sources": ("dir",), "destination": "/app"},
        {"app/": 0o711, "app/old": "o"},
        {"app": ("d", 0o711), "app/old": ("f", 0o644, "o"), **under("app", DIR_TREE)},
    ),
    (
        "whole context",
        {"sources": (".",), "destination": "/c/"},
        {},
        {
            "c": ("d", 0o755),
            "c/a.txt": ("f", 0o644, "a"),
            "c/b.txt": ("f", 0o644, "b"),
            "c/run.sh": ("f", 0o755, "#!/bin/sh"),
            "c/dir": ("d", 0o750),
            **under("c/dir", DIR_TREE),
            "c/link": ("l", "a.txt"),
        },
    ),
    (
        "wildcard into dir",
        {"sources": ("*.txt",), "destination": "/w/"},
        {},
        {"w": ("d", 0o755), "w/a.txt": ("f", 0o644, "a"), "w/b.txt": ("f", 0o644, "b")},
    ),
    (
        "wildcard matching one file to a name",
        {"sources": ("a.*",), "destination": "/one"},
        {},
        {"one": ("f", 0o644, "a")},
    ),
    (
        "wildcard in a directory part",
        {"sources": ("d*/sub/y",), "destination": "/w/"},
        {},
        {"w": ("d", 0o755), "w/y": ("f", 0o644, "y")},
    ),
    (
        "empty wildcard is not an error",
        {"sources": ("a.txt", "nomatch*"), "destination": "/"},
        {},
        {"a.txt": ("f", 0o644, "a")},
    ),
    (
        "relative destination uses workdir",
        {"sources": ("a.txt",), "destination": "rel/", "workdir": "/work"},
        {},
        {"work": ("d", 0o755), "work/rel": ("d", 0o755), "work/rel/a.txt": ("f", 0o644, "a")},
    ),
    (
        "dot destination is the workdir",
        {"sources": ("a.txt",), "destination": ".", "workdir": "/w"},
        {},
        {"w": ("d", 0o755), "w/a.txt": ("f", 0o644, "a")},
    ),
    (
        "empty destination is the workdir",
        {"sources": ("a.txt",), "destination": "", "workdir": "/w"},
        {},
        {"w": ("d", 0o755), "w/a.txt": ("f", 0o644, "a")},
    ),
    (
        "named symlink is followed",
        {"sources": ("link",), "destination": "/l"},
        {},
        {"l": ("f", 0o644, "a")},
    ),
    (
        "wildcard-matched symlink is followed",
        {"sources": ("lin*",), "destination": "/l/"},
        {},
        {"l": ("d", 0o755), "l/link": ("f", 0o644, "a")},
    ),
    (
        "destination .. cannot climb out",
        {"sources": ("a.txt",), "destination": "../../../up"},
        {},
        {"up": ("f", 0o644, "a")},
    ),
    (
        "source .. cannot climb out",
        {"sources": ("../../a.txt",), "destination": "/s"},
        {},
        {"s": ("f", 0o644, "a")},
    ),
    (
        "exclude inside a directory",
        {"sources": ("dir",), "destination": "/e", "excludes": ("*.log",)},
        {},
        {"e": ("d", 0o755), **under("e", {k: v for k, v in DIR_TREE.items() if k != "skip.log"})},
    ),
    (
        "exclude a directory with an exception",
        {"sources": ("dir",), "destination": "/e", "excludes": ("sub", "!sub/y")},
        {},
        {"e": ("d", 0o755), **under("e", DIR_TREE)},
    ),
    (
        "exclude filters wildcard matches",
        {"sources": ("*",), "destination": "/e/", "excludes": ("*.txt", "dir", "link")},
        {},
        {"e": ("d", 0o755), "e/run.sh": ("f", 0o755, "#!/bin/sh")},
    ),
    (
        "parents without pivot",
        {"sources": ("dir/sub/y",), "destination": "/p/", "parents": True},
        {},
        {
            "p": ("d", 0o755),
            "p/dir": ("d", 0o750),
            "p/dir/sub": ("d", 0o755),
            "p/dir/sub/y": ("f", 0o644, "y"),
        },
    ),
    (
        "parents with pivot",
        {"sources": ("dir/./sub/y",), "destination": "/p/", "parents": True},
        {},
        {"p": ("d", 0o755), "p/sub": ("d", 0o755), "p/sub/y": ("f", 0o644, "y")},
    ),
    (
        "parents with wildcards",
        {"sources": ("**/*.txt",), "destination": "/p/", "parents": True},
        {},
        {"p": ("d", 0o755), "p/a.txt": ("f", 0o644, "a"), "p/b.txt": ("f", 0o644, "b")},
    ),
    (
        "heredoc",
        {"inline_files": (InlineFile("hello", b"hi\n"),), "destination": "/h/"},
        {},
        {"h": ("d", 0o755), "h/hello": ("f", 0o644, "hi\n")},
    ),
    (
        "heredoc to a file name",
        {"inline_files": (InlineFile("EOF", b"x"),), "destination": "/h"},
        {},
        {"h": ("f", 0o644, "x")},
    ),
    (
        "heredoc with chmod",
        {"inline_files": (InlineFile("s", b"x"),), "destination": "/h/", "chmod": "755"},
        {},
        {"h": ("d", 0o755), "h/s": ("f", 0o755, "x")},
    ),
    (
        "octal chmod on files, dirs and created parents",
        {"sources": ("dir",), "destination": "/m/n", "chmod": "0640"},
        {},
        {
            "m": ("d", 0o640),
            "m/n": ("d", 0o640),
            **under(
                "m/n",
                {
                    "x": ("f", 0o640, "x"),
                    "sub": ("d", 0o640),
                    "sub/y": ("f", 0o640, "y"),
                    "skip.log": ("f", 0o640, "log"),
                    "inner-link": ("l", "../b.txt"),
                },
            ),
        },
    ),
    (
        "symbolic chmod with X",
        {
            "sources": (".",),
            "destination": "/s/",
            "chmod": "u=rwX,go=rX",
            "excludes": ("dir", "link"),
        },
        {},
        {
            "s": ("d", 0o755),
            "s/a.txt": ("f", 0o644, "a"),
            "s/b.txt": ("f", 0o644, "b"),
            "s/run.sh": ("f", 0o755, "#!/bin/sh"),
        },
    ),
    # The destination itself is resolved as if chrooted, final symlink included (BuildKit)...
    (
        "destination symlink is followed inside the root",
        {"sources": ("a.txt",), "destination": "/t/target"},
        {"t/target": "->/etc/shadow-test"},
        {
            "t": ("d", 0o755),
            "t/target": ("l", "/etc/shadow-test"),
            "etc": ("d", 0o755),
            "etc/shadow-test": ("f", 0o644, "a"),
        },
    ),
    # ...but below it, an existing symlink is replaced, never written through.
    (
        "file inside a copied directory replaces a symlink",
        {"sources": ("dir",), "destination": "/app"},
        {"app/x": "->/etc/passwd"},
        {"app": ("d", 0o755), **under("app", DIR_TREE)},
    ),
]


@pytest.mark.parametrize(
    ("request_args", "target", "expected"),
    [case[1:] for case in COPY_CASES],
    ids=[case[0] for case in COPY_CASES],
)
def test_copy(
    tmp_path: Path, request_args: dict[str, Any], target: Spec, expected: dict[str, tuple[Any, ...]]
) -> None:
    root = run_copy(tmp_path, SOURCE, CopyRequest(**request_args), target=target)
    assert snapshot(root) == expected


def test_destination_through_absolute_symlink_stays_in_target(tmp_path: Path) -> None:
    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    root = run_copy(
        tmp_path,
        SOURCE,
        CopyRequest(sources=("a.txt",), destination="/conf/x/"),
        target={"etc/": None, "conf": "->/etc"},
    )
    assert snapshot(root)["etc/x/a.txt"] == ("f", 0o644, "a")
    assert not (Path("/etc") / "x" / "a.txt").exists()
    root2 = tmp_path / "r2"
    make_tree(root2, {"conf": f"->{host_etc}"})
    copy_into(
        root2, SourceView(tmp_path / "ctx"), CopyRequest(sources=("a.txt",), destination="/conf/")
    )
    assert list(host_etc.iterdir()) == []
    assert (root2 / host_etc.relative_to("/") / "a.txt").read_text() == "a"


def test_symlink_destination_file_is_overwritten_inside_root(tmp_path: Path) -> None:
    # BuildKit resolves the whole destination: COPY onto a link to a file replaces that file.
    root = run_copy(
        tmp_path,
        SOURCE,
        CopyRequest(sources=("b.txt",), destination="/cfg"),
        target={"etc/real": "old", "cfg": "->/etc/real"},
    )
    assert snapshot(root)["etc/real"] == ("f", 0o644, "b")
    assert snapshot(root)["cfg"] == ("l", "/etc/real")


def test_named_source_symlink_out_of_context_does_not_read_host_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    with pytest.raises(SourceNotFound, match='"/escape": not found'):
        run_copy(
            tmp_path, {"escape": f"->{secret}"}, CopyRequest(sources=("escape",), destination="/x")
        )
    # resolved inside the context root: a file at ctx/<secret path> is what gets copied
    inside = tmp_path / "ctx" / secret.relative_to("/")
    inside.parent.mkdir(parents=True)
    inside.write_text("context copy")
    root = tmp_path / "root2"
    root.mkdir()
    view = BuildContext(tmp_path / "ctx", IgnoreRules.from_patterns([])).view()
    copy_into(root, view, CopyRequest(sources=("escape",), destination="/x"))
    assert (root / "x").read_text() == "context copy"


def test_relative_escape_symlink_is_clamped_at_context_root(tmp_path: Path) -> None:
    root = run_copy(
        tmp_path,
        {"a.txt": "a", "up": "->../../../../a.txt"},
        CopyRequest(sources=("up",), destination="/u"),
    )
    assert (root / "u").read_text() == "a"


def test_symlinks_inside_a_copied_directory_stay_symlinks(tmp_path: Path) -> None:
    root = run_copy(
        tmp_path,
        {"d/abs": "->/etc/passwd", "d/rel": "->../../x"},
        CopyRequest(sources=("d",), destination="/d"),
    )
    assert snapshot(root) == {
        "d": ("d", 0o755),
        "d/abs": ("l", "/etc/passwd"),
        "d/rel": ("l", "../../x"),
    }


def test_dockerignored_files_never_appear(tmp_path: Path) -> None:
    root = run_copy(
        tmp_path,
        SOURCE,
        CopyRequest(sources=(".",), destination="/c"),
        ignore=("*.txt", "dir/sub", "Dockerfile"),
    )
    assert sorted(snapshot(root)) == [
        "c",
        "c/dir",
        "c/dir/inner-link",
        "c/dir/skip.log",
        "c/dir/x",
        "c/link",
        "c/run.sh",
    ]
    with pytest.raises(SourceNotFound, match='"/a.txt": not found'):
        run_copy(
            tmp_path / "again",
            SOURCE,
            CopyRequest(sources=("a.txt",), destination="/"),
            ignore=("a.txt",),
        )
    with pytest.raises(SourceNotFound, match='"/link": not found'):
        run_copy(
            tmp_path / "link",
            SOURCE,
            CopyRequest(sources=("link",), destination="/"),
            ignore=("a.txt",),
        )


@pytest.mark.parametrize(
    ("request_args", "error", "message"),
    [
        ({"sources": ("nope",), "destination": "/"}, SourceNotFound, '"/nope": not found'),
        (
            {"sources": ("nodir/*.txt",), "destination": "/"},
            SourceNotFound,
            "lstat /nodir: no such file or directory",
        ),
        (
            {"sources": ("a.txt", "b.txt"), "destination": "/file"},
            CopyError,
            "When using COPY with more than one source file, the destination must be a directory",
        ),
        ({"sources": ("*.txt",), "destination": "/file"}, CopyError, "more than one source file"),
        (
            {"sources": ("a.txt",), "inline_files": (InlineFile("x", b""),), "destination": "/f"},
            CopyError,
            "more than one source file",
        ),
        (
            {"sources": ("dir",), "destination": "/file"},
            CopyError,
            "cannot copy to non-directory: /file",
        ),
        ({"sources": ("a.txt",), "destination": "/adir/sub"}, None, None),
        (
            {"sources": ("a.txt",), "destination": "/file/x"},
            CopyError,
            "mkdir /file: not a directory",
        ),
        (
            {"sources": ("a.txt",), "destination": "/", "chmod": "64a"},
            BadFlag,
            "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777",
        ),
        (
            {"sources": ("a.txt",), "destination": "/", "chmod": "10000"},
            BadFlag,
            "between 0 and 07777",
        ),
        ({"sources": ("a.txt",), "destination": "/", "chmod": "u+q"}, BadFlag, "invalid syntax"),
        (
            {"sources": ("x/./nope",), "destination": "/", "parents": True},
            SourceNotFound,
            '"/x/nope": not found',
        ),
        (
            {"sources": ("a.txt",), "destination": "/", "excludes": ("[",)},
            BadFlag,
            "invalid --exclude",
        ),
    ],
)
def test_copy_errors(
    tmp_path: Path, request_args: dict[str, Any], error: type[Exception] | None, message: str | None
) -> None:
    target = {"file": "f", "adir/": None}
    if error is None:
        run_copy(tmp_path, SOURCE, CopyRequest(**request_args), target=target)
        return
    with pytest.raises(
        error, match=message.replace("(", r"\(").replace(".", r"\.") if message else None
    ):
        run_copy(tmp_path, SOURCE, CopyRequest(**request_args), target=target)


def test_multiple_sources_into_existing_directory_without_slash(tmp_path: Path) -> None:
    root = run_copy(
        tmp_path,
        SOURCE,
        CopyRequest(sources=("a.txt", "b.txt"), destination="/d"),
        target={"d/": None},
    )
    assert sorted(snapshot(root)) == ["d", "d/a.txt", "d/b.txt"]


def test_directory_is_never_written_through_an_existing_symlink(tmp_path: Path) -> None:
    with pytest.raises(CopyError, match="cannot copy to non-directory: /app/sub"):
        run_copy(
            tmp_path,
            SOURCE,
            CopyRequest(sources=("dir",), destination="/app"),
            target={"app/sub": "->/etc"},
        )
    assert not (tmp_path / "root" / "etc").exists()


def test_file_cannot_replace_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CopyError, match="cannot replace to directory /d/a.txt with file"):
        run_copy(
            tmp_path,
            SOURCE,
            CopyRequest(sources=("a.txt",), destination="/d/"),
            target={"d/a.txt/": None},
        )


@needs_root
def test_context_files_become_root_owned_and_chown_applies_everywhere(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx", SOURCE)
    for path in (tmp_path / "ctx").rglob("*"):
        os.lchown(path, 1000, 1000)
    view = BuildContext(tmp_path / "ctx", IgnoreRules.from_patterns([])).view()
    root = tmp_path / "root"
    make_tree(root, {"existing/": None})
    os.lchown(root / "existing", 7, 7)
    copy_into(root, view, CopyRequest(sources=("dir",), destination="/plain"))
    assert set(owners(root / "plain").values()) == {(0, 0)}
    calls = []

    def resolve(spec: str) -> tuple[int, int]:
        calls.append(spec)
        return (123, 456)

    copy_into(
        root,
        view,
        CopyRequest(sources=("dir", "a.txt"), destination="/existing/new/deep/", chown="app:staff"),
        resolve_owner=resolve,
    )
    assert calls == ["app:staff"]
    tree = owners(root / "existing")
    assert set(tree.values()) == {(123, 456)}
    assert os.lstat(root / "existing").st_uid == 7


@needs_root
def test_copy_from_a_stage_keeps_owners(tmp_path: Path) -> None:
    make_tree(tmp_path / "stage", {"dir/f": "f", "dir/l": "->f"})
    os.lchown(tmp_path / "stage" / "dir" / "f", 100, 200)
    os.lchown(tmp_path / "stage" / "dir" / "l", 101, 201)
    root = tmp_path / "root"
    root.mkdir()
    copy_into(
        root, SourceView(tmp_path / "stage"), CopyRequest(sources=("/dir",), destination="/d")
    )
    assert owners(root) == {"d": (0, 0), "d/f": (100, 200), "d/l": (101, 201)}


def test_modes_times_and_setid_bits_are_kept(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx", {"d/": 0o2775, "d/suid": ("x", 0o4755), "d/sticky/": 0o1777})
    os.utime(tmp_path / "ctx" / "d" / "suid", ns=(1_000_000_123, 1_600_000_000_987_654_321))
    os.utime(tmp_path / "ctx" / "d" / "sticky", ns=(5, 1_500_000_000_000_000_001))
    root = tmp_path / "root"
    root.mkdir()
    view = BuildContext(tmp_path / "ctx", IgnoreRules.from_patterns([])).view()
    copy_into(root, view, CopyRequest(sources=(".",), destination="/"))
    assert stat.S_IMODE(os.lstat(root / "d").st_mode) == 0o2775
    suid = os.lstat(root / "d" / "suid")
    assert (stat.S_IMODE(suid.st_mode), suid.st_mtime_ns) == (0o4755, 1_600_000_000_987_654_321)
    sticky = os.lstat(root / "d" / "sticky")
    assert (stat.S_IMODE(sticky.st_mode), sticky.st_mtime_ns) == (0o1777, 1_500_000_000_000_000_001)


def test_hardlinks_are_kept_within_one_copy_but_never_shared_with_the_source(
    tmp_path: Path,
) -> None:
    make_tree(tmp_path / "ctx", {"d/a": "same"})
    os.link(tmp_path / "ctx" / "d" / "a", tmp_path / "ctx" / "d" / "b")
    root = tmp_path / "root"
    root.mkdir()
    copy_into(root, SourceView(tmp_path / "ctx"), CopyRequest(sources=("d",), destination="/d"))
    a, b = os.lstat(root / "d" / "a"), os.lstat(root / "d" / "b")
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert a.st_ino != os.lstat(tmp_path / "ctx" / "d" / "a").st_ino
    (root / "d" / "a").write_text("changed")
    assert (tmp_path / "ctx" / "d" / "a").read_text() == "same"


def test_special_files(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.mkfifo(ctx / "fifo", 0o640)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ctx / "sock"))
    try:
        root = tmp_path / "root"
        root.mkdir()
        copy_into(
            root,
            BuildContext(ctx, IgnoreRules.from_patterns([])).view(),
            CopyRequest(sources=(".",), destination="/"),
        )
    finally:
        sock.close()
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(root / "fifo").st_mode) == 0o640
    # BuildKit's context transfer turns sockets into empty regular files
    assert stat.S_ISREG(os.lstat(root / "sock").st_mode)
    assert (root / "sock").read_bytes() == b""


def test_add_unpacks_local_archives_by_content(tmp_path: Path) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        info = tarfile.TarInfo("inside/file")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    make_tree(tmp_path / "ctx", {"notes.tar.gz": "not really an archive"})
    (tmp_path / "ctx" / "payload.bin").write_bytes(data.getvalue())
    root = tmp_path / "root"
    root.mkdir()
    view = SourceView(tmp_path / "ctx")
    copy_into(
        root,
        view,
        CopyRequest(
            sources=("payload.bin", "notes.tar.gz"), destination="/x/", unpack=True, keyword="ADD"
        ),
    )
    assert snapshot(root) == {
        "x": ("d", 0o755),
        "x/inside": ("d", 0o755),
        "x/inside/file": ("f", 0o644, "hi"),
        "x/notes.tar.gz": ("f", 0o644, "not really an archive"),
    }
    chmodded = tmp_path / "chmodded"
    chmodded.mkdir()
    copy_into(
        chmodded,
        view,
        CopyRequest(sources=("payload.bin",), destination="/y/z", unpack=True, chmod="700"),
    )
    assert snapshot(chmodded) == {
        "y": ("d", 0o755),
        "y/z": ("d", 0o755),
        "y/z/inside": ("d", 0o755),
        "y/z/inside/file": ("f", 0o644, "hi"),
    }
    plain = tmp_path / "plain"
    plain.mkdir()
    copy_into(plain, view, CopyRequest(sources=("payload.bin",), destination="/p"))
    assert stat.S_ISREG(os.lstat(plain / "p").st_mode)


@pytest.mark.parametrize(
    ("text", "mode", "is_dir", "expected"),
    [
        ("755", 0o600, False, 0o755),
        ("0", 0o777, True, 0),
        ("4755", 0o644, False, 0o4755),
        ("go-w", 0o777, False, 0o755),
        ("u=rw,g=r,o=r", 0o777, False, 0o644),
        ("a+X", 0o600, True, 0o711),
        ("a+X", 0o600, False, 0o600),
        ("a+X", 0o700, False, 0o711),
        ("+x", 0o644, False, 0o755),
        ("u+s", 0o755, False, 0o4755),
        ("g+s", 0o755, True, 0o2755),
        ("o+s", 0o755, False, 0o755),
        ("+t", 0o755, True, 0o1755),
        ("g=u", 0o640, False, 0o660),
        ("go=u-w", 0o750, False, 0o755),
        ("u=rwX,go=rX", 0o600, True, 0o755),
        ("u=rwX,go=rX", 0o700, False, 0o755),
        ("u=rwX,go=rX", 0o600, False, 0o644),
        ("a=", 0o4777, False, 0),
        ("u-x,g+w", 0o755, False, 0o675),
    ],
)
def test_chmod_forms(text: str, mode: int, is_dir: bool, expected: int) -> None:
    parsed = parse_chmod(text)
    assert isinstance(parsed, Chmod)
    assert oct(parsed.apply(mode, is_dir=is_dir)) == oct(expected)


# -- --chown: BuildKit's COPY rules ---------------------------------------------------------

PASSWD_ROOT: Spec = {
    "etc/passwd": "root:x:0:0::/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\n"
                  "odd:x:7\n",
    "etc/group": "root:x:0:\nstaff:x:50:app\napp:x:1001:\n",
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0", (0, 0)),
        ("root", (0, 0)),
        ("root:root", (0, 0)),
        ("4242", (4242, 4242)),  # a number alone is also the group (USER would say gid 0)
        ("4242:7", (4242, 7)),
        ("app", (1000, 1001)),  # a name alone takes the passwd entry's primary group
        ("app:staff", (1000, 50)),
        ("app:9", (1000, 9)),
        ("5:staff", (5, 50)),
        ("odd", (7, 0)),  # a short record reads its missing fields as 0, as runc does
    ],
)
def test_resolve_chown(tmp_path: Path, spec: str, expected: tuple[int, int]) -> None:
    from builder.ops.chown import resolve_chown

    make_tree(tmp_path, PASSWD_ROOT)
    assert resolve_chown(tmp_path, spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ghost", "unable to find user ghost: no matching entries in passwd file"),
        ("app:ghosts", "unable to find group ghosts: no matching entries in group file"),
        (":staff", "unable to find user : no matching entries"),
        ("99999999999", "id 99999999999 is out of range"),
    ],
)
def test_resolve_chown_errors(tmp_path: Path, spec: str, message: str) -> None:
    from builder.ops.chown import resolve_chown

    make_tree(tmp_path, PASSWD_ROOT)
    with pytest.raises(CopyError, match=message):
        resolve_chown(tmp_path, spec)


def test_resolve_chown_without_a_root_takes_only_numbers(tmp_path: Path) -> None:
    from builder.ops.chown import resolve_chown

    assert resolve_chown(None, "12:34") == (12, 34)
    assert resolve_chown(None, "root") == (0, 0)
    with pytest.raises(CopyError, match="names cannot be resolved by a --link copy"):
        resolve_chown(None, "app")
    # A root without passwd or group files: names are not found, numbers need no files.
    assert resolve_chown(tmp_path, "5") == (5, 5)
    with pytest.raises(CopyError, match="unable to find user app"):
        resolve_chown(tmp_path, "app")


def test_passwd_symlink_is_read_inside_the_root(tmp_path: Path) -> None:
    from builder.ops.chown import resolve_chown

    make_tree(tmp_path / "root", {"etc/passwd": "->/../../../../etc/fake", "etc/fake": "me:x:3:4\n"})
    assert resolve_chown(tmp_path / "root", "me") == (3, 4)


# -- the frontend's --link --chown check ----------------------------------------------------


def _copy_instruction(line: str) -> Any:
    """The planned (so expanded) step of ``line``, after ``ARG U=app``."""
    from builder.plan.planner import PlanRequest, plan_build

    graph = plan_build(f"FROM scratch\nARG U=app\n{line}\n".encode(), PlanRequest(),
                       lambda name, instruction: None)  # type: ignore[arg-type,return-value]
    return graph.stages[-1].steps[-1]


@pytest.mark.parametrize(
    ("line", "linked"),
    [
        ("COPY --link --chown=1000:50 f /f", True),
        ("COPY --link --chown=root f /f", True),
        ("COPY --link --chown=root:0 f /f", True),
        ("COPY --link f /f", True),
        ("ADD --link --chown=7 f /f", True),
        ("COPY --link --chmod=600 --chown=app f /f", False),  # BuildKit does not link then
        ("COPY --chown=app f /f", False),
        ("COPY --link=false --chown=app f /f", False),
        ("RUN true", False),
    ],
)
def test_which_steps_link(line: str, linked: bool) -> None:
    assert _copy_instruction(line).linked is linked


@pytest.mark.parametrize(
    "line",
    ["COPY --link --chown=app f /f", "COPY --link --chown=0:staff f /f",
     "ADD --link --chown=$U f /f", "COPY --link --chown=:50 f /f"],
)
def test_link_refuses_chown_names_at_plan_time(line: str) -> None:
    with pytest.raises(BadFlag, match="cannot be resolved with --link") as caught:
        _copy_instruction(line)
    assert caught.value.location is not None and caught.value.location.start_line == 3


# -- --link in the solver: a key without the parent, a state chained through it -------------


def _solve_link(tmp_path: Path, text: str, executor: Any) -> Any:
    from builder.plan.planner import PlanRequest, plan_build
    from builder.solver import Solver
    from cache.index import CacheIndex
    from tests.fakes import SilentProgress

    graph = plan_build(text.encode(), PlanRequest(), lambda n, i: None)  # type: ignore[arg-type,return-value]
    solver = Solver(executor=executor, index=CacheIndex(tmp_path / "cache.db"),
                    progress=SilentProgress())
    states = solver.solve(graph)
    return solver, states


def test_link_step_hits_after_a_parent_change_and_later_steps_do_not(tmp_path: Path) -> None:
    from tests.fakes import CountingExecutor

    text = "FROM scratch\nRUN echo {}\nCOPY --link a /a\nCOPY b /b\nRUN after\n"
    executor = CountingExecutor()
    first, first_states = _solve_link(tmp_path, text.format(1), executor)
    executor.executed.clear()
    second, second_states = _solve_link(tmp_path, text.format(2), executor)
    # The linked COPY hits; the plain COPY and the RUN after it chain through the change.
    assert executor.executed == ["RUN echo 2", "COPY b /b", "RUN after"]
    keys = {record[0]: record[1] for record in first.stats.records}
    again = {record[0]: record[1] for record in second.stats.records}
    link_ids = [step_id for step_id in keys if step_id in again and keys[step_id] == again[step_id]]
    assert len(link_ids) == 1
    assert first_states[0].key != second_states[0].key
    # The linked layer is the same layer in both images.
    assert first_states[0].layers[1] == second_states[0].layers[1]
    assert first_states[0].layers[0] != second_states[0].layers[0]


def test_link_key_ignores_the_parent_but_not_the_workdir_or_sources(tmp_path: Path) -> None:
    from builder.plan.planner import PlanRequest, plan_build
    from builder.solver import chained_key, step_key

    def step(text: str) -> Any:
        graph = plan_build(text.encode(), PlanRequest(), lambda n, i: None)  # type: ignore[arg-type,return-value]
        return graph.stages[-1].steps[-1]

    linked = step("FROM scratch\nCOPY --link a rel/\n")
    assert step_key(linked, "p1", "d") == step_key(linked, "p2", "d")
    assert step_key(linked, "p1", "d") != step_key(linked, "p1", "other-digest")
    elsewhere = step("FROM scratch\nWORKDIR /w\nCOPY --link a rel/\n")
    assert step_key(elsewhere, "p1", "d") != step_key(linked, "p1", "d")
    assert chained_key(linked, "p1", "k") != chained_key(linked, "p2", "k")
    plain = step("FROM scratch\nCOPY a rel/\n")
    assert step_key(plain, "p1", "d") != step_key(plain, "p2", "d")
    assert chained_key(plain, "p1", "k") == "k"


# -- the digest of a filtered copy ----------------------------------------------------------


def _filtered(tmp_path: Path, sources: tuple[str, ...], **kw: Any) -> str:
    from builder.ops.copy_digest import checksum_filtered_sources

    view = BuildContext(tmp_path / "ctx", IgnoreRules.from_patterns([])).view()
    return checksum_filtered_sources(view, sources, **kw)


FILTER_SOURCE: Spec = {
    "src/a.txt": "a", "src/x/b.txt": "b", "src/x/c.log": "c", "src/x/y/d.txt": "d",
    "top.md": "m", "top.txt": "t", "link": "->src/a.txt",
}


@pytest.mark.parametrize(
    ("sources", "options", "unread", "read"),
    [
        (("src",), {"excludes": ("**/*.log",)}, "src/x/c.log", "src/x/b.txt"),
        (("src",), {"excludes": ("x", "!x/y")}, "src/x/b.txt", "src/x/y/d.txt"),
        (("top*",), {"excludes": ("*.md",)}, "top.md", "top.txt"),
        (("./src/**/*.txt",), {"parents": True}, "src/x/c.log", "src/x/y/d.txt"),
        (("src/./x/*.txt",), {"parents": True}, "src/x/y/d.txt", "src/x/b.txt"),
        (("src/./x",), {"parents": True, "excludes": ("x/y",)}, "src/x/y/d.txt", "src/x/c.log"),
        (("src/a.txt", "top.txt"), {"parents": True}, "src/x/b.txt", "src/a.txt"),
    ],
)
def test_filtered_digest_covers_exactly_what_is_copied(
    tmp_path: Path, sources: tuple[str, ...], options: dict[str, Any], unread: str, read: str
) -> None:
    make_tree(tmp_path / "ctx", FILTER_SOURCE)
    before = _filtered(tmp_path, sources, **options)
    # The walk agrees with the copy: what the copy writes, the digest reads, and only that.
    root = tmp_path / "root"
    root.mkdir()
    view = BuildContext(tmp_path / "ctx", IgnoreRules.from_patterns([])).view()
    copy_into(root, view, CopyRequest(sources=sources, destination="/d/", **options))
    copied = {path.name for path in (root / "d").rglob("*") if path.is_file()}
    assert Path(read).name in copied and Path(unread).name not in copied
    # --explain's list of what the copy reads agrees too.
    from builder.ops.copy_digest import filtered_source_paths

    paths = filtered_source_paths(view, sources, excludes=options.get("excludes", ()),
                                  parents=options.get("parents", False))
    assert read in paths and unread not in paths
    (tmp_path / "ctx" / unread).write_text("changed")
    assert _filtered(tmp_path, sources, **options) == before
    (tmp_path / "ctx" / read).write_text("changed")
    assert _filtered(tmp_path, sources, **options) != before


def test_filtered_digest_modes_and_pending_parents(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx", FILTER_SOURCE)
    sources = ("./src/**/*.txt",)
    before = _filtered(tmp_path, sources, parents=True)
    # A directory kept as a parent of a copied file keeps its mode: the mode counts.
    os.chmod(tmp_path / "ctx" / "src" / "x", 0o700)
    changed = _filtered(tmp_path, sources, parents=True)
    assert changed != before
    # ...unless an octal --chmod replaces every mode.
    no_modes = _filtered(tmp_path, sources, parents=True, include_mode=False)
    os.chmod(tmp_path / "ctx" / "src" / "x" / "b.txt", 0o600)
    assert _filtered(tmp_path, sources, parents=True, include_mode=False) == no_modes
    assert _filtered(tmp_path, sources, parents=True) != changed
    # A directory with nothing copied inside does not count.
    changed = _filtered(tmp_path, sources, parents=True)
    os.makedirs(tmp_path / "ctx" / "src" / "empty")
    os.chmod(tmp_path / "ctx" / "top.md", 0o600)
    assert _filtered(tmp_path, sources, parents=True) == changed


def test_filtered_digest_errors(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx", FILTER_SOURCE)
    with pytest.raises(SourceNotFound, match='"/src/nope": not found'):
        _filtered(tmp_path, ("src/./nope",), parents=True)
    with pytest.raises(SourceNotFound, match='"/nope": not found'):
        _filtered(tmp_path, ("nope",), excludes=("x",))
    with pytest.raises(BadFlag, match="invalid --exclude"):
        _filtered(tmp_path, ("src",), excludes=("[",))
    # A wildcard that matches nothing is no error, as in the copy.
    assert _filtered(tmp_path, ("nomatch*",), excludes=("x",))
