"""Loopback servers for the tests of remote sources: plain files over http(s), git over
git:// (git daemon) and over smart HTTP (git http-backend behind a small CGI bridge).

Everything listens on 127.0.0.1 only and is torn down by its fixture.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "LC_ALL": "C",
}


@dataclass
class Route:
    """What the file server answers for one path."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


@dataclass
class FileServer:
    """Serves ``routes``; records (method, path, status) of every request in ``requests``."""

    base_url: str
    routes: dict[str, Route]
    requests: list[tuple[str, str, int]]

    def url(self, path: str) -> str:
        return self.base_url + path

    def statuses(self, path: str) -> list[int]:
        return [status for _, seen, status in self.requests if seen == path]


class _FileHandler(BaseHTTPRequestHandler):
    server: _FileHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path)
        if route is None:
            self._answer(404, b"not found\n", {})
            return
        etag = route.headers.get("ETag")
        if etag and self.headers.get("If-None-Match") == etag:
            self._answer(304, b"", {"ETag": etag})
            return
        self._answer(route.status, route.body, route.headers)

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.server.requests.append(("GET", self.path, status))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _FileHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    requests: list[tuple[str, str, int]]


@contextmanager
def file_server(tls: ssl.SSLContext | None = None) -> Iterator[FileServer]:
    server = _FileHTTPServer(("127.0.0.1", 0), _FileHandler)
    server.routes = {}
    server.requests = []
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(f"{scheme}://127.0.0.1:{server.server_address[1]}",
                         server.routes, server.requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made with openssl; the certificate is its own CA."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


# -- git ------------------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
        env={**os.environ, **GIT_ENV, "HOME": str(cwd or Path.cwd())},
    )
    return result.stdout.strip()


@dataclass
class Repository:
    """A work tree and the bare repository it pushes to (what the servers export)."""

    work: Path
    bare: Path

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self) -> None:
        git("push", "-q", "--tags", "--force", str(self.bare), "HEAD:refs/heads/main",
            cwd=self.work)


def make_repository(base: Path, name: str = "repo.git") -> Repository:
    work = base / "work"
    work.mkdir(parents=True)
    bare = base / "export" / name
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main", str(work), cwd=base)
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=base)
    return Repository(work, bare)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@contextmanager
def git_daemon(export: Path) -> Iterator[str]:
    """``git daemon`` exporting every repository under ``export``; yields git://host:port."""
    for _ in range(5):  # the free port can be taken between probe and bind: try again
        port = _free_port()
        process = subprocess.Popen(
            ["git", "daemon", "--export-all", "--reuseaddr", "--informative-errors",
             f"--base-path={export}", "--listen=127.0.0.1", f"--port={port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **GIT_ENV},
        )
        if _wait_for(port, process):
            break
        process.kill()
        process.wait(10)
    else:
        raise RuntimeError("git daemon did not start")
    try:
        yield f"git://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


class _GitHTTPHandler(BaseHTTPRequestHandler):
    """git's smart HTTP: every request handed to ``git http-backend`` as a CGI."""

    server: _GitHTTPServer
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        environment = {
            **os.environ, **GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.server.export),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=environment,
                                capture_output=True, check=False)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.server.requests.append((self.command, path, status))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    export: Path
    requests: list[tuple[str, str, int]]


@contextmanager
def git_http_server(export: Path) -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """Smart HTTP for every repository under ``export``; yields (http://host:port, requests)."""
    server = _GitHTTPServer(("127.0.0.1", 0), _GitHTTPHandler)
    server.export = export
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
