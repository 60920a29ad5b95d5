"""RemoteSources: what a remote source adds to a cache key, what it costs, where it lands."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.context import SourceView
from builder.errors import CopyError, StepFailed
from builder.frontend import commands
from builder.ops.copy import CopyRequest
from builder.ops.remote import RemoteSources, copy_with_remotes, reads_unpinned_remote
from builder.plan.graph import BaseImage, Graph
from builder.plan.planner import PlanRequest, plan_build
from builder.plan.settings import ImageSettings
from tests.remote_servers import FileServer, Route, file_server

BASE = BaseImage("busybox", "sha256:" + "1" * 64, ImageSettings(), (), (), "amd64", "linux")


def _graph(dockerfile: str) -> Graph:
    def resolve(name: str, instruction: commands.Instruction) -> BaseImage:
        return BASE

    return plan_build(f"FROM busybox\n{dockerfile}\n".encode(), PlanRequest(), resolve)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as running:
        yield running


def test_a_pinned_download_is_keyed_without_a_request(server: FileServer, tmp_path: Path) -> None:
    body = b"pinned\n"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    server.routes["/p.bin"] = Route(body, {"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
    step = _graph(f"ADD --checksum={digest} {server.url('/p.bin')} /p").stages[0].steps[0]
    remote = RemoteSources(tmp_path)
    assert remote.digest(step) == f"http:{digest}:p.bin:"
    assert server.requests == []
    directory, name = remote.stage(step, step.remotes[0])
    staged = directory / name
    assert staged.read_bytes() == body
    info = staged.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_mtime == 1445412480
    assert server.statuses("/p.bin") == [200]
    remote.close()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_unpinned_download_is_fetched_once_and_remembered_by_etag(
    server: FileServer, tmp_path: Path
) -> None:
    server.routes["/u.txt"] = Route(b"one\n", {"ETag": '"a"'})
    step = _graph(f"ADD {server.url('/u.txt')} /u").stages[0].steps[0]
    first = RemoteSources(tmp_path)
    key = first.digest(step)
    assert key.startswith("http:sha256:" + hashlib.sha256(b"one\n").hexdigest())
    directory, name = first.stage(step, step.remotes[0])  # no second download
    assert (directory / name).read_bytes() == b"one\n"
    assert server.statuses("/u.txt") == [200]
    first.close()
    second = RemoteSources(tmp_path)  # the next build: a conditional request
    assert second.digest(step) == key
    assert server.statuses("/u.txt") == [200, 304]
    directory, name = second.stage(step, step.remotes[0])  # a miss must fetch the body
    assert (directory / name).read_bytes() == b"one\n"
    second.close()
    server.routes["/u.txt"] = Route(b"two\n", {"ETag": '"b"'})
    third = RemoteSources(tmp_path)
    assert third.digest(step) != key
    third.close()


def test_a_content_change_between_key_and_copy_is_an_error(
    server: FileServer, tmp_path: Path
) -> None:
    server.routes["/c"] = Route(b"one", {"ETag": '"1"'})
    step = _graph(f"ADD {server.url('/c')} /c").stages[0].steps[0]
    RemoteSources(tmp_path).digest(step)
    remote = RemoteSources(tmp_path)
    remote.digest(step)  # 304: keyed by the remembered digest
    server.routes["/c"] = Route(b"changed", {"ETag": '"1"'})  # a server that lies
    with pytest.raises(StepFailed, match="Dockerfile:2: .*content changed during the build"):
        remote.stage(step, step.remotes[0])
    remote.close()


def test_journal_soundness_needs_pins() -> None:
    digest = "sha256:" + "0" * 64
    assert reads_unpinned_remote(_graph("ADD https://h/x /x"))
    assert not reads_unpinned_remote(_graph(f"ADD --checksum={digest} https://h/x /x"))
    assert reads_unpinned_remote(_graph("ADD git://h/r#main /r"))
    assert not reads_unpinned_remote(_graph(f"ADD git://h/r#{'a' * 40} /r"))
    assert not reads_unpinned_remote(_graph("COPY x /x"))


@pytest.mark.root
def test_several_sources_need_a_directory_destination(server: FileServer, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("downloads land owned by root")
    server.routes["/a"] = Route(b"a")
    step = _graph(f"ADD {server.url('/a')} local /file").stages[0].steps[0]
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    request = CopyRequest(sources=(server.url("/a"), "local"), destination="/file")
    with pytest.raises(CopyError, match="must be a directory and end with a /"):
        copy_with_remotes(rootfs, SourceView(tmp_path), request, step, RemoteSources(tmp_path),
                          resolve_owner=None)
    assert server.requests == []  # refused before anything was fetched
    os.mkdir(rootfs / "file")  # an existing directory will do
    (tmp_path / "local").write_text("l")
    remote = RemoteSources(tmp_path)
    copy_with_remotes(rootfs, SourceView(tmp_path), request, step, remote, resolve_owner=None)
    remote.close()
    assert (rootfs / "file" / "a").read_bytes() == b"a"
    assert (rootfs / "file" / "local").read_text() == "l"
