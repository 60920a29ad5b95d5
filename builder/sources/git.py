"""git for ``ADD <repository>``: the commit a ref names, and a shallow checkout of it.

The system ``git`` does the work, with the user's and the system's git
configuration out of the picture (as BuildKit runs it: no ``HOME``, no
``/etc/gitconfig``, no terminal prompts), so a build does not depend on
who runs it.  Submodules from the local file system are refused
(``protocol.file.allow=user``), so a repository cannot pull host files in.

Which commit a ref names is asked with ``git ls-remote`` (no clone): an
exact ``refs/…`` name first, then a branch, then a tag (peeled to its
commit), then ``refs/<ref>``; a full commit hash names itself.  The
checkout fetches that one commit (``--depth=1``) and falls back to fetching
the branches and tags when the server will not serve a bare commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from builder.errors import RemoteSourceError
from builder.sources.urls import is_commit, redact

__all__ = ["checkout", "resolve_commit"]


def _environment() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": "/dev/null",  # no ~/.gitconfig
        "LC_ALL": "C",
        # ssh remotes: never ask a question nobody can answer.
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }


def _git(args: list[str], *, cwd: Path | None = None, what: str) -> str:
    command = ["git", "-c", "protocol.file.allow=user", *args]
    try:
        result = subprocess.run(
            command, cwd=cwd, env=_environment(), capture_output=True, text=True,
            errors="replace", check=False, stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as err:
        raise RemoteSourceError(f"{what}: git is not installed") from err
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        detail = "; ".join(lines[-3:]) or f"git exited with status {result.returncode}"
        raise RemoteSourceError(f"{what}: {detail}")
    return result.stdout


def resolve_commit(remote: str, ref: str) -> str:
    """The commit ``ref`` names in ``remote`` ("" names the remote's HEAD)."""
    if is_commit(ref):
        return ref
    shown = redact(remote)
    if not ref:
        listing = _git(["ls-remote", remote, "HEAD"], what=f"reading {shown}")
        refs = _parse_listing(listing)
        if "HEAD" not in refs:
            raise RemoteSourceError(f"reading {shown}: the repository has no HEAD")
        return refs["HEAD"]
    # "v1" alone does not match the peeled "refs/tags/v1^{}" line: ask for both.
    listing = _git(["ls-remote", remote, ref, f"{ref}^{{}}"], what=f"reading {shown}")
    refs = _parse_listing(listing)
    short = ref.removeprefix("refs/")
    for name in (
        ref if ref.startswith("refs/") else "",
        f"refs/heads/{short}",
        f"refs/tags/{short}^{{}}",
        f"refs/tags/{short}",
        f"refs/{short}",
    ):
        if name and name in refs:
            return refs[name]
    raise RemoteSourceError(f"reading {shown}: no branch, tag or ref named {ref!r}")


def _parse_listing(listing: str) -> dict[str, str]:
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        if name and is_commit(sha):
            refs.setdefault(name, sha)
    return refs


def checkout(
    remote: str, ref: str, commit: str, directory: Path, *, keep_git_dir: bool
) -> Path:
    """Check ``commit`` (what ``ref`` named) out into ``directory``/tree; returns that path.

    Submodules are checked out too.  The ``.git`` directory is removed
    unless ``keep_git_dir``.
    """
    shown = redact(remote)
    tree = directory / "tree"
    tree.mkdir()
    _git(["-c", "init.defaultBranch=main", "init", "-q", str(tree)], what=f"cloning {shown}")
    _git(["remote", "add", "origin", remote], cwd=tree, what=f"cloning {shown}")
    _fetch(tree, remote, ref, commit)
    _git(["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit], cwd=tree,
         what=f"checking out {commit} of {shown}")
    if (tree / ".gitmodules").exists():
        _git(["submodule", "update", "--init", "--recursive", "--depth=1"], cwd=tree,
             what=f"checking out the submodules of {shown}")
    if keep_git_dir:
        (tree / ".git" / "FETCH_HEAD").unlink(missing_ok=True)
        _git(["reflog", "expire", "--all", "--expire=now"], cwd=tree, what=f"cloning {shown}")
    else:
        shutil.rmtree(tree / ".git")
    return tree


def _fetch(tree: Path, remote: str, ref: str, commit: str) -> None:
    """Fetch ``commit``: by itself (protocol v2 servers allow it), else by its ref name,
    else every branch and tag."""
    shown = redact(remote)
    attempts = [["fetch", "-q", "--depth=1", "--no-tags", "origin", commit]]
    if ref and not is_commit(ref):
        attempts.append(["fetch", "-q", "--depth=1", "--no-tags", "origin", ref])
    attempts.append(["fetch", "-q", "--no-tags", "origin",
                     "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"])
    failure: RemoteSourceError | None = None
    for arguments in attempts:
        try:
            _git(arguments, cwd=tree, what=f"fetching {shown}")
        except RemoteSourceError as err:
            failure = err
            continue
        if _has_commit(tree, commit):
            return
    if failure is not None:
        raise failure
    raise RemoteSourceError(f"fetching {shown}: commit {commit} is not in the repository")


def _has_commit(tree: Path, commit: str) -> bool:
    try:
        _git(["cat-file", "-e", f"{commit}^{{commit}}"], cwd=tree, what="")
    except RemoteSourceError:
        return False
    return True
