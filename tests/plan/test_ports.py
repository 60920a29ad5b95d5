"""EXPOSE port specs read as BuildKit's dispatchExpose reads them."""

from __future__ import annotations

import pytest

from builder.errors import InvalidPort
from builder.plan.ports import exposed_ports


@pytest.mark.parametrize(
    ("specs", "keys"),
    [
        (["80"], ("80/tcp",)),
        (["53/udp", "5000/TCP", "7/Sctp"], ("53/udp", "5000/tcp", "7/sctp")),
        (["9000-9002"], ("9000/tcp", "9001/tcp", "9002/tcp")),
        (["8080:80", "127.0.0.1:8081:81/udp"], ("80/tcp", "81/udp")),
        (["[::1]:8082:82", "::1:8083:83"], ("82/tcp", "83/tcp")),
        (["80", "80/tcp", "080"], ("80/tcp",)),
        (["8000-8001:90"], ("90/tcp",)),
        (["0", "65535"], ("0/tcp", "65535/tcp")),
    ],
)
def test_specs_become_port_and_protocol_keys(specs: list[str], keys: tuple[str, ...]) -> None:
    assert exposed_ports(specs) == keys


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("80/icmp", "invalid proto: icmp"),
        ("", "invalid proto: "),
        ("/tcp", "invalid proto: "),
        ("65536", "invalid containerPort: 65536"),
        ("http", "invalid containerPort: http"),
        ("+80", "invalid containerPort: +80"),
        ("90-80", "invalid containerPort: 90-80"),
        ("1-2-3", "invalid containerPort: 1-2-3"),
        ("x:80", "invalid hostPort: x"),
        ("1-3:80-81", "invalid ranges specified for container and host Ports: 80-81 and 1-3"),
        ("not-an-ip:1:80", "invalid IP address: not-an-ip"),
        ("[::1:1:80", "invalid IP address [::1: address [::1:: missing ']' in address"),
        ("[::1]x:1:80", "invalid IP address [::1]x: address [::1]x:: missing port in address"),
        ("[not-v6]:1:80", "invalid IP address: not-v6"),
    ],
)
def test_bad_specs_are_refused_with_buildkits_message(spec: str, message: str) -> None:
    with pytest.raises(InvalidPort) as caught:
        exposed_ports([spec])
    assert caught.value.message == message
