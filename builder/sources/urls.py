"""Which ADD sources are remote, and what each asks for (pure: no network, no disk).

BuildKit's Dockerfile frontend reads each ADD source word in this order:

* a **git repository** when it is ``git://…`` or ``ssh://…``, an ``http(s)://``
  URL whose path ends in ``.git``, or scp-like ``user@host:path``; a
  ``#ref[:subdir]`` fragment (or, as in Dockerfile 1.18, the query keys
  ``ref``, ``branch``, ``tag``, ``subdir``, ``checksum``/``commit`` and
  ``keep-git-dir``) picks what to check out;
* else a **download** when it starts with ``http://`` or ``https://``;
* else a path in the build context (or the ``--from`` source).

COPY refuses the first two.  ``--checksum`` needs exactly one source, a
download (``sha256:…``, ``sha384:…`` or ``sha512:…`` of its content) or a
git repository (the commit, or a prefix of it).
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass

from builder.errors import BadFlag, DockerfileError, SourceLocation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.frontend import commands

__all__ = [
    "GitSource",
    "HttpSource",
    "RemoteRef",
    "is_commit",
    "parse_git_source",
    "parse_http_source",
    "redact",
    "remote_sources",
]

_SCHEME = re.compile(r"[a-zA-Z0-9]+://")
_GIT_SCHEMES = frozenset({"http", "https", "ssh", "git"})
# scp-like ssh: user@host:path, with an optional #fragment (the user is required
# here, so a context path such as "dir:name" is never taken for a repository).
_SCP = re.compile(r"([a-zA-Z0-9_-]+)@([a-zA-Z0-9.-]+):(.*?)(?:#(.*))?", re.DOTALL)
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{1,64}")
_DIGEST_SIZES = {"sha256": 64, "sha384": 96, "sha512": 128}
_QUERY_KEYS = frozenset({"ref", "branch", "tag", "subdir", "checksum", "commit", "keep-git-dir"})
UNNAMED = "__unnamed__"


@dataclass(frozen=True, slots=True)
class HttpSource:
    """``ADD http(s)://…``: ``filename`` comes from the URL's path ("" when it names no
    file); ``checksum`` is the ``--checksum`` digest ("" when not pinned)."""

    url: str
    filename: str
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class GitSource:
    """``ADD <git repository>``: what to clone and which part of it lands.

    ``remote`` is the URL handed to git (no fragment, none of our query keys);
    ``ref`` a branch, tag, other ref or full commit ("" is the remote's HEAD);
    ``subdir`` the directory whose contents are copied ("" for the whole tree);
    ``checksum`` the expected commit (or a prefix of it).
    """

    remote: str
    ref: str = ""
    subdir: str = ""
    keep_git_dir: bool = False
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class RemoteRef:
    """A remote source of one ADD, by its position among the instruction's sources."""

    index: int
    source: HttpSource | GitSource


def is_commit(ref: str) -> bool:
    """A full SHA-1 or SHA-256 commit name (short hashes are ref names, as in BuildKit)."""
    return _COMMIT.fullmatch(ref) is not None


def redact(url: str) -> str:
    """The URL with any password replaced, for messages (Go's URL.Redacted)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:xxxxx@{host}"))


def parse_http_source(text: str, checksum: str = "") -> HttpSource | None:
    """The download a source word names, or None when it is no http(s) URL."""
    if not text.startswith(("http://", "https://")):
        return None
    return HttpSource(url=text, filename=url_filename(text), checksum=checksum)


def url_filename(url: str) -> str:
    """The last element of the URL's (decoded) path, as Go's path.Base gives it; "" when
    the path names no file (empty, "/", or a name no file can have)."""
    try:
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    except ValueError:
        return ""
    base = posixpath.basename(path.rstrip("/"))
    if base in ("", ".", "..") or "\0" in base:
        return ""
    return base


def parse_git_source(
    text: str, *, keep_git_dir: bool = False, checksum: str = ""
) -> GitSource | None:
    """The git repository a source word names, or None when it names none.

    Raises DockerfileError for a repository URL whose ref options contradict.
    """
    if text.startswith(("./", "../")):
        return None
    scheme = _SCHEME.match(text)
    if scheme is not None:
        name = scheme.group()[:-3].lower()
        if name not in _GIT_SCHEMES:
            return None
        try:
            parts = urllib.parse.urlsplit(text)
        except ValueError:
            return None
        if name in ("http", "https") and not parts.path.endswith(".git"):
            return None
        remote = urllib.parse.urlunsplit(parts._replace(fragment=""))
        fragment = parts.fragment
        query = parts.query
    else:
        match = _SCP.fullmatch(text)
        if match is None:
            return None
        path, _, query = match[3].partition("?")
        remote = f"{match[1]}@{match[2]}:{path}"
        fragment = match[4] or ""
    source = GitSource(remote=remote, keep_git_dir=keep_git_dir, checksum=checksum)
    if fragment:
        ref, _, subdir = fragment.partition(":")
        source = GitSource(remote, ref, _clean_subdir(subdir), keep_git_dir, checksum)
    if query and _QUERY_KEYS.intersection(urllib.parse.parse_qs(query, keep_blank_values=True)):
        source = _with_query(source, query, fragment, text)
    return source


def _with_query(source: GitSource, query: str, fragment: str, text: str) -> GitSource:
    """Dockerfile 1.18's query form: ``repo.git?branch=main&subdir=docs``."""
    values = urllib.parse.parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(values) - _QUERY_KEYS)
    if unknown:
        raise DockerfileError(f"invalid git URL {redact(text)}: unknown query key {unknown[0]!r}")
    if fragment:
        raise DockerfileError(f"invalid git URL {redact(text)}: both a fragment and a query")
    single = {key: items[-1] for key, items in values.items()}
    refs = [key for key in ("ref", "branch", "tag") if key in single]
    if len(refs) > 1:
        raise DockerfileError(f"invalid git URL {redact(text)}: {' and '.join(refs)} both given")
    ref = single.get("ref", "")
    if "branch" in single:
        ref = "refs/heads/" + single["branch"]
    elif "tag" in single:
        ref = "refs/tags/" + single["tag"]
    commit = single.get("checksum") or single.get("commit") or ""
    if commit and not ref:
        ref = commit
    keep = source.keep_git_dir or single.get("keep-git-dir", "").lower() in ("1", "true")
    remote = source.remote.partition("?")[0]
    return GitSource(remote, ref, _clean_subdir(single.get("subdir", "")), keep,
                     source.checksum or commit)


