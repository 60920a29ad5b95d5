"""COPY and ADD onto a step's root file system, with BuildKit's file-copy rules.

The source is a :class:`~builder.context.SourceView` (the context after
``.dockerignore``, another stage's root or an image's: all directories);
the target is the step's mounted root file system.  The rules are those of
BuildKit's Dockerfile frontend and its copy backend (tonistiigi/fsutil):

* Sources are resolved inside the source root.  Wildcards (``filepath.Match``)
  that match nothing copy nothing; a missing plain source is ``"/x": not
  found``.  A source named directly, or matched by a wildcard, that is a
  symlink is followed (inside the source root); symlinks inside a copied
  directory are copied as symlinks.
* A directory source copies its contents.  A file source lands at the
  destination, or inside it when the destination is an existing directory or
  ends in ``/``.  Missing destination parents are created 0755 (or with the
  ``--chmod`` mode, as BuildKit v0.21+ does) and owned by root or ``--chown``.
* The destination is resolved inside the target root as if chrooted there:
  a symlink in the image to ``/etc`` leads to TARGET/etc, never to the host's.
  Below the destination, existing symlinks are never written through: a
  file replaces them, a directory refuses them.
* Files keep their mode (set-id bits included), times and xattrs.  Owners
  become the view's (0:0 for the context) unless ``--chown``; ``--chmod``
  (octal, or chmod(1)'s symbolic form) replaces modes.  Hard links between
  copied files stay hard links; nothing shares an inode with the source.
  The caller turns ``--chown`` into ids (builder/ops/chown.py: BuildKit's
  COPY rules, not USER's).  An extracted archive (ADD) takes ``--chown`` but
  not ``--chmod``, as BuildKit's unpack does.
* Here-documents become files of mode 0644 owned 0:0 before ``--chmod`` and
  ``--chown``; ``--exclude`` filters every walk (and what wildcards match);
  ``--parents`` keeps the path after an optional ``/./`` pivot.  What the
  filtered walks read is hashed for the cache key by copy_digest.py, which
  must stay in step with this module.
* ``--link`` needs nothing here: the executor hands an empty root.

One deliberate difference: several sources into a destination that neither
ends in ``/`` nor is a directory is an error, as the Dockerfile reference
says, where BuildKit silently lets each overwrite the last (moby/buildkit#1853).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.context import (
    SourceNotFound,
    SourceView,
    expand_source,
    resolve_in_root,
)
from builder.dockerignore import IgnoreFileError, IgnoreRules, MatchInfo, clean_path
from builder.errors import BadFlag, CopyError
from builder.ops.unpack import extract_archive, is_archive

__all__ = [
    "Chmod",
    "CopyError",
    "CopyRequest",
    "InlineFile",
    "OwnerResolver",
    "copy_into",
    "filter_entry",
    "parse_chmod",
]

OwnerResolver = Callable[[str], tuple[int, int]]
"""Turns a ``--chown`` value (``user:group``, names or ids) into (uid, gid) for the target."""

_OCTAL = re.compile(r"[0-7]+\Z")
_CHUNK = 1 << 30
_SMALL_FILE = 64 << 10


@dataclass(frozen=True, slots=True)
class InlineFile:
    """A here-document source (``COPY <<EOF /dst``): a file ``name`` holding ``data``."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyRequest:
    """One COPY/ADD after expansion.  ``destination`` is as written (relative paths are
    relative to ``workdir``); ``unpack`` extracts local archives (ADD)."""

    sources: tuple[str, ...] = ()
    inline_files: tuple[InlineFile, ...] = ()
    destination: str
    workdir: str = "/"
    chown: str = ""
    chmod: str = ""
    excludes: tuple[str, ...] = ()
    parents: bool = False
    unpack: bool = False
    keyword: str = "COPY"


