"""The conformance cases: Dockerfiles under cases/<name>/, plus what git cannot store.

A case's directory is its build context. Files git cannot keep (modes
beyond 644/755, owners, hard links, names with newlines, empty directories, archives
built with chosen owners) are made here by the case's setup function, and
build flags both builders take (``--build-arg``, ``--target``) are listed
here too.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["extras_without_case", "flags", "make_context", "names"]

CASES = Path(__file__).resolve().parent / "cases"

Setup = Callable[[Path], None]


def _archive_bytes() -> bytes:
    """A tar with chosen owners, modes, a symlink and a hard link (no mtimes to compare)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        def add(name: str, kind: bytes, *, mode: int, uid: int = 0, gid: int = 0,
                data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, uid, gid
            info.linkname, info.size, info.mtime = link, len(data), 1_600_000_000
            archive.addfile(info, io.BytesIO(data) if data else None)

        add("top", tarfile.DIRTYPE, mode=0o750, uid=1000, gid=50)
        add("top/owned", tarfile.REGTYPE, mode=0o640, uid=1000, gid=50, data=b"owned\n")
        add("top/script", tarfile.REGTYPE, mode=0o755, data=b"#!/bin/sh\n")
        add("top/hard", tarfile.LNKTYPE, mode=0o640, uid=1000, gid=50, link="top/owned")
        add("top/soft", tarfile.SYMTYPE, mode=0o777, link="owned")
        add("implied/parent/file", tarfile.REGTYPE, mode=0o600, uid=65534, gid=65534,
            data=b"no directory entries before me\n")
        add("./dot-prefixed", tarfile.REGTYPE, mode=0o644, data=b"dot\n")
    return buffer.getvalue()


def _add_local_archives(context: Path) -> None:
    raw = _archive_bytes()
    (context / "plain.tar").write_bytes(raw)
    (context / "packed.tar.gz").write_bytes(gzip.compress(raw, mtime=0))
    (context / "packed.tar.bz2").write_bytes(bz2.compress(raw))
    (context / "packed.tar.xz").write_bytes(lzma.compress(raw))
    (context / "not-an-archive.tar").write_text("just text with a tar name\n")


def _add_archive_chown(context: Path) -> None:
    (context / "plain.tar").write_bytes(_archive_bytes())


def _hardlinks_copy(context: Path) -> None:
    linked = context / "linked"
    linked.mkdir()
    (linked / "first").write_text("one inode, three names\n")
    (linked / "second").hardlink_to(linked / "first")
    (linked / "sub").mkdir()
    (linked / "sub" / "third").hardlink_to(linked / "first")
    (linked / "alone").write_text("one name\n")


def _special_modes_copy(context: Path) -> None:
    modes = context / "modes"
    modes.mkdir()
    for name, mode in (("setuid", 0o4755), ("setgid", 0o2755), ("both-ids", 0o6750),
                       ("read-only", 0o444), ("private", 0o600), ("sticky-file", 0o1644)):
        (modes / name).write_text(f"{name}\n")
        (modes / name).chmod(mode)
    for name, mode in (("sticky-dir", 0o1777), ("setgid-dir", 0o2750), ("closed-dir", 0o700)):
        (modes / name).mkdir()
        (modes / name / "inside").write_text("inside\n")
        (modes / name).chmod(mode)


def _odd_names(context: Path) -> None:
    names = context / "names"
    (names / "sub dir" / "más").mkdir(parents=True)
    for name in ("with space.txt", "ünïcødé-名前.txt", "-leading-dash", "--double-dash",
                 "new\nline", "star*and?question[x]", "quote'single", 'quote"double',
                 "back\\slash", "dollar$HOME", "#hash", "~tilde", " leading-space",
                 "trailing-space ", "emoji-🙂", "l" * 200, "sub dir/más/inner file"):
        (names / name).write_text(f"{name}\n")
    # Bytes that are not UTF-8 are a valid Linux name too.
    with open(bytes(names) + b"/latin1-\xe9", "w") as handle:
        handle.write("not utf-8\n")


def _copy_empty_and_hidden(context: Path) -> None:
    (context / "empty-dir" / "empty-sub").mkdir(parents=True)
    (context / "empty-file").touch()
    (context / ".dotfile").write_text("hidden\n")
    (context / ".hidden-dir" / ".inner").mkdir(parents=True)
    (context / ".hidden-dir" / ".inner" / ".deep").write_text("deep\n")


SETUPS: dict[str, Setup] = {
    "copy_empty_and_hidden": _copy_empty_and_hidden,
    "hardlinks_copy": _hardlinks_copy,
    "odd_names": _odd_names,
    "special_modes_copy": _special_modes_copy,
    "add_archive_chown": _add_archive_chown,
    "add_local_archives": _add_local_archives,
}

FLAGS: dict[str, tuple[str, ...]] = {
    "arg_env_scoping": ("--build-arg", "OVERRIDDEN=from-command-line", "--build-arg", "UNSET"),
    "multistage_target": ("--target", "final"),
}


def names() -> list[str]:
    """Every case, by directory name."""
    return sorted(path.name for path in CASES.iterdir() if (path / "Dockerfile").is_file())


def make_context(name: str, destination: Path) -> Path:
    """Copy case ``name`` to ``destination`` and add its made files; returns the context."""
    shutil.copytree(CASES / name, destination, symlinks=True)
    setup = SETUPS.get(name)
    if setup is not None:
        setup(destination)
    return destination


def flags(name: str) -> tuple[str, ...]:
    """The build flags of case ``name`` (the same for both builders)."""
    return FLAGS.get(name, ())


def extras_without_case() -> list[str]:
    """Setups and flags naming a case that does not exist (a renamed case, a typo)."""
    existing = set(names())
    return sorted((SETUPS.keys() | FLAGS.keys()) - existing)
