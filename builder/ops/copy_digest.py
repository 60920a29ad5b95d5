"""The content digest of a filtered COPY from the context: ``--exclude`` and ``--parents``.

``BuildContext.checksum_sources`` hashes everything a source names; with
filters that is both too much and too little.  Too much: a change to an
excluded file would miss the cache although the copy never reads it.  Too
little: ``COPY --parents **/*.txt`` copies through an include pattern (``**``
spans directories), which a plain wildcard expansion does not see.  So this
walk takes the copier's own path through the source (builder/ops/copy.py:
the same wildcard matches, the same include and exclude rules, matched top
down with the parent's results) and hashes exactly the entries it would
write: each as its path below the copied source, kind, mode (unless an octal
--chmod replaces it), and content digest, link target or device number.
A directory that only holds copied entries is hashed once something inside
it is, as the copier creates it only then.  Owners never enter: context
files are copied as 0:0 or as --chown says.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import xxhash

from builder.context import (
    EntryKind,
    SourceNotFound,
    SourceView,
    expand_source,
    file_digest,
    kind_of,
    resolve_in_root,
)
from builder.dockerignore import IgnoreRules, MatchInfo, clean_path
from builder.errors import BadFlag, IgnoreFileError
from builder.ops.copy import filter_entry

__all__ = ["checksum_filtered_sources", "filtered_source_paths"]

_TAG = b"pybuild.copy-filtered.v1"
FileChecksum = Callable[[bytes, os.stat_result], bytes]


def checksum_filtered_sources(
    view: SourceView,
    sources: tuple[str, ...] | list[str],
    *,
    excludes: tuple[str, ...] = (),
    parents: bool = False,
    include_mode: bool = True,
    file_checksum: FileChecksum | None = None,
) -> str:
    """xxh3-128 (hex) of what ``COPY [--parents] [--exclude=...] sources`` copies from view."""
    walk = _walk_sources(view, sources, excludes, parents, include_mode,
                         file_checksum or _read_checksum)
    return xxhash.xxh3_128_hexdigest(b"".join(walk.chunks))


def filtered_source_paths(
    view: SourceView,
    sources: tuple[str, ...] | list[str],
    *,
    excludes: tuple[str, ...] = (),
    parents: bool = False,
) -> frozenset[str]:
    """The context paths ``COPY [--parents] [--exclude=...] sources`` reads (for --explain)."""
    walk = _walk_sources(view, sources, excludes, parents, False, lambda _path, _info: b"")
    return frozenset(walk.read)


def _walk_sources(
    view: SourceView,
    sources: tuple[str, ...] | list[str],
    excludes: tuple[str, ...],
    parents: bool,
    include_mode: bool,
    file_checksum: FileChecksum,
) -> _Walk:
    try:
        exclude_rules = IgnoreRules.from_patterns(excludes) if excludes else None
    except IgnoreFileError as err:
        raise BadFlag(f"invalid --exclude: {err}") from err
    walk = _Walk(view, exclude_rules, include_mode, file_checksum)
    walk.frame(_TAG)
    for source in sources:
        walk.frame(source.encode("utf-8", "surrogateescape"))
        if parents:
            pivot, includes = _parents_split(view, source)
            walk.includes = includes
            matches = [path for path, _ in expand_source(view, pivot)]
        else:
            walk.includes = None
            matches = [
                path
                for path, matched in expand_source(view, source)
                if not (matched and exclude_rules is not None and exclude_rules.matches(matched))
            ]
        for match in matches:
            resolved = resolve_in_root(match, view.lstat, view.readlink)
            info = view.lstat(resolved)
            if info is None:
                raise SourceNotFound(f'"/{match}": not found')
            walk.frame(match.encode("utf-8", "surrogateescape"))
            walk.entry(resolved, "", info, (), ())
    return walk


def _parents_split(view: SourceView, source: str) -> tuple[str, IgnoreRules | None]:
    """``--parents``: the pivot directory before ``/./`` and the include rule after it, with
    the copier's check that a wildcard-free source exists."""
    pivot, found, pattern = source.partition("/./")
    if not found:
        pivot, pattern = "/", source
    pattern = clean_path("/" + pattern).lstrip("/")
    if not any(char in pivot + pattern for char in "*?["):
        required = clean_path(f"/{pivot}/{pattern}").lstrip("/")
        if view.lstat(resolve_in_root(required, view.lstat, view.readlink)) is None:
            raise SourceNotFound(f'"/{required}": not found')
    return pivot, IgnoreRules.from_patterns([pattern]) if pattern else None


@dataclass(slots=True)
class _Walk:
    view: SourceView
    excludes: IgnoreRules | None
    include_mode: bool
    checksum: FileChecksum
    includes: IgnoreRules | None = None
    chunks: list[bytes] = field(default_factory=list)
    # The context paths of the entries copied (directories only held open are not).
    read: set[str] = field(default_factory=set)
    # Directories walked but not (yet) copied: hashed once something inside them is.
    pending: list[tuple[str, os.stat_result]] = field(default_factory=list)

    def frame(self, data: bytes) -> None:
        self.chunks.append(len(data).to_bytes(8, "little") + data)

    def entry(
        self,
        rel: str,
        components: str,
        info: os.stat_result,
        included_by: MatchInfo,
        excluded_by: MatchInfo,
    ) -> None:
        include, included_by, excluded_by = filter_entry(
            components, self.includes, self.excludes, included_by, excluded_by
        )
        if include:
            for pending_components, pending_info in self.pending:
                self.emit("", pending_components, pending_info)
            self.pending.clear()
        if not stat.S_ISDIR(info.st_mode):
            if include:
                self.emit(rel, components, info)
            return
        if include:
            self.emit(rel, components, info)
        else:
            self.pending.append((components, info))
        for name in self.view.listdir(rel):
            child = f"{rel}/{name}" if rel else name
            child_info = self.view.lstat(child)
            if child_info is None:
                continue
            child_components = f"{components}/{name}" if components else name
            self.entry(child, child_components, child_info, included_by, excluded_by)
        if self.pending and self.pending[-1][0] == components:
            self.pending.pop()

    def emit(self, rel: str, components: str, info: os.stat_result) -> None:
        """One copied entry; ``rel`` is "" for a directory (nothing to read in it)."""
        if rel:
            self.read.add(rel)
        kind = kind_of(info.st_mode)
        if kind is EntryKind.SOCKET and self.view.sockets_as_files:
            kind = EntryKind.FILE
        self.frame(components.encode("utf-8", "surrogateescape"))
        self.frame(kind.value.encode())
        if kind is EntryKind.SYMLINK:
            self.frame(self.view.readlink(rel).encode("utf-8", "surrogateescape"))
            return
        if self.include_mode:
            self.frame(struct.pack("<I", stat.S_IMODE(info.st_mode)))
        if kind is EntryKind.FILE and stat.S_ISREG(info.st_mode):
            self.frame(self.checksum(self.view.host_path(rel), info))
        elif kind in (EntryKind.CHAR_DEVICE, EntryKind.BLOCK_DEVICE):
            self.frame(struct.pack("<Q", info.st_rdev))


def _read_checksum(host_path: bytes, info: os.stat_result) -> bytes:
    return file_digest(host_path)
