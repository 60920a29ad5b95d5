"""git for ADD: which commit a ref names (ls-remote), and shallow checkouts of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import RemoteSourceError
from builder.sources.git import checkout, resolve_commit
from tests.remote_servers import Repository, git, git_daemon, git_http_server, make_repository


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    repo = make_repository(tmp_path / "git")
    repo.commit({"README": "one\n", "sub/inner.txt": "inner one\n"}, "one")
    git("tag", "-a", "v1", "-m", "annotated", cwd=repo.work)
    git("tag", "light", cwd=repo.work)
    repo.commit({"README": "two\n"}, "two")
    git("branch", "v1-branch", cwd=repo.work)
    repo.push()
    git("push", "-q", str(repo.bare), "v1-branch", cwd=repo.work)
    return repo


@pytest.fixture
def daemon(repository: Repository) -> Iterator[str]:
    with git_daemon(repository.bare.parent) as url:
        yield f"{url}/repo.git"


def _rev(repository: Repository, ref: str) -> str:
    return git("rev-parse", f"{ref}^{{commit}}", cwd=repository.work)


def test_refs_resolve_as_buildkit_resolves_them(repository: Repository, daemon: str) -> None:
    assert resolve_commit(daemon, "") == _rev(repository, "main")  # the remote's HEAD
    assert resolve_commit(daemon, "main") == _rev(repository, "main")
    assert resolve_commit(daemon, "refs/heads/main") == _rev(repository, "main")
    # An annotated tag names the commit it points to, not the tag object.
    assert resolve_commit(daemon, "v1") == _rev(repository, "v1")
    assert resolve_commit(daemon, "refs/tags/light") == _rev(repository, "light")
    # "v1-branch" is a branch; "v1" is matched exactly, never by a longer name.
    assert resolve_commit(daemon, "v1-branch") == _rev(repository, "main")
    full = _rev(repository, "v1")
    assert resolve_commit(daemon, full) == full  # a full hash needs no request
    with pytest.raises(RemoteSourceError, match="no branch, tag or ref named 'nope'"):
        resolve_commit(daemon, "nope")
    with pytest.raises(RemoteSourceError, match=f"no branch, tag or ref named '{full[:7]}'"):
        resolve_commit(daemon, full[:7])  # short hashes are not supported, as in BuildKit


def test_checkout_without_and_with_the_git_dir(
    repository: Repository, daemon: str, tmp_path: Path
) -> None:
    commit = _rev(repository, "v1")
    (tmp_path / "a").mkdir()
    tree = checkout(daemon, "v1", commit, tmp_path / "a", keep_git_dir=False)
    assert (tree / "README").read_text() == "one\n"
    assert (tree / "sub" / "inner.txt").read_text() == "inner one\n"
    assert not (tree / ".git").exists()
    (tmp_path / "b").mkdir()
    kept = checkout(daemon, "main", _rev(repository, "main"), tmp_path / "b", keep_git_dir=True)
    assert (kept / "README").read_text() == "two\n"
    assert git("rev-parse", "HEAD", cwd=kept) == _rev(repository, "main")
    assert git("remote", "get-url", "origin", cwd=kept) == daemon


def test_checkout_over_smart_http(repository: Repository, tmp_path: Path) -> None:
    with git_http_server(repository.bare.parent) as (url, requests):
        remote = f"{url}/repo.git"
        commit = resolve_commit(remote, "main")
        assert commit == _rev(repository, "main")
        tree = checkout(remote, "main", commit, tmp_path, keep_git_dir=False)
    assert (tree / "README").read_text() == "two\n"
    assert any(path.endswith("git-upload-pack") for _, path, _ in requests)


def test_unreachable_remotes_fail_with_the_url(tmp_path: Path) -> None:
    with pytest.raises(RemoteSourceError, match="reading git://127.0.0.1:1/r.git: "):
        resolve_commit("git://127.0.0.1:1/r.git", "main")
