"""The remote sources of a build's ADDs: their cache-key digests, and their files.

The solver asks for a step's digest before it looks the step up; the
executor asks for the files only when the step runs.  What each needs:

* **http(s) with --checksum** (and a file name from the URL): the digest is
  the checksum itself, so a cache hit costs no request at all; the file is
  downloaded only when the step runs, and must match.
* **http(s) without --checksum**: the file is fetched to learn its digest
  (sha256 of the content, with its name and Last-Modified, as BuildKit keys
  it).  The download is kept in ROOT/tmp for the rest of the build, so a
  step that then misses does not fetch twice.  Its ETag, digest and
  Last-Modified are remembered in ``ROOT/sources/http/`` (one small JSON
  file per URL), and the next build sends ``If-None-Match``: a ``304`` keys
  the step without transferring the body, as BuildKit's ETag check does.
* **git**: ``git ls-remote`` names the commit (a full commit hash needs no
  request); the digest is the commit with the subdirectory and
  ``--keep-git-dir`` (the commit names the whole tree).  The checkout, a
  shallow fetch of that one commit, happens only when the step runs.

Files land where the step reads them: a download as a 0600 file owned by
root whose mtime is its Last-Modified (the epoch without one), a checkout as
a tree owned by root; ``--chown``/``--chmod`` then apply as for any copy.
Everything fetched lives in per-build directories under ROOT/tmp, removed
when the build ends (:meth:`RemoteSources.close`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import xxhash

from builder.context import SourceView, resolve_in_root
from builder.errors import CopyError, RemoteSourceError, StepFailed
from builder.frontend import commands
from builder.plan.graph import Graph, Step
from builder.sources.urls import UNNAMED, GitSource, HttpSource, RemoteRef, is_commit, redact
from cache.files import write_atomically

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.ops.copy import CopyRequest, OwnerResolver
    from builder.sources.http import Download

__all__ = ["RemoteSources", "copy_with_remotes", "reads_unpinned_remote"]

_DOWNLOAD_MODE = 0o600  # BuildKit's http source writes 0600
_T = TypeVar("_T")


@dataclass(slots=True)
class _Http:
    """What one URL resolved to in this build."""

    digest: str  # sha256 of the content ("" when only the --checksum is known)
    filename: str
    last_modified: str
    staged: Path | None = None  # a directory holding the file under ``filename``


@dataclass(slots=True)
class _Git:
    commit: str
    staged: Path | None = None  # the directory whose contents the ADD copies


class RemoteSources:
    """Per build: resolves remote sources once each, and stages their files under ROOT/tmp."""

    def __init__(self, root: Path) -> None:
        self._tmp = root / "tmp"
        self._meta = root / "sources" / "http"
        self._lock = threading.Lock()
        self._locks: dict[object, threading.RLock] = {}
        self._http: dict[HttpSource, _Http] = {}
        self._git: dict[GitSource, _Git] = {}
        self._work: list[Path] = []

    # -- what the solver asks --------------------------------------------------

    def digest(self, step: Step) -> str:
        """The part of a step's cache key its remote sources contribute."""
        return self._with_location(
            step, lambda: "\0".join(self._digest(ref.source) for ref in step.remotes)
        )

    def _digest(self, source: HttpSource | GitSource) -> str:
        if isinstance(source, GitSource):
            git = self._resolve_git(source)
            return f"git:{git.commit}:{source.subdir}:{int(source.keep_git_dir)}"
        http = self._resolve_http(source)
        pinned = http.digest or source.checksum
        return f"http:{pinned}:{http.filename}:{http.last_modified}"

    # -- what the executor asks ------------------------------------------------

    def stage(self, step: Step, ref: RemoteRef) -> tuple[Path, str]:
        """(a directory, the source path inside it) holding what ``ref`` adds."""
        return self._with_location(step, lambda: self._stage(ref.source))

    def _stage(self, source: HttpSource | GitSource) -> tuple[Path, str]:
        with self._lock_for(source):
            if isinstance(source, GitSource):
                return self._stage_git(source), "/"
            http = self._resolve_http(source)
            if http.staged is None:
                download = self._download(source, etag="")
                assert download is not None  # no ETag was sent
                _verify_checksum(source, download)
                if http.digest and download.digest != http.digest:
                    # Keyed by an earlier answer (a 304): the server has changed since.
                    download.path.unlink(missing_ok=True)
                    raise RemoteSourceError(
                        f"ADD {redact(source.url)}: the content changed during the build "
                        f"({download.digest}, expected {http.digest})"
                    )
                http.last_modified = download.last_modified
                http.staged = self._land(download, http.filename)
            return http.staged, http.filename

    def close(self) -> None:
        """Remove everything staged; the build is over."""
        with self._lock:
            work, self._work = self._work, []
        for directory in work:
            shutil.rmtree(directory, ignore_errors=True)

    # -- http ------------------------------------------------------------------------

    def _resolve_http(self, source: HttpSource) -> _Http:
        with self._lock_for(source):
            known = self._http.get(source)
            if known is not None:
                return known
            if source.checksum and source.filename:
                # Pinned: the key needs no request (BuildKit's resolveMetadataStatic).
                resolved = _Http(digest="", filename=source.filename, last_modified="")
            else:
                resolved = self._fetch_for_key(source)
            self._http[source] = resolved
            return resolved

    def _fetch_for_key(self, source: HttpSource) -> _Http:
        remembered = self._remembered(source)
        etag = remembered.get("etag", "") if remembered else ""
        download = self._download(source, etag=etag)
        if download is None:
            assert remembered is not None
            return _Http(remembered["digest"], remembered["filename"],
                         remembered.get("last_modified", ""))
        _verify_checksum(source, download)
        filename = source.filename or download.disposition_name or UNNAMED
        resolved = _Http(download.digest, filename, download.last_modified)
        resolved.staged = self._land(download, filename)
        if download.etag:
            self._remember(source, download, filename)
        return resolved

    def _download(self, source: HttpSource, *, etag: str) -> Download | None:
        """A download; None when the server confirms ``etag`` (304)."""
        from builder.sources import http

        algorithm = source.checksum.partition(":")[0] if source.checksum else "sha256"
        result = http.fetch(source.url, self._new_work_dir(), checksum_algorithm=algorithm,
                            etag=etag)
        return None if isinstance(result, http.NotModified) else result

    def _land(self, download: Download, filename: str) -> Path:
        """The downloaded file renamed to its name in a directory of its own, 0600, with
        its Last-Modified (or the epoch) as mtime."""
        from builder.sources.http import last_modified_seconds

        directory = download.path.parent / "file"
        directory.mkdir()
        target = directory / filename
        os.chmod(download.path, _DOWNLOAD_MODE)
        seconds = last_modified_seconds(download.last_modified)
        os.utime(download.path, (seconds, seconds))
        os.rename(download.path, target)
        return directory

    def _meta_path(self, source: HttpSource) -> Path:
        name = xxhash.xxh3_128_hexdigest(f"{source.url}\0{source.filename}".encode())
        return self._meta / f"{name}.json"

    def _remembered(self, source: HttpSource) -> dict[str, str] | None:
        try:
            data = json.loads(self._meta_path(source).read_bytes())
        except (OSError, ValueError):
            return None
        fields = ("url", "etag", "digest", "filename")
        if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in fields):
            return None
        if data["url"] != source.url or not data["etag"] or not data["digest"]:
            return None
        return {key: value for key, value in data.items() if isinstance(value, str)}

    def _remember(self, source: HttpSource, download: Download, filename: str) -> None:
        record = {"url": source.url, "etag": download.etag, "digest": download.digest,
                  "filename": filename, "last_modified": download.last_modified}
        path = self._meta_path(source)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps(record, sort_keys=True).encode())
        except OSError:
            pass  # only an optimisation: the next build downloads again

    # -- git -------------------------------------------------------------------------

    def _resolve_git(self, source: GitSource) -> _Git:
        from builder.sources.git import resolve_commit

        with self._lock_for(source):
            known = self._git.get(source)
            if known is not None:
                return known
            commit = resolve_commit(source.remote, source.ref)
            if source.checksum and not commit.startswith(source.checksum):
                raise RemoteSourceError(
                    f"ADD {redact(source.remote)}: commit {commit} does not match "
                    f"--checksum={source.checksum}"
                )
            resolved = _Git(commit)
            self._git[source] = resolved
            return resolved

    def _stage_git(self, source: GitSource) -> Path:
        from builder.sources.git import checkout

        git = self._resolve_git(source)
        if git.staged is not None:
            return git.staged
        # --keep-git-dir keeps .git only with the whole tree, as BuildKit does.
        keep = source.keep_git_dir and not source.subdir
        tree = checkout(source.remote, source.ref, git.commit, self._new_work_dir(),
                        keep_git_dir=keep)
        staged = tree
        if source.subdir:
            view = SourceView(tree)
            inside = resolve_in_root(source.subdir, view.lstat, view.readlink)
            info = view.lstat(inside)
            if info is None or not stat.S_ISDIR(info.st_mode):
                raise RemoteSourceError(
                    f"ADD {redact(source.remote)}: {source.subdir!r} is not a directory "
                    f"at commit {git.commit}"
                )
            staged = tree / inside
        git.staged = staged
        return staged

    # -- plumbing ----------------------------------------------------------------------

    def _lock_for(self, source: object) -> threading.RLock:
        # Re-entrant: staging resolves under the same lock.
        with self._lock:
            return self._locks.setdefault(source, threading.RLock())

    def _new_work_dir(self) -> Path:
        self._tmp.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="remote-", dir=self._tmp))
        with self._lock:
            self._work.append(directory)
        return directory

    @staticmethod
    def _with_location(step: Step, work: Callable[[], _T]) -> _T:
        try:
            return work()
        except RemoteSourceError as err:
            raise StepFailed(str(err), location=step.location) from err
        except OSError as err:  # staging on this machine: a full disk, a name too long
            where = f": {os.fsdecode(err.filename)}" if err.filename else ""
            raise StepFailed(f"{step.instruction.keyword}: staging a remote source{where}: "
                             f"{err.strerror or err}", location=step.location) from err


