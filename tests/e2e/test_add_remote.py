"""ADD of http(s) URLs and git repositories, end to end, against servers on 127.0.0.1.

The Dockerfiles check what landed (``RUN test ...``); the servers count
requests, which shows what a cache hit costs.
"""

from __future__ import annotations

import hashlib
import io
import re
import ssl
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner, make_context, summary_counts
from tests.remote_servers import (
    FileServer,
    Repository,
    Route,
    file_server,
    git,
    git_daemon,
    git_http_server,
    make_repository,
    self_signed_certificate,
)

pytestmark = pytest.mark.root

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
LAST_MODIFIED_SECONDS = 1445412480


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as running:
        yield running


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_add_url_mode_mtime_owner_name_and_no_unpacking(
    pybuild: Runner, server: FileServer, tmp_path: Path, pybuild_root: Path
) -> None:
    server.routes["/files/hello.txt"] = Route(b"hello world\n", {"Last-Modified": LAST_MODIFIED})
    server.routes["/plain"] = Route(b"no date\n")
    server.routes["/pkg.tar.gz"] = Route(_tarball({"inside.txt": b"x"}))
    server.routes["/"] = Route(b"disposed\n", {
        "Content-Disposition": 'attachment; filename="report.csv"'})
    context = make_context(tmp_path, (
        "FROM busybox\n"
        f"ADD {server.url('/files/hello.txt')} /downloads/\n"
        f"ADD --chown=app:app --chmod=640 {server.url('/files/hello.txt')} /renamed.txt\n"
        f"ADD {server.url('/plain')} local.txt /mixed/\n"
        f"ADD {server.url('/pkg.tar.gz')} /archives/\n"
        f"ADD --unpack=true {server.url('/pkg.tar.gz')} /unpacked/\n"
        f"ADD {server.url('/')} /named/\n"
        'RUN test "$(cat /downloads/hello.txt)" = "hello world" '
        f'&& test "$(stat -c "%a %u:%g %Y" /downloads/hello.txt)" = "600 0:0 {LAST_MODIFIED_SECONDS}" '
        '&& test "$(stat -c "%a %u:%g" /renamed.txt)" = "640 1000:1000" '
        '&& test "$(stat -c "%Y" /mixed/plain)" = 0 && test "$(cat /mixed/local.txt)" = local '
        "&& test -f /archives/pkg.tar.gz && ! test -e /archives/inside.txt "
        "&& test -f /unpacked/inside.txt && test \"$(cat /named/report.csv)\" = disposed\n"
    ), {"local.txt": "local"})
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr
    assert summary_counts(result.stderr) == (7, 0)
    assert list((pybuild_root / "tmp").iterdir()) == []  # downloads are gone with the build


def test_checksum_pins_the_content_and_a_hit_costs_no_request(
    pybuild: Runner, server: FileServer, tmp_path: Path
) -> None:
    body = b"pinned content\n"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    server.routes["/pinned.bin"] = Route(body)
    dockerfile = (
        "FROM busybox\n"
        f"ADD --checksum={digest} {server.url('/pinned.bin')} /pinned.bin\n"
        'RUN test "$(cat /pinned.bin)" = "pinned content"\n'
    )
    context = make_context(tmp_path, dockerfile)
    first = pybuild("build", "--progress", "plain", str(context))
    assert first.returncode == 0, first.stderr
    assert server.statuses("/pinned.bin") == [200]
    second = pybuild("build", "--progress", "plain", "--iidfile", str(tmp_path / "iid"),
                     str(context))
    assert second.returncode == 0, second.stderr
    assert summary_counts(second.stderr) == (0, 2)
    assert server.statuses("/pinned.bin") == [200]  # the hit made no request at all

    server.routes["/pinned.bin"] = Route(b"tampered\n")
    (context / "Dockerfile").write_text(dockerfile.replace("RUN test", "RUN true && test"))
    # --no-cache runs the step, which must fetch: the content no longer matches.
    tampered = pybuild("build", "--progress", "plain", "--no-cache", str(context))
    assert tampered.returncode == 1
    assert server.statuses("/pinned.bin") == [200, 200]
    assert "Dockerfile:2: ADD " in tampered.stderr
    assert "checksum mismatch" in tampered.stderr
    assert f"--checksum says {digest}" in tampered.stderr
    assert "Traceback" not in tampered.stderr


def test_unpinned_url_is_checked_by_etag_and_a_change_reruns(
    pybuild: Runner, server: FileServer, tmp_path: Path
) -> None:
    server.routes["/v.txt"] = Route(b"one\n", {"ETag": '"1"'})
    context = make_context(tmp_path, (
        "FROM busybox\n"
        f"ADD {server.url('/v.txt')} /v.txt\n"
        "RUN cp /v.txt /copy.txt\n"
    ))
    first = pybuild("build", "--progress", "plain", str(context))
    assert first.returncode == 0, first.stderr
    second = pybuild("build", "--progress", "plain", str(context))
    assert second.returncode == 0, second.stderr
    assert summary_counts(second.stderr) == (0, 2)
    # The rebuild asked with If-None-Match and got no body; no journal shortcut
    # answers a build whose URL may have changed.
    assert server.statuses("/v.txt") == [200, 304]
    server.routes["/v.txt"] = Route(b"two\n", {"ETag": '"2"'})
    (context / "Dockerfile").write_text(
        (context / "Dockerfile").read_text()
        + 'RUN test "$(cat /copy.txt)" = two\n'
    )
    third = pybuild("build", "--progress", "plain", str(context))
    assert third.returncode == 0, third.stderr
    assert summary_counts(third.stderr) == (3, 0)
    assert server.statuses("/v.txt") == [200, 304, 200]