def _clean_subdir(subdir: str) -> str:
    """The subdirectory, cleaned and relative; "" for the whole tree."""
    cleaned = posixpath.normpath("/" + subdir).lstrip("/")
    return "" if cleaned in ("", ".") else cleaned


def remote_sources(instruction: commands.Copy | commands.Add) -> tuple[RemoteRef, ...]:
    """The remote sources of a COPY or ADD (expanded), with BuildKit's checks.

    Raises DockerfileError at the instruction: a URL or repository in COPY,
    ``--checksum`` on several sources or on a path, a malformed digest.
    """
    from builder.frontend import commands

    is_add = isinstance(instruction, commands.Add)
    checksum = instruction.checksum if isinstance(instruction, commands.Add) else ""
    keep = instruction.keep_git_dir if isinstance(instruction, commands.Add) else False
    location = instruction.location
    found: list[RemoteRef] = []
    for index, text in enumerate(instruction.sources):
        try:
            remote: HttpSource | GitSource | None = parse_git_source(
                text, keep_git_dir=keep, checksum=checksum
            )
        except DockerfileError as err:
            raise err.with_location(location)
        if remote is None:
            remote = parse_http_source(text, checksum)
        if remote is None:
            continue
        if not is_add:
            what = "a git ref" if isinstance(remote, GitSource) else "a URL"
            raise DockerfileError(f"source can't be {what} for COPY", location=location)
        found.append(RemoteRef(index, remote))
    if checksum:
        if len(instruction.sources) != 1:
            raise BadFlag("checksum can't be specified for multiple sources", location=location)
        if not found:
            raise BadFlag("checksum requires HTTP(S) or Git sources", location=location)
        _check_checksum(found[0].source, checksum, location)
    return tuple(found)


def _check_checksum(
    source: HttpSource | GitSource, checksum: str, location: SourceLocation
) -> None:
    if isinstance(source, GitSource):
        if _HEX.fullmatch(checksum) is None:
            raise BadFlag(f"invalid checksum {checksum!r}: expected a commit (hexadecimal)",
                          location=location)
        return
    algorithm, _, hex_digest = checksum.partition(":")
    size = _DIGEST_SIZES.get(algorithm)
    if size is None or len(hex_digest) != size or hex_digest.strip("0123456789abcdef"):
        raise BadFlag(
            f"invalid checksum digest format: {checksum!r} (expected sha256:<64 hex digits>,"
            " sha384:… or sha512:…)",
            location=location,
        )
