"""The build context: its filtered walk, source lookup inside a root, and content checksums.

A context is a directory seen through its ``.dockerignore``.  What a build
may read of it is what :meth:`BuildContext.entries` yields, in the order
BuildKit's fsutil walker would send it: sorted by name, symlinks not
followed, an excluded directory present only as the parent of something an
exception re-includes.

File contents are identified by xxh3-128.  A :class:`StatCache` remembers the
digest of each file under its (path, inode, size, mtime, ctime), so a
context that did not change costs one ``lstat`` per entry and no reads.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import xxhash

from builder.dockerignore import IgnoreRules, MatchInfo, clean_path, glob_match
from builder.errors import ContextError, SourceNotFound
from cache import files

__all__ = [
    "BuildContext",
    "ContextEntry",
    "ContextError",
    "EntryKind",
    "SourceNotFound",
    "SourceView",
    "StatCache",
    "checksum_view_sources",
    "expand_source",
    "file_digest",
    "kind_of",
    "resolve_in_root",
]

_MAX_SYMLINKS = 255
_READ_SIZE = 1 << 20
_CHECKSUM_TAG = b"pybuild.copy-sources.v1"


class EntryKind(Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    FIFO = "fifo"
    SOCKET = "socket"
    CHAR_DEVICE = "char"
    BLOCK_DEVICE = "block"


_KINDS = {
    stat.S_IFREG: EntryKind.FILE,
    stat.S_IFDIR: EntryKind.DIR,
    stat.S_IFLNK: EntryKind.SYMLINK,
    stat.S_IFIFO: EntryKind.FIFO,
    stat.S_IFSOCK: EntryKind.SOCKET,
    stat.S_IFCHR: EntryKind.CHAR_DEVICE,
    stat.S_IFBLK: EntryKind.BLOCK_DEVICE,
}


def kind_of(mode: int) -> EntryKind:
    return _KINDS[stat.S_IFMT(mode)]


@dataclass(frozen=True, slots=True)
class ContextEntry:
    """One path of the context.  ``path`` is relative and slash-separated; ``mode`` holds the
    permission and set-id bits only (``kind`` holds the type); ``checksum`` is the hex
    xxh3-128 of a file's content and empty for anything else."""

    path: str
    kind: EntryKind
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    link_target: str
    checksum: str