@dataclass(frozen=True, slots=True)
class _Clause:
    who: int
    actions: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Chmod:
    """A ``--chmod`` value: an octal mode, or chmod(1) symbolic clauses applied per entry.

    Symbolic clauses are evaluated as BSD ``setmode`` does with a zero umask
    (BuildKit's dchapes-mode), so ``+x`` means ``a+x`` whatever the host's
    umask; ``X`` adds execute to directories and to what was executable.
    """

    text: str
    octal: int | None
    clauses: tuple[_Clause, ...] = ()

    def apply(self, mode: int, *, is_dir: bool) -> int:
        """The permission and set-id bits an entry with ``mode`` gets."""
        if self.octal is not None:
            return self.octal
        original = mode & 0o7777
        new = original
        for clause in self.clauses:
            for op, perms in clause.actions:
                bits = _clause_bits(clause.who, perms, new, original, is_dir)
                if op == "+":
                    new |= bits
                elif op == "-":
                    new &= ~bits
                else:
                    new = (new & ~(clause.who or 0o6777)) | bits
        return new


_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o0007, "a": 0o6777}
_SHIFT = {"u": 6, "g": 3, "o": 0}


def _clause_bits(who: int, perms: str, current: int, original: int, is_dir: bool) -> int:
    """The bits one ``op perms`` action touches, for the classes in ``who`` (all if none)."""
    mask = who or 0o6777
    if perms and all(char in "ugo" for char in perms):
        value = 0
        for char in perms:
            value |= (current >> _SHIFT[char]) & 0o7
        return (value << 6 | value << 3 | value) & mask & 0o777
    bits = 0
    for char in perms:
        if char == "r":
            bits |= 0o444
        elif char == "w":
            bits |= 0o222
        elif char == "x" or (char == "X" and (is_dir or original & 0o111)):
            bits |= 0o111
        elif char == "s":
            bits |= 0o6000
    # The sticky bit belongs to no class: "t" sets it unless only "o" was named.
    sticky = 0o1000 if "t" in perms and (who == 0 or who & 0o6770) else 0
    return (bits & mask) | sticky


def parse_chmod(text: str) -> Chmod:
    """Parse ``--chmod`` as BuildKit's frontend does, with its error messages."""
    not_octal = BadFlag(
        f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777"
    )
    if text[:1].isdigit():
        if not _OCTAL.match(text) or int(text, 8) > 0o7777:
            raise not_octal
        return Chmod(text, int(text, 8))
    clauses = []
    for clause in text.split(","):
        index = 0
        who = 0
        while index < len(clause) and clause[index] in _WHO:
            who |= _WHO[clause[index]]
            index += 1
        actions: list[tuple[str, str]] = []
        while index < len(clause) and clause[index] in "+-=":
            op = clause[index]
            start = index = index + 1
            while index < len(clause) and clause[index] in "rwxXstugo":
                index += 1
            actions.append((op, clause[start:index]))
        if not actions or index != len(clause):
            raise BadFlag(f"invalid chmod parameter: '{text}': invalid syntax")
        clauses.append(_Clause(who, tuple(actions)))
    return Chmod(text, None, tuple(clauses))


def filter_entry(
    components: str,
    includes: IgnoreRules | None,
    excludes: IgnoreRules | None,
    included_by: MatchInfo,
    excluded_by: MatchInfo,
) -> tuple[bool, MatchInfo, MatchInfo]:
    """Whether the copy takes the entry at ``components`` (its path below the copied source),
    by COPY --parents' include pattern and --exclude, each matched with its parent's results;
    returns that and the match results its children start from. The source itself
    (``components`` empty) is always taken."""
    include = True
    if components:
        if includes is not None:
            include, included_by = includes.match_with_parent(components, included_by)
        if excludes is not None:
            excluded, excluded_by = excludes.match_with_parent(components, excluded_by)
            include = include and not excluded
    return include, included_by, excluded_by


def copy_into(
    target_root: Path,
    source: SourceView,
    request: CopyRequest,
    *,
    resolve_owner: OwnerResolver | None = None,
) -> None:
    """Carry out ``request`` from ``source`` into ``target_root``.

    Not atomic: on error, what was copied so far stays (the step's upper
    directory is thrown away by the caller).  Raises :class:`CopyError`,
    :class:`~builder.context.SourceNotFound` or :class:`~builder.errors.BadFlag`.
    """
    chmod = parse_chmod(request.chmod) if request.chmod else None
    owner = None
    if request.chown:
        if resolve_owner is None:
            raise CopyError(f"{request.keyword} --chown={request.chown}: no way to resolve owners")
        owner = resolve_owner(request.chown)
    try:
        excludes = IgnoreRules.from_patterns(request.excludes) if request.excludes else None
    except IgnoreFileError as err:
        raise BadFlag(f"invalid --exclude: {err}") from err
    destination, dest_is_dir = _destination(request.destination, request.workdir)
    copier = _Copier(SourceView(target_root), source, owner=owner, chmod=chmod, excludes=excludes)
    try:
        if request.parents:
            _copy_with_parents(copier, request, destination)
        else:
            _copy_sources(copier, request, destination, dest_is_dir)
        for inline in request.inline_files:
            copier.copy_inline(inline, destination, dest_is_dir)
    except OSError as err:
        where = os.fsdecode(err.filename or "")
        for root in (os.fsdecode(target_root), os.fsdecode(source.root)):
            where = where.removeprefix(root)
        raise CopyError(
            f"{request.keyword} to {request.destination}: {where}: {err.strerror}"
        ) from err


