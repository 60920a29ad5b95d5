"""Registries on loopback for the registry tests: Debian's docker-registry, open or htpasswd."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.registry.auth import Credentials

_REGISTRY_BINARY = "/usr/bin/docker-registry"
USER = Credentials("pybuild", "s3cret-pass")


@dataclass(frozen=True, slots=True)
class LiveRegistry:
    """A running registry: ``host`` is what image names use (127.0.0.1:PORT)."""

    host: str
    storage: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ensure_tool(path: str, package: str) -> str:
    """The tool, installed with apt-get if missing and we may; else skip (a failure in CI)."""
    if not os.path.exists(path) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package],
            capture_output=True,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed (apt-get install {package})")
    return path


def start_registry(directory: Path, auth_section: str = "") -> Iterator[LiveRegistry]:
    """Run docker-registry in ``directory`` until the generator is closed (other test
    packages use it too: tests/e2e/test_cache_export.py)."""
    binary = ensure_tool(_REGISTRY_BINARY, "docker-registry")
    port = free_port()
    storage = directory / "storage"
    storage.mkdir()
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth_section
    )
    log = open(directory / "registry.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        _wait_until_answering(f"http://127.0.0.1:{port}/v2/", process, directory / "registry.log")
        yield LiveRegistry(f"127.0.0.1:{port}", storage)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError as err:
            if err.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"docker-registry did not answer at {url}: {log.read_text()}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRegistry]:
    """An open registry (no auth) on 127.0.0.1."""
    yield from start_registry(tmp_path_factory.mktemp("registry"), "")


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRegistry]:
    """A registry that wants USER's password (htpasswd, bcrypt)."""
    directory = tmp_path_factory.mktemp("basic-registry")
    htpasswd = ensure_tool("/usr/bin/htpasswd", "apache2-utils")
    result = subprocess.run(
        [htpasswd, "-Bbn", USER.username, USER.password], capture_output=True, check=True
    )
    passwords = directory / "htpasswd"
    passwords.write_bytes(result.stdout)
    auth = f"auth:\n  htpasswd:\n    realm: pybuild-test\n    path: {passwords}\n"
    yield from start_registry(directory, auth)