class StatCache:
    """File digests keyed by (absolute path, inode, size, mtime_ns, ctime_ns), kept in one file.

    The file is rewritten whole, by temporary file and rename, only when
    something changed, so a reader never sees half of it and a crash loses
    at most the last update.  A digest is not recorded while the file's
    times are within ``racy_window_ns`` of the read: a write in the same
    clock tick could leave size and times unchanged (git's "racy clean").
    """

    _MAGIC = b"pybuild.statcache.v1\n"
    _RECORD = struct.Struct("<H")
    _VALUE = struct.Struct("<QQqq16s")

    def __init__(self, db_path: Path, *, racy_window_ns: int = 100_000_000) -> None:
        self.db_path = db_path
        self.racy_window_ns = racy_window_ns
        self._entries: dict[bytes, tuple[int, int, int, int, bytes]] | None = None
        self._used: set[bytes] = set()
        self._dirty = False

    def lookup(self, path: bytes, st: os.stat_result) -> bytes | None:
        """The cached digest of ``path`` if its stat still matches, else None."""
        entries = self._entries if self._entries is not None else self._load()
        self._used.add(path)
        found = entries.get(path)
        if (
            found is None
            or found[0] != st.st_ino
            or found[1] != st.st_size
            or found[2] != st.st_mtime_ns
            or found[3] != st.st_ctime_ns
        ):
            return None
        return found[4]

    def record(self, path: bytes, st: os.stat_result, digest: bytes, *, read_at_ns: int) -> None:
        entries = self._load()
        self._used.add(path)
        if read_at_ns - max(st.st_mtime_ns, st.st_ctime_ns) < self.racy_window_ns:
            if entries.pop(path, None) is not None:
                self._dirty = True
            return
        entries[path] = (*_stat_key(st), digest)
        self._dirty = True

    def save(self, *, forget_unused_under: bytes | None = None) -> None:
        """Write the cache if it changed; optionally drop entries under a prefix not used since
        load (files deleted from a context that was walked whole)."""
        entries = self._load()
        if forget_unused_under is not None:
            stale = [
                p for p in entries if p.startswith(forget_unused_under) and p not in self._used
            ]
            for path in stale:
                del entries[path]
            self._dirty |= bool(stale)
        if not self._dirty:
            return
        chunks = [self._MAGIC]
        for path, (ino, size, mtime, ctime, digest) in entries.items():
            chunks.append(self._RECORD.pack(len(path)) + path)
            chunks.append(self._VALUE.pack(ino, size, mtime, ctime, digest))
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomically(self.db_path, b"".join(chunks))
        self._dirty = False

    def _load(self) -> dict[bytes, tuple[int, int, int, int, bytes]]:
        if self._entries is not None:
            return self._entries
        self._entries = {}
        try:
            data = self.db_path.read_bytes()
        except FileNotFoundError:
            return self._entries
        if not data.startswith(self._MAGIC):
            return self._entries  # another version: start afresh, overwrite on save
        offset = len(self._MAGIC)
        try:
            while offset < len(data):
                (length,) = self._RECORD.unpack_from(data, offset)
                offset += self._RECORD.size
                path = data[offset : offset + length]
                offset += length
                ino, size, mtime, ctime, digest = self._VALUE.unpack_from(data, offset)
                offset += self._VALUE.size
                self._entries[path] = (ino, size, mtime, ctime, digest)
        except struct.error:
            self._entries.clear()  # truncated by a crash before rename: never trusted
        return self._entries


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_digest(path: str | bytes) -> bytes:
    """xxh3-128 of a regular file's content; never follows a symlink or opens a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ContextError(f"checksumming {os.fsdecode(path)}: not a regular file")
        hasher = xxhash.xxh3_128()
        buffer = bytearray(_READ_SIZE)
        view = memoryview(buffer)
        while count := os.readv(fd, [buffer]):
            hasher.update(view[:count])
        return hasher.digest()
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class SourceView:
    """A read-only source tree for COPY: a directory, optionally narrowed to ``visible`` paths.

    ``children`` maps each visible directory ("" is the root) to its visible
    names, and ``stats`` holds each visible path's ``lstat`` as the walk saw
    it (a snapshot: later lookups cost no system call); None means the whole
    directory is visible, read live (another stage's or an image's root).  ``owner`` replaces every entry's owner (the
    context arrives as 0:0 in BuildKit); ``sockets_as_files`` marks the
    context, whose sockets BuildKit transfers as empty regular files.
    """

    root: Path
    children: Mapping[str, tuple[str, ...]] | None = None
    owner: tuple[int, int] | None = None
    sockets_as_files: bool = False
    stats: Mapping[str, os.stat_result] | None = field(default=None, repr=False)
    _root_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_root_bytes", os.fsencode(self.root))

    def host_path(self, rel: str) -> bytes:
        """The host path of a resolved relative path (never contains ``..``)."""
        return self._root_bytes + b"/" + os.fsencode(rel) if rel else self._root_bytes

    def lstat(self, rel: str) -> os.stat_result | None:
        if self.stats is not None and rel:
            return self.stats.get(rel)
        if self.children is not None and rel and not self._is_visible(rel):
            return None
        try:
            return os.lstat(self.host_path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def listdir(self, rel: str) -> tuple[str, ...]:
        if self.children is not None:
            return self.children.get(rel, ())
        return tuple(sorted(os.listdir(self.host_path(rel).decode("utf-8", "surrogateescape"))))

    def readlink(self, rel: str) -> str:
        return os.fsdecode(os.readlink(self.host_path(rel)))

    def _is_visible(self, rel: str) -> bool:
        assert self.children is not None
        parent, _, name = rel.rpartition("/")
        return name in self.children.get(parent, ())


def resolve_in_root(
    path: str,
    lstat: Callable[[str], os.stat_result | None],
    readlink: Callable[[str], str],
    *,
    follow_final: bool = True,
) -> str:
    """Resolve ``path`` inside a root as if chrooted there; returns a clean relative path.

    Symlinks are followed (the last component only with ``follow_final``):
    an absolute target starts again at the root, a relative one from the
    link's directory, and ``..`` stops at the root, so the result can never
    name anything outside it.  Missing components are kept as written, for
    paths about to be created.  This is continuity's ``fs.RootPath``.
    """
    pending = path.split("/")
    pending.reverse()
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/".join([*resolved, part])
        is_final = all(rest in ("", ".") for rest in pending)
        info = None if is_final and not follow_final else lstat(candidate)
        if info is None or not stat.S_ISLNK(info.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise ContextError(f"resolving {path}: too many levels of symbolic links")
        target = readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed(target.split("/")))
    return "/".join(resolved)


def _has_wildcards(part: str) -> bool:
    index = 0
    while index < len(part):
        if part[index] == "\\":
            index += 2
            continue
        if part[index] in "*?[":
            return True
        index += 1
    return False


def expand_source(
    view: SourceView, source: str, *, follow_links: bool = True
) -> list[tuple[str, str]]:
    """The paths a COPY source names, as fsutil's ``ResolveWildcards`` finds them.

    Each result is (path relative to the root, the part the wildcards
    matched); the second is "" for a source without wildcards, which names
    its cleaned path whether it exists or not.  With wildcards, the
    directory before the first one is resolved (following symlinks) and
    walked in name order; a matched directory is not entered.  No match is
    an empty list, which BuildKit's Dockerfile frontend allows.
    """
    parts = clean_path("/" + source).split("/")[1:]
    split = next((i for i, part in enumerate(parts) if _has_wildcards(part)), len(parts))
    base = "/".join(parts[:split])
    if split == len(parts):
        return [(base, "")]
    pattern = "/".join(parts[split:])
    resolved = resolve_in_root(base, view.lstat, view.readlink, follow_final=follow_links)
    info = view.lstat(resolved)
    if info is None:
        raise SourceNotFound(f"lstat /{base}: no such file or directory")
    if not stat.S_ISDIR(info.st_mode):
        return []
    # A class can match "/", so a match can be deeper than the pattern's own depth.
    depth = pattern.count("/") + pattern.count("[") + 1
    matches: list[tuple[str, str]] = []
    _walk_for_matches(view, resolved, "", pattern, depth, matches)
    return matches


def _walk_for_matches(
    view: SourceView, base: str, rel: str, pattern: str, depth: int, out: list[tuple[str, str]]
) -> None:
    directory = f"{base}/{rel}".strip("/")
    for name in view.listdir(directory):
        child = f"{rel}/{name}" if rel else name
        full = f"{base}/{child}" if base else child
        if glob_match(pattern, child):
            out.append((full, child))
            continue
        if child.count("/") + 1 < depth:
            info = view.lstat(full)
            if info is not None and stat.S_ISDIR(info.st_mode):
                _walk_for_matches(view, base, child, pattern, depth, out)


class BuildContext:
    """A context directory with its ignore rules; reads go through an optional stat cache.

    Walking reads nothing outside ``root``: symlinks are reported, never
    followed, and source lookups resolve links as if chrooted at ``root``.
    """

    def __init__(self, root: Path, ignore: IgnoreRules, *, stat_cache: StatCache | None = None):
        self.root = root
        self.ignore = ignore
        self.stat_cache = stat_cache
        self._root_bytes = os.fsencode(root)
        self._view: SourceView | None = None

    def entries(self, *, checksums: bool = True) -> Iterator[ContextEntry]:
        """Every path the build can see, sorted, parents before children."""
        for rel, info in self._walk(b"", "", (), []):
            yield self._entry(rel, info, checksums=checksums)
        if checksums and self.stat_cache is not None:
            self.stat_cache.save(forget_unused_under=self._root_bytes + b"/")

    def view(self) -> SourceView:
        """The context as COPY sees it: only visible paths, owned by 0:0.

        Computed once per BuildContext: a build reads one snapshot of its context.
        """
        if self._view is not None:
            return self._view
        children: dict[str, list[str]] = {"": []}
        stats: dict[str, os.stat_result] = {}
        for rel, info in self._walk(b"", "", (), []):
            parent, _, name = rel.rpartition("/")
            children[parent].append(name)
            stats[rel] = info
            if stat.S_ISDIR(info.st_mode):
                children[rel] = []
        frozen = {key: tuple(names) for key, names in children.items()}
        self._view = SourceView(self.root, frozen, owner=(0, 0), sockets_as_files=True, stats=stats)
        return self._view

    def visited_stats(self) -> Mapping[str, os.stat_result] | None:
        """The lstat of every visible path, if the build looked at the context at all."""
        return None if self._view is None else self._view.stats

    def checksum_sources(self, sources: list[str], *, mode_overridden: bool = False) -> str:
        """The content digest of what ``COPY <sources>`` would read from this context.

        The owner is left out: context files are copied as 0:0 or as
        ``--chown`` says, never with their owner on this machine.
        """
        digest = checksum_view_sources(
            self.view(),
            sources,
            include_mode=not mode_overridden,
            include_owner=False,
            file_checksum=self.checksum_file,
        )
        if self.stat_cache is not None:
            self.stat_cache.save()
        return digest

    def checksum_file(self, host_path: bytes, info: os.stat_result) -> bytes:
        """A file's digest, from the stat cache when its stat is unchanged."""
        cache = self.stat_cache
        if cache is not None:
            cached = cache.lookup(host_path, info)
            if cached is not None:
                return cached
        read_at = time.time_ns()
        digest = file_digest(host_path)
        if cache is not None:
            cache.record(host_path, info, digest, read_at_ns=read_at)
        return digest

    def _entry(self, rel: str, info: os.stat_result, *, checksums: bool) -> ContextEntry:
        kind = kind_of(info.st_mode)
        host = self._root_bytes + b"/" + os.fsencode(rel)
        target = os.fsdecode(os.readlink(host)) if kind is EntryKind.SYMLINK else ""
        digest = ""
        if checksums and kind is EntryKind.FILE:
            digest = self.checksum_file(host, info).hex()
        return ContextEntry(
            path=rel,
            kind=kind,
            mode=stat.S_IMODE(info.st_mode),
            uid=info.st_uid,
            gid=info.st_gid,
            size=info.st_size,
            mtime_ns=info.st_mtime_ns,
            link_target=target,
            checksum=digest,
        )

    def _walk(
        self,
        host_dir: bytes,
        rel_dir: str,
        parent: MatchInfo,
        pending: list[tuple[str, os.stat_result]],
    ) -> Iterator[tuple[str, os.stat_result]]:
        """fsutil's filtered walk: ``pending`` holds excluded directories that are emitted
        only once something inside them is."""
        directory = self._root_bytes + host_dir
        try:
            with os.scandir(directory) as scan:
                names = sorted(entry.name for entry in scan)
        except OSError as err:
            raise ContextError(f"walking context: {rel_dir or '.'}: {err.strerror}") from err
        for name in names:
            rel = f"{rel_dir}/{os.fsdecode(name)}" if rel_dir else os.fsdecode(name)
            host = host_dir + b"/" + name
            try:
                info = os.lstat(self._root_bytes + host)
            except FileNotFoundError:
                continue  # removed while walking: as if it never was
            is_dir = stat.S_ISDIR(info.st_mode)
            excluded, matched = (
                self.ignore.match_with_parent(rel, parent) if self.ignore else (False, ())
            )
            if excluded:
                if is_dir and self.ignore.may_include_inside(rel):
                    pending.append((rel, info))
                    yield from self._walk(host, rel, matched, pending)
                    if pending and pending[-1][0] == rel:
                        pending.pop()
                continue
            yield from pending
            pending.clear()
            yield rel, info
            if is_dir:
                yield from self._walk(host, rel, matched, pending)


