"""builder/registry/auth.py: config.json credentials, challenges, and the bearer-token flow."""

from __future__ import annotations

import base64
import http.server
import json
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from builder.errors import RegistryError
from builder.image.store import ImageStore
from builder.registry.auth import (
    Credentials,
    load_credentials,
    parse_challenge,
    remove_credentials,
    save_credentials,
)
from builder.registry.client import RegistryOptions
from builder.registry.pull import pull
from tests.registry.fakes import FakeRegistry, serve_image

USER = Credentials("alice", "pa:ss")


def test_save_writes_docker_auth_with_mode_0600_and_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"credsStore": "x", "auths": {"other:1": {"auth": "b3RoZXI6cA=="}}}))
    save_credentials("127.0.0.1:5000", USER, config_path=path)
    config = json.loads(path.read_text())
    assert config["credsStore"] == "x"
    assert base64.b64decode(config["auths"]["127.0.0.1:5000"]["auth"]) == b"alice:pa:ss"
    assert "other:1" in config["auths"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credentials("127.0.0.1:5000", config_path=path) == USER
    assert load_credentials("other:1", config_path=path) == Credentials("other", "p")
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left


def test_docker_hub_uses_docker_key(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    save_credentials("docker.io", USER, config_path=path)
    assert "https://index.docker.io/v1/" in json.loads(path.read_text())["auths"]
    assert load_credentials("docker.io", config_path=path) == USER


def test_remove_forgets_only_that_registry(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    save_credentials("a.example", USER, config_path=path)
    save_credentials("b.example", USER, config_path=path)
    assert remove_credentials("a.example", config_path=path)
    assert not remove_credentials("a.example", config_path=path)
    assert load_credentials("a.example", config_path=path) is None
    assert load_credentials("b.example", config_path=path) == USER


def test_missing_config_means_anonymous(tmp_path: Path) -> None:
    assert load_credentials("a.example", config_path=tmp_path / "none.json") is None


def test_credentials_repr_hides_the_password() -> None:
    assert "pa:ss" not in repr(USER)


def test_parse_challenge_reads_quoted_parameters() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:app:pull,push"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.param("realm") == "https://auth.example/token"
    assert challenge.param("scope") == "repository:app:pull,push"
    assert parse_challenge('Basic realm="x"').scheme == "basic"


# -- the bearer flow, with a token server and a registry endpoint on loopback ---------------


class _TokenRegistry(http.server.BaseHTTPRequestHandler):
    """/token hands out tokens (to USER only if ``need_password``); /v2/ wants one."""

    fake: FakeRegistry
    need_password = False
    token_requests: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            query = urllib.parse.parse_qs(url.query)
            self.token_requests.append(query)
            if self.need_password and self.headers.get("Authorization") != USER.basic_header():
                self._answer(401, b"{}")
                return
            token = "tok:" + ",".join(query.get("scope", []))
            self._answer(200, json.dumps({"token": token}).encode())
            return
        expected = "Bearer tok:repository:app:pull"
        if self.headers.get("Authorization") != expected:
            realm = f"http://{self.headers.get('Host')}/token"
            self._answer(
                401,
                b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                {
                    "WWW-Authenticate": (
                        f'Bearer realm="{realm}",service="fake",scope="repository:app:pull"'
                    )
                },
            )
            return
        response = self.fake.send("GET", self.path, headers={})
        headers = {key: value for key, value in response.headers.items() if key != "content-length"}
        self._answer(response.status, response.read(), headers)

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def token_registry() -> Iterator[tuple[str, type[_TokenRegistry]]]:
    handler = type("Handler", (_TokenRegistry,), {"fake": FakeRegistry(), "token_requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_bearer_token_anonymous_pull(
    token_registry: tuple[str, type[_TokenRegistry]], tmp_path: Path
) -> None:
    host, handler = token_registry
    served = serve_image(handler.fake, "1")
    store = ImageStore(tmp_path / "root")
    options = RegistryOptions(config_path=tmp_path / "none.json")
    local = pull(f"{host}/app:1", store, store.blobs, options=options)
    assert store.manifest(local).config.digest == served.config_digest
    # One token, reused for the manifest, the config and the layer.
    assert len(handler.token_requests) == 1
    assert handler.token_requests[0] == {"service": ["fake"], "scope": ["repository:app:pull"]}


def test_bearer_token_with_credentials(
    token_registry: tuple[str, type[_TokenRegistry]], tmp_path: Path
) -> None:
    host, handler = token_registry
    handler.need_password = True
    serve_image(handler.fake, "1")
    store = ImageStore(tmp_path / "root")
    options = RegistryOptions(config_path=tmp_path / "config.json")
    with pytest.raises(RegistryError, match=f"token server for {host}: anonymous access refused"):
        pull(f"{host}/app:1", store, store.blobs, options=options)
    assert options.config_path is not None
    save_credentials(host, USER, config_path=options.config_path)
    pull(f"{host}/app:1", store, store.blobs, options=options)
