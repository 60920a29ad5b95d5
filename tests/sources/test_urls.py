"""Which ADD sources are URLs or git repositories, and BuildKit's checks on them."""

from __future__ import annotations

import pytest

from builder.errors import BadFlag, DockerfileError
from builder.frontend import commands
from builder.frontend.instructions import parse_instruction
from builder.frontend.parser import parse_dockerfile
from builder.sources.urls import (
    GitSource,
    HttpSource,
    is_commit,
    parse_git_source,
    parse_http_source,
    redact,
    remote_sources,
    url_filename,
)


def _instruction(line: str) -> commands.Copy | commands.Add:
    tree = parse_dockerfile(f"FROM scratch\n{line}\n".encode())
    instruction = parse_instruction(tree.nodes[1], filename="Dockerfile", lines=tree.lines)
    assert isinstance(instruction, commands.Copy | commands.Add)
    return instruction


@pytest.mark.parametrize(("text", "expected"), [
    ("https://github.com/moby/buildkit.git#v0.10.1:docs",
     GitSource("https://github.com/moby/buildkit.git", "v0.10.1", "docs")),
    ("https://host/repo.git", GitSource("https://host/repo.git")),
    ("http://host:8080/a/repo.git#main", GitSource("http://host:8080/a/repo.git", "main")),
    ("git://127.0.0.1:9418/repo#abc", GitSource("git://127.0.0.1:9418/repo", "abc")),
    ("ssh://git@host/repo.git#:sub/dir", GitSource("ssh://git@host/repo.git", "", "sub/dir")),
    ("git@github.com:user/repo.git#main:src",
     GitSource("git@github.com:user/repo.git", "main", "src")),
    # The subdirectory is cleaned and can never climb out of the tree.
    ("git://h/r#x:../../etc/", GitSource("git://h/r", "x", "etc")),
    ("git://h/r#x:/", GitSource("git://h/r", "x", "")),
    # Dockerfile 1.18's query form.
    ("https://h/r.git?branch=dev&subdir=docs", GitSource("https://h/r.git", "refs/heads/dev", "docs")),
    ("https://h/r.git?tag=v1", GitSource("https://h/r.git", "refs/tags/v1")),
    ("https://h/r.git?commit=" + "a" * 40 + "&keep-git-dir=true",
     GitSource("https://h/r.git", "a" * 40, "", True, "a" * 40)),
])
def test_git_repositories(text: str, expected: GitSource) -> None:
    assert parse_git_source(text) == expected


@pytest.mark.parametrize("text", [
    "https://example.com/file.tar.gz",  # http(s) is git only with a .git path
    "https://example.com/repo.git/",
    "ftp://example.com/x.git",
    "./repo.git", "../x", "dir:name", "src/file", "github.com/foo/bar",
])
def test_not_git(text: str) -> None:
    assert parse_git_source(text) is None


def test_contradicting_git_queries_are_refused() -> None:
    with pytest.raises(DockerfileError, match="branch and tag"):
        parse_git_source("https://h/r.git?branch=a&tag=b")
    with pytest.raises(DockerfileError, match="fragment and a query"):
        parse_git_source("https://h/r.git?branch=a#b")
    with pytest.raises(DockerfileError, match="unknown query key 'x'"):
        parse_git_source("https://h/r.git?branch=a&x=1")
    # A query without our keys belongs to the remote's URL.
    assert parse_git_source("https://h/r.git?token=1") == GitSource("https://h/r.git?token=1")


@pytest.mark.parametrize(("url", "name"), [
    ("https://example.com/dir/file.tar.gz", "file.tar.gz"),
    ("https://example.com/dir/", "dir"),  # Go's path.Base drops the trailing slash
    ("https://example.com/a%20b?x=1#frag", "a b"),
    ("https://example.com/", ""),
    ("https://example.com", ""),
    ("https://example.com/..", ""),
])
def test_download_names_come_from_the_url_path(url: str, name: str) -> None:
    assert url_filename(url) == name
    source = parse_http_source(url)
    assert source == HttpSource(url, name)


def test_only_http_and_https_are_downloads() -> None:
    assert parse_http_source("ftp://example.com/x") is None
    assert parse_http_source("HTTP://example.com/x") is None  # BuildKit's prefix test is exact


def test_commits_and_redaction() -> None:
    assert is_commit("a" * 40) and is_commit("b" * 64)
    assert not is_commit("abc1234") and not is_commit("A" * 40)
    assert redact("https://user:secret@host/x") == "https://user:xxxxx@host/x"
    assert redact("https://host/x") == "https://host/x"


def test_remote_sources_keep_their_position_and_flags() -> None:
    add = _instruction("ADD --keep-git-dir local.txt https://h/f.txt git://h/r#v1 /dst/")
    refs = remote_sources(add)
    assert [ref.index for ref in refs] == [1, 2]
    assert refs[0].source == HttpSource("https://h/f.txt", "f.txt")
    assert refs[1].source == GitSource("git://h/r", "v1", keep_git_dir=True)


def test_copy_refuses_urls_and_repositories_at_its_line() -> None:
    with pytest.raises(DockerfileError, match="source can't be a URL for COPY") as caught:
        remote_sources(_instruction("COPY https://h/f.txt /f"))
    assert caught.value.location is not None and caught.value.location.start_line == 2
    with pytest.raises(DockerfileError, match="source can't be a git ref for COPY"):
        remote_sources(_instruction("COPY git@h:r.git /r"))


def test_checksum_rules() -> None:
    digest = "sha256:" + "0" * 64
    pinned = remote_sources(_instruction(f"ADD --checksum={digest} https://h/f /f"))
    assert pinned[0].source == HttpSource("https://h/f", "f", digest)
    git = remote_sources(_instruction("ADD --checksum=abc123 git://h/r /r"))
    assert git[0].source == GitSource("git://h/r", checksum="abc123")
    with pytest.raises(BadFlag, match="multiple sources"):
        remote_sources(_instruction(f"ADD --checksum={digest} https://h/a https://h/b /d/"))
    with pytest.raises(BadFlag, match="requires HTTP\\(S\\) or Git sources"):
        remote_sources(_instruction(f"ADD --checksum={digest} local /d"))
    for bad in ("sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "0" * 64):
        with pytest.raises(BadFlag, match="invalid checksum digest format"):
            remote_sources(_instruction(f"ADD --checksum={bad} https://h/f /f"))
    assert remote_sources(_instruction("ADD --checksum=sha512:" + "f" * 128 + " https://h/f /f"))
    with pytest.raises(BadFlag, match="expected a commit"):
        remote_sources(_instruction("ADD --checksum=xyz git://h/r /r"))