FileChecksum = Callable[[bytes, os.stat_result], bytes]


def checksum_view_sources(
    view: SourceView,
    sources: list[str],
    *,
    include_mode: bool = True,
    include_owner: bool = True,
    file_checksum: FileChecksum | None = None,
) -> str:
    """xxh3-128 (hex) over a framed encoding of everything ``sources`` name in ``view``.

    Per source, in the given order (later sources overwrite earlier ones):
    the source text, then each match in name order as its path, then its
    entry.  An entry is its kind, its mode bits and owner (unless overridden
    by --chmod/--chown), then: a file's content digest, a symlink's target,
    a device's number, or a directory's children, each as name then entry.
    Every field is length-framed.  Mtimes never enter.  A named source that
    is a symlink is hashed as what it points to (COPY follows it).
    """
    encoder = _Encoder(view, include_mode, include_owner, file_checksum or _read_checksum)
    encoder.chunks.append(_frame(_CHECKSUM_TAG))
    for source in sources:
        encoder.chunks.append(_frame(source.encode("utf-8", "surrogateescape")))
        for match, _ in expand_source(view, source):
            resolved = resolve_in_root(match, view.lstat, view.readlink)
            info = view.lstat(resolved)
            if info is None:
                raise SourceNotFound(f'"/{match}": not found')
            encoder.chunks.append(_frame(match.encode("utf-8", "surrogateescape")))
            encoder.entry(resolved, info)
    return xxhash.xxh3_128_hexdigest(b"".join(encoder.chunks))