def _destination(destination: str, workdir: str) -> tuple[str, bool]:
    """The absolute, clean destination and whether it names a directory (trailing ``/``,
    ``.`` or empty), as the frontend's pathRelativeToWorkingDir gives it."""
    if not destination.startswith("/"):
        if destination in ("", "."):
            destination = "./"
        destination = f"/{workdir.strip('/')}/{destination}"
    return clean_path(destination), destination.endswith("/")


def _copy_sources(
    copier: _Copier, request: CopyRequest, destination: str, dest_is_dir: bool
) -> None:
    items: list[tuple[int, str]] = []
    for index, source in enumerate(request.sources):
        for path, matched in expand_source(copier.source, source):
            # --exclude also filters what a wildcard matched (``COPY --exclude=*.txt hom* /d/``).
            if matched and copier.excludes is not None and copier.excludes.matches(matched):
                continue
            items.append((index, path))
    many = len(items) + len(request.inline_files) > 1
    if many and not dest_is_dir and not copier.is_directory(destination):
        raise CopyError(
            f"When using {request.keyword} with more than one source file,"
            " the destination must be a directory and end with a /"
        )
    for position, (index, path) in enumerate(items):
        if position and index != items[position - 1][0]:
            # BuildKit copies each source with a copier of its own: hard links
            # are kept among one source's files (a wildcard's matches too),
            # never across two sources.
            copier.inodes.clear()
        if request.unpack and copier.unpack(path, destination):
            continue
        copier.copy_source(path, destination, dest_is_dir)


def _copy_with_parents(copier: _Copier, request: CopyRequest, destination: str) -> None:
    """``--parents``: everything after an optional ``/./`` pivot keeps its path below the
    destination; the pivot directory's contents are copied through an include filter."""
    for source in request.sources:
        pivot, found, pattern = source.partition("/./")
        if not found:
            pivot, pattern = "/", source
        pattern = clean_path("/" + pattern).lstrip("/")
        if not _has_glob(pivot) and not _has_glob(pattern):
            required = clean_path(f"/{pivot}/{pattern}").lstrip("/")
            if copier.lookup(required) is None:
                raise SourceNotFound(f'"/{required}": not found')
        includes = IgnoreRules.from_patterns([pattern]) if pattern else None
        for path, _ in expand_source(copier.source, pivot):
            copier.with_includes(includes).copy_source(path, destination, True)


def _has_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


@dataclass(slots=True)
class _Parent:
    """A source directory on the copy stack; ``copied`` once its target exists."""

    source: str
    target: str
    copied: bool
    created_late: bool = False