def _verify_checksum(source: HttpSource, download: Download) -> None:
    if source.checksum and download.checked_digest != source.checksum:
        download.path.unlink(missing_ok=True)
        raise RemoteSourceError(
            f"ADD {redact(source.url)}: checksum mismatch: the content is "
            f"{download.checked_digest}, --checksum says {source.checksum}"
        )


def reads_unpinned_remote(graph: Graph) -> bool:
    """Whether a build reads a remote source whose content could change under the same
    Dockerfile (no --checksum, no commit hash): such a build must not be journaled."""
    for stage in graph.stages:
        for step in stage.steps:
            for ref in step.remotes:
                source = ref.source
                if isinstance(source, HttpSource) and not source.checksum:
                    return True
                if isinstance(source, GitSource) and not is_commit(source.ref):
                    return True
    return False


def copy_with_remotes(
    rootfs: Path,
    view: SourceView,
    request: CopyRequest,
    step: Step,
    remotes: RemoteSources,
    *,
    resolve_owner: OwnerResolver | None,
) -> None:
    """An ADD with remote sources: each source in order (later ones overwrite earlier
    ones, as in BuildKit), runs of local sources through one copy, each remote one
    from its staged directory.  Raises BuildError (StepFailed for a failed fetch)."""
    from builder.ops.copy import copy_into

    instruction = step.instruction
    assert isinstance(instruction, commands.Add)
    if len(request.sources) + len(request.inline_files) > 1:
        _require_directory(rootfs, request)
    remote_at = {ref.index: ref for ref in step.remotes}
    local: list[str] = []

    def flush(inline: bool) -> None:
        if local or (inline and request.inline_files):
            part = dataclasses.replace(
                request, sources=tuple(local),
                inline_files=request.inline_files if inline else (),
            )
            copy_into(rootfs, view, part, resolve_owner=resolve_owner)
            local.clear()

    for index, source in enumerate(request.sources):
        ref = remote_at.get(index)
        if ref is None:
            local.append(source)
            continue
        flush(inline=False)
        directory, path = remotes.stage(step, ref)
        # A download is unpacked only with an explicit --unpack (BuildKit's rule).
        unpack = isinstance(ref.source, HttpSource) and instruction.unpack is True
        part = dataclasses.replace(request, sources=(path,), inline_files=(), unpack=unpack,
                                   parents=False)
        copy_into(rootfs, SourceView(directory, owner=(0, 0)), part, resolve_owner=resolve_owner)
    flush(inline=True)


def _require_directory(rootfs: Path, request: CopyRequest) -> None:
    """Several sources need a destination that ends in / or is a directory (the check
    copy_into makes for the sources of one call, made here across them all)."""
    destination = request.destination
    if destination.endswith("/") or destination in ("", "."):
        return
    if not destination.startswith("/"):
        destination = f"{request.workdir.rstrip('/')}/{destination}"
    target = SourceView(rootfs)
    resolved = resolve_in_root(destination, target.lstat, target.readlink)
    info = target.lstat(resolved)
    if info is None or not stat.S_ISDIR(info.st_mode):
        raise CopyError(
            f"When using {request.keyword} with more than one source file,"
            " the destination must be a directory and end with a /"
        )