def _read_checksum(host_path: bytes, info: os.stat_result) -> bytes:
    return file_digest(host_path)


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


_KIND_FRAMES = {kind: _frame(kind.value.encode()) for kind in EntryKind}
_MODE_FRAME = struct.Struct("<QI")
_OWNER_FRAME = struct.Struct("<QII")
_DIGEST_FRAME = (16).to_bytes(8, "little")


@dataclass(slots=True)
class _Encoder:
    """Collects the framed encoding of entries; hashed once, at the end."""

    view: SourceView
    include_mode: bool
    include_owner: bool
    checksum: FileChecksum
    chunks: list[bytes] = field(default_factory=list)

    def entry(self, rel: str, info: os.stat_result) -> None:
        view, chunks = self.view, self.chunks
        mode = info.st_mode
        kind = _KINDS[stat.S_IFMT(mode)]
        if kind is EntryKind.SOCKET and view.sockets_as_files:
            kind = EntryKind.FILE
        chunks.append(_KIND_FRAMES[kind])
        if kind is EntryKind.SYMLINK:
            chunks.append(_frame(view.readlink(rel).encode("utf-8", "surrogateescape")))
            return
        if self.include_mode:
            chunks.append(_MODE_FRAME.pack(4, mode & 0o7777))
        if self.include_owner:
            uid, gid = view.owner or (info.st_uid, info.st_gid)
            chunks.append(_OWNER_FRAME.pack(8, uid, gid))
        if kind is EntryKind.FILE:
            if stat.S_ISREG(mode):
                chunks.append(_DIGEST_FRAME + self.checksum(view.host_path(rel), info))
            else:
                chunks.append(_frame(b""))
        elif kind in (EntryKind.CHAR_DEVICE, EntryKind.BLOCK_DEVICE):
            chunks.append(_frame(struct.pack("<Q", info.st_rdev)))
        elif kind is EntryKind.DIR:
            prefix = rel + "/" if rel else ""
            for name in view.listdir(rel):
                child = prefix + name
                child_info = view.lstat(child)
                if child_info is None:
                    continue
                chunks.append(_frame(name.encode("utf-8", "surrogateescape")))
                self.entry(child, child_info)