@dataclass(slots=True)
class _Copier:
    """The state of one COPY: hard-link map and the stack of directories being copied."""

    target: SourceView
    source: SourceView
    owner: tuple[int, int] | None
    chmod: Chmod | None
    excludes: IgnoreRules | None
    includes: IgnoreRules | None = None
    inodes: dict[tuple[int, int], bytes] = field(default_factory=dict)
    parents: list[_Parent] = field(default_factory=list)

    def with_includes(self, includes: IgnoreRules | None) -> _Copier:
        self.includes = includes
        return self

    def lookup(self, path: str) -> os.stat_result | None:
        return self.source.lstat(resolve_in_root(path, self.source.lstat, self.source.readlink))

    def resolve_target(self, path: str) -> str:
        return resolve_in_root(path, self.target.lstat, self.target.readlink)

    def is_directory(self, path: str) -> bool:
        info = self.target.lstat(self.resolve_target(path))
        return info is not None and stat.S_ISDIR(info.st_mode)

    def unpack(self, path: str, destination: str) -> bool:
        """ADD of a local archive: extract into the destination directory; False if ``path``
        is no archive (it is then copied like any file)."""
        archive = self.source.host_path(
            resolve_in_root(path, self.source.lstat, self.source.readlink)
        )
        if not is_archive(archive):
            return False
        target = self.resolve_target(destination)
        self.make_directories(target, mode=0o755)  # BuildKit's unpack ignores --chmod here
        extract_archive(archive, self.target.host_path(target), owner=self.owner)
        return True

    def copy_source(self, path: str, destination: str, dest_is_dir: bool) -> None:
        """fsutil's ``Copy`` for one source path, with directory contents copied."""
        followed = resolve_in_root(path, self.source.lstat, self.source.readlink)
        info = self.source.lstat(followed)
        if info is None:
            raise SourceNotFound(f'"/{path}": not found')
        target = self.prepare_target(destination, dest_is_dir, path.rpartition("/")[2], info)
        self.copy_entry(followed, "", target, False, (), ())

    def copy_inline(self, inline: InlineFile, destination: str, dest_is_dir: bool) -> None:
        """A here-document: a file of mode 0644 (or --chmod) owned by root (or --chown)."""
        now = time.time_ns()
        name = clean_path("/" + inline.name).rpartition("/")[2]
        fake = os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, len(inline.data), 0, 0, 0))
        target = self.prepare_target(destination, dest_is_dir, name, fake)
        path = self.target.host_path(target)
        self.clear_for_file(target)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            os.write(fd, inline.data)
            uid, gid = self.owner or (0, 0)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, self.chmod.apply(0o644, is_dir=False) if self.chmod else 0o644)
            os.utime(fd, ns=(now, now))
        finally:
            os.close(fd)

    def prepare_target(
        self, destination: str, dest_is_dir: bool, base: str, info: os.stat_result
    ) -> str:
        """Where one source lands; creates the directories it lands in (prepareTargetDir)."""
        ensure = destination if dest_is_dir else destination.rpartition("/")[0]
        self.make_directories(self.resolve_target(ensure))
        target = self.resolve_target(destination)
        existing = self.target.lstat(target)
        is_dir = stat.S_ISDIR(info.st_mode)
        if not is_dir and existing is not None and stat.S_ISDIR(existing.st_mode):
            target = f"{target}/{base}" if target else base
        landing = target if is_dir and existing is None else target.rpartition("/")[0]
        self.make_directories(landing)
        return target

    def make_directories(self, path: str, *, mode: int | None = None) -> None:
        """MkdirAll inside the target: missing directories get 0755 (or the --chmod mode) and
        root (or the --chown owner); a non-directory in the way is an error."""
        current = ""
        for part in path.split("/") if path else []:
            current = f"{current}/{part}" if current else part
            host = self.target.host_path(current)
            try:
                os.mkdir(host, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(host).st_mode):
                    raise CopyError(f"mkdir /{current}: not a directory") from None
                continue
            if self.owner is not None:
                os.lchown(host, *self.owner)
            if mode is None:
                mode = self.chmod.apply(0o755, is_dir=True) if self.chmod else 0o755
            os.chmod(host, mode)

    def copy_entry(
        self,
        source: str,
        components: str,
        target: str,
        overwrite: bool,
        included_by: MatchInfo,
        excluded_by: MatchInfo,
    ) -> None:
        """fsutil's ``copier.copy``: filter, then copy one entry (recursively for directories)."""
        info = self.source.lstat(source)
        if info is None:
            return  # vanished, or hidden by .dockerignore
        include, included_by, excluded_by = filter_entry(
            components, self.includes, self.excludes, included_by, excluded_by
        )
        if include:
            self.create_pending_parents()
        if not stat.S_ISDIR(info.st_mode):
            if include:
                self.clear_for_file(target)
                self.copy_non_directory(source, info, target)
            return
        parent = _Parent(source, target, copied=include)
        created = self.ensure_directory(target) if include else False
        self.parents.append(parent)
        for name in self.source.listdir(source):
            child_source = f"{source}/{name}" if source else name
            child_components = f"{components}/{name}" if components else name
            self.copy_entry(
                child_source,
                child_components,
                f"{target}/{name}" if target else name,
                True,
                included_by,
                excluded_by,
            )
        self.parents.pop()
        if (include and overwrite) or created or parent.created_late:
            self.set_metadata(source, info, target)

    def create_pending_parents(self) -> None:
        """Directories skipped by the filters appear once something inside them is copied."""
        for parent in self.parents:
            if not parent.copied:
                parent.created_late = self.ensure_directory(parent.target)
                parent.copied = True

    def ensure_directory(self, target: str) -> bool:
        host = self.target.host_path(target)
        existing = self.target.lstat(target)
        if existing is None:
            os.mkdir(host, 0o700)
            return True
        if not stat.S_ISDIR(existing.st_mode):
            raise CopyError(f"cannot copy to non-directory: /{target}")
        return False

    def clear_for_file(self, target: str) -> None:
        existing = self.target.lstat(target)
        if existing is None:
            return
        if stat.S_ISDIR(existing.st_mode):
            raise CopyError(f"cannot replace to directory /{target} with file")
        os.unlink(self.target.host_path(target))

    def copy_non_directory(self, source: str, info: os.stat_result, target: str) -> None:
        host = self.target.host_path(target)
        kind = stat.S_IFMT(info.st_mode)
        if kind == stat.S_IFREG:
            key = (info.st_dev, info.st_ino)
            first = self.inodes.get(key) if info.st_nlink > 1 else None
            if first is None:
                self.copy_regular(source, info, host)
                if info.st_nlink > 1:
                    self.inodes[key] = host
                return
            os.link(first, host, follow_symlinks=False)
        elif kind == stat.S_IFLNK:
            os.symlink(self.source.readlink(source), host)
        elif kind == stat.S_IFSOCK and self.source.sockets_as_files:
            os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        else:
            os.mknod(host, kind | 0o600, info.st_rdev)
        self.set_metadata(source, info, target)

    def copy_regular(self, source: str, info: os.stat_result, host: bytes) -> None:
        """Copy content by copy_file_range (the kernel reflinks where the file system can),
        then owner, mode, times and xattrs, all on the open descriptor."""
        source_host = self.source.host_path(source)
        source_fd = os.open(source_host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd = os.open(
                host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            try:
                _copy_content(source_fd, fd, info.st_size)
                uid, gid = self.owner_of(info)
                os.fchown(fd, uid, gid)  # before chmod: chown clears set-id bits
                os.fchmod(fd, self.mode_of(info))
                _copy_xattrs(source_host, fd)
                os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))
            finally:
                os.close(fd)
        finally:
            os.close(source_fd)

    def set_metadata(self, source: str, info: os.stat_result, target: str) -> None:
        """fsutil's copyFileInfo by path: owner, mode (not for symlinks), xattrs, then times."""
        host = self.target.host_path(target)
        os.lchown(host, *self.owner_of(info))
        if not stat.S_ISLNK(info.st_mode):
            os.chmod(host, self.mode_of(info))
        _copy_xattrs(self.source.host_path(source), host)
        os.utime(host, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)

    def owner_of(self, info: os.stat_result) -> tuple[int, int]:
        return self.owner or self.source.owner or (info.st_uid, info.st_gid)

    def mode_of(self, info: os.stat_result) -> int:
        mode = stat.S_IMODE(info.st_mode)
        if self.chmod is None:
            return mode
        return self.chmod.apply(mode, is_dir=stat.S_ISDIR(info.st_mode))


def _copy_content(source_fd: int, fd: int, size: int) -> None:
    if size <= _SMALL_FILE:
        # One read and one write beat copy_file_range's setup cost on small files.
        while chunk := os.read(source_fd, _SMALL_FILE + 1):
            os.write(fd, chunk)
        return
    copied = 0
    try:
        while copied < size:
            count = os.copy_file_range(source_fd, fd, min(size - copied, _CHUNK))
            if count == 0:
                return  # the file shrank while being copied
            copied += count
    except OSError as err:
        if copied or err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        while chunk := os.read(source_fd, 1 << 20):
            os.write(fd, chunk)


def _copy_xattrs(source: bytes, target: bytes | int) -> None:
    """Best effort, as BuildKit (which logs and goes on): a target file system without
    xattrs, or a namespace we may not write, must not fail the copy."""
    try:
        names = os.listxattr(source, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        try:
            value = os.getxattr(source, name, follow_symlinks=False)
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError:
            continue