def test_fetch_errors_name_the_dockerfile_line(
    pybuild: Runner, server: FileServer, tmp_path: Path
) -> None:
    context = make_context(tmp_path, f"FROM busybox\nRUN true\nADD {server.url('/missing')} /m\n")
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 1
    assert re.search(r"Dockerfile:3: fetching http://127\.0\.0\.1:\d+/missing: HTTP 404",
                     result.stderr), result.stderr
    copy = make_context(tmp_path, f"FROM busybox\nCOPY {server.url('/x')} /x\n")
    refused = pybuild("build", str(copy))
    assert refused.returncode == 1
    assert "Dockerfile:2: source can't be a URL for COPY" in refused.stderr


def test_https_with_a_trusted_and_an_untrusted_certificate(
    pybuild: Runner, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with file_server(tls) as server:
        server.routes["/s.txt"] = Route(b"over tls\n")
        context = make_context(tmp_path, (
            f"FROM busybox\nADD {server.url('/s.txt')} /s.txt\n"
            'RUN test "$(cat /s.txt)" = "over tls"\n'
        ))
        untrusted = pybuild("build", "--progress", "plain", str(context))
        assert untrusted.returncode == 1
        assert "certificate" in untrusted.stderr and "Dockerfile:2" in untrusted.stderr
        trusted = pybuild("build", "--progress", "plain", str(context),
                          env={"SSL_CERT_FILE": str(cert)})
        assert trusted.returncode == 0, trusted.stderr


# -- git ------------------------------------------------------------------------------


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    repo = make_repository(tmp_path / "git")
    repo.commit({"README": "first\n", "docs/guide.txt": "guide v1\n"}, "first")
    git("tag", "-a", "v1", "-m", "release 1", cwd=repo.work)
    repo.commit({"README": "second\n"}, "second")
    repo.push()
    return repo


def test_add_git_ref_subdir_and_keep_git_dir_over_git_daemon(
    pybuild: Runner, repository: Repository, tmp_path: Path
) -> None:
    first = git("rev-parse", "v1^{commit}", cwd=repository.work)
    with git_daemon(repository.bare.parent) as url:
        remote = f"{url}/repo.git"
        context = make_context(tmp_path, (
            "FROM busybox\n"
            f"ADD {remote}#v1:docs /guide/\n"
            f"ADD --chown=app {remote} /head/\n"
            f"ADD --keep-git-dir=true {remote}#main /withgit/\n"
            f"ADD {remote}#{first} /pinned/\n"
            'RUN test "$(cat /guide/guide.txt)" = "guide v1" && ! test -e /guide/README '
            '&& test "$(cat /head/README)" = second && ! test -e /head/.git '
            '&& test "$(stat -c %u /head/README)" = 1000 '
            "&& test -d /withgit/.git && test -f /withgit/.git/HEAD "
            '&& test "$(cat /pinned/README)" = first\n'
        ))
        result = pybuild("build", "--progress", "plain", str(context))
        assert result.returncode == 0, result.stderr
        assert summary_counts(result.stderr) == (5, 0)
        cached = pybuild("build", "--progress", "plain", str(context))
        assert cached.returncode == 0, cached.stderr
        assert summary_counts(cached.stderr) == (0, 5)
        # A new commit on main: the steps reading main (and what follows) run again.
        repository.commit({"README": "third\n"}, "third")
        repository.push()
        (context / "Dockerfile").write_text((context / "Dockerfile").read_text().replace(
            "= second", "= third"))
        moved = pybuild("build", "--progress", "plain", str(context))
        assert moved.returncode == 0, moved.stderr
        assert summary_counts(moved.stderr) == (4, 1)


def test_add_git_over_smart_http_with_checksum(
    pybuild: Runner, repository: Repository, tmp_path: Path
) -> None:
    head = git("rev-parse", "HEAD", cwd=repository.work)
    with git_http_server(repository.bare.parent) as (url, _):
        context = make_context(tmp_path, (
            "FROM busybox\n"
            f"ADD --checksum={head[:12]} {url}/repo.git?branch=main /src\n"
            'RUN test "$(cat /src/README)" = second\n'
        ))
        result = pybuild("build", "--progress", "plain", str(context))
        assert result.returncode == 0, result.stderr
        wrong = make_context(tmp_path, f"FROM busybox\nADD --checksum=0000 {url}/repo.git /src\n")
        mismatch = pybuild("build", "--progress", "plain", str(wrong))
        assert mismatch.returncode == 1
        assert f"Dockerfile:2: ADD {url}/repo.git: commit {head} does not match" \
            in mismatch.stderr
        missing = make_context(tmp_path, f"FROM busybox\nADD {url}/repo.git#nope /src\n")
        failed = pybuild("build", "--progress", "plain", str(missing))
        assert failed.returncode == 1
        assert "Dockerfile:2: reading" in failed.stderr
        assert "no branch, tag or ref named 'nope'" in failed.stderr
