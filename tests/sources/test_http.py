"""Downloads: streamed to disk, hashed, conditional on an ETag, over http and https."""

from __future__ import annotations

import hashlib
import ssl
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import RemoteSourceError
from builder.sources.http import Download, NotModified, fetch, last_modified_seconds
from tests.remote_servers import FileServer, Route, file_server, self_signed_certificate


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as running:
        yield running


def test_a_download_lands_in_the_directory_with_its_digest_and_headers(
    server: FileServer, tmp_path: Path
) -> None:
    body = b"hello world\n"
    server.routes["/f.txt"] = Route(body, {
        "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT", "ETag": 'W/"v1"',
        "Content-Disposition": 'attachment; filename="../evil/name.bin"',
    })
    result = fetch(server.url("/f.txt"), tmp_path, checksum_algorithm="sha512")
    assert isinstance(result, Download)
    assert result.path.parent == tmp_path and result.path.read_bytes() == body
    assert result.digest == "sha256:" + hashlib.sha256(body).hexdigest()
    assert result.checked_digest == "sha512:" + hashlib.sha512(body).hexdigest()
    assert result.last_modified == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert result.etag == '"v1"'  # weak validators compare as strong ones, as BuildKit does
    assert result.disposition_name == "name.bin"  # only the last element of a name


def test_a_matching_etag_is_not_modified(server: FileServer, tmp_path: Path) -> None:
    server.routes["/f"] = Route(b"x", {"ETag": '"1"'})
    assert isinstance(fetch(server.url("/f"), tmp_path, etag='"1"'), NotModified)
    assert isinstance(fetch(server.url("/f"), tmp_path, etag='"0"'), Download)
    assert server.statuses("/f") == [304, 200]


def test_errors_name_the_url_and_the_status(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(RemoteSourceError, match=r"fetching http://127\.0\.0\.1:\d+/nope: HTTP 404"):
        fetch(server.url("/nope"), tmp_path)
    with pytest.raises(RemoteSourceError, match="fetching http://127.0.0.1:1/x: "):
        fetch("http://127.0.0.1:1/x", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_a_large_body_is_streamed_not_held_in_memory(server: FileServer, tmp_path: Path) -> None:
    body = bytes(range(256)) * (64 << 10)  # 16 MiB
    server.routes["/big"] = Route(body)
    tracemalloc.start()
    try:
        result = fetch(server.url("/big"), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, Download) and result.path.stat().st_size == len(body)
    assert peak < 6 << 20, peak


def test_tls_uses_the_system_trust_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed_certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with file_server(tls) as server:
        server.routes["/s"] = Route(b"secret")
        with pytest.raises(RemoteSourceError, match="certificate"):
            fetch(server.url("/s"), tmp_path)
        # OpenSSL's default verify paths honour SSL_CERT_FILE: trust our CA that way.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        result = fetch(server.url("/s"), tmp_path)
    assert isinstance(result, Download) and result.path.read_bytes() == b"secret"


@pytest.mark.parametrize(("header", "seconds"), [
    ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480),
    ("", 0),
    ("not a date", 0),
])
def test_last_modified(header: str, seconds: int) -> None:
    assert last_modified_seconds(header) == seconds
