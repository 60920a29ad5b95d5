"""RUN --security and --network end to end: what a step may do, and what it can reach."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner

pytestmark = pytest.mark.root

def _context(tmp_path: Path, dockerfile: str) -> Path:
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    return context


def _host_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapBnd in /proc/self/status")


def test_insecure_needs_allow_and_then_gets_privileges(pybuild: Runner, tmp_path: Path) -> None:
    bounding = f"{_host_capabilities():016x}"
    context = _context(tmp_path, (
        "FROM busybox\n"
        # CAP_SYS_ADMIN (bit 21) is in no default set and in every privileged one.
        "RUN cap=$(grep CapEff /proc/self/status | cut -f2) && test $(( 0x$cap >> 21 & 1 )) = 0 "
        "&& ! echo x > /proc/sys/kernel/hostname && ! mount -t tmpfs none /mnt "
        "&& test ! -e /dev/kmsg\n"
        "RUN --security=insecure "
        f"grep -q '^CapEff:\t{bounding}$' /proc/self/status "
        "&& echo changed > /proc/sys/kernel/hostname && test \"$(hostname)\" = changed "
        "&& mkdir -p /mnt && mount -t tmpfs none /mnt && umount /mnt && rmdir /mnt "
        "&& ls /dev | grep -qx null && test \"$(ls /dev | wc -l)\" -gt 14\n"
        "RUN --security=sandbox cap=$(grep CapEff /proc/self/status | cut -f2) "
        "&& test $(( 0x$cap >> 21 & 1 )) = 0\n"
    ))
    refused = pybuild("build", "--progress", "plain", str(context))
    assert refused.returncode != 0
    assert "Dockerfile:3" in refused.stderr and "--allow security.insecure" in refused.stderr
    assert "#1 " not in refused.stderr  # refused before anything ran
    allowed = pybuild("build", "--progress", "plain", "--allow", "security.insecure",
                      str(context))
    assert allowed.returncode == 0, allowed.stderr
    # Cached now, but still refused without the entitlement (BuildKit checks the plan).
    again = pybuild("build", "--progress", "plain", str(context))
    assert again.returncode != 0 and "Dockerfile:3" in again.stderr
    bad = pybuild("build", "--allow", "everything", str(context))
    assert bad.returncode != 0 and "unknown entitlement" in bad.stderr


@pytest.fixture
def tcp_server() -> Iterator[int]:
    """A loopback TCP server answering every connection with "pong"."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(b"pong\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def test_network_modes(pybuild: Runner, tmp_path: Path, tcp_server: int) -> None:
    port = tcp_server
    interfaces = len(Path("/proc/net/dev").read_text().splitlines()) - 2
    context = _context(tmp_path, (
        "FROM busybox\n"
        # none: a namespace of its own with only lo, and it is up.
        "RUN --network=none test \"$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')\" = lo "
        "&& ip link show lo | grep -q UP "
        f"&& ! nc -w 2 127.0.0.1 {port} </dev/null\n"
        # default and host: the host's network (BuildKit's default without CNI).
        f"RUN --network=default test \"$(tail -n +3 /proc/net/dev | wc -l)\" = {interfaces} "
        f"&& test \"$(nc -w 5 127.0.0.1 {port} </dev/null)\" = pong\n"
        f"RUN --network=host test \"$(tail -n +3 /proc/net/dev | wc -l)\" = {interfaces} "
        f"&& test \"$(nc -w 5 127.0.0.1 {port} </dev/null)\" = pong\n"
        f"RUN test \"$(nc -w 5 127.0.0.1 {port} </dev/null)\" = pong\n"
    ))
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr
    bad = _context(tmp_path, "FROM busybox\nRUN --network=bridge true\n")
    refused = pybuild("build", "--progress", "plain", str(bad))
    assert refused.returncode != 0 and "Dockerfile:2" in refused.stderr
    assert "invalid network mode" in refused.stderr
