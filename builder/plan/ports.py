"""EXPOSE's port specs → the image config's ExposedPorts keys, as BuildKit reads them.

A spec is ``[[ip:]hostport:]port[-end][/proto]`` (BuildKit's dispatchExpose,
after docker's nat.ParsePortSpec): the protocol defaults to tcp and is
lower-cased, and must be tcp, udp or sctp; a range stands for each of its
ports; an IP address or host port is checked and then dropped, since an
image records only what the container listens on. ``5000/TCP`` is
``5000/tcp`` and ``9000-9002`` is three keys.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from builder.errors import InvalidPort

__all__ = ["exposed_ports"]

_PROTOCOLS = ("tcp", "udp", "sctp")
_DIGITS = re.compile(r"[0-9]+\Z")
_MAX_PORT = 65535


def exposed_ports(specs: Iterable[str]) -> tuple[str, ...]:
    """The ``port/proto`` keys of ``specs``, in order, each once; InvalidPort on a bad spec."""
    keys: list[str] = []
    for spec in specs:
        for key in _keys(spec):
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def _keys(spec: str) -> list[str]:
    address, host_port, container = _split_parts(spec)
    port, _, protocol = container.partition("/")
    protocol = (protocol or "tcp").lower() if port else ""
    if protocol not in _PROTOCOLS:
        raise InvalidPort(f"invalid proto: {protocol}")
    _check_address(address)
    start, end = _port_range(port, "containerPort")
    if host_port:
        host_start, host_end = _port_range(host_port, "hostPort")
        if end - start != host_end - host_start and end != start:
            raise InvalidPort("invalid ranges specified for container and host Ports: "
                              f"{port} and {host_port}")
    return [f"{number}/{protocol}" for number in range(start, end + 1)]


def _split_parts(spec: str) -> tuple[str, str, str]:
    """(ip, host port, container port): an IPv6 address keeps its colons."""
    parts = spec.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _check_address(address: str) -> None:
    if not address:
        return
    if address.startswith("["):
        # Go's net.SplitHostPort(address + ":") strips the brackets.
        if "]" not in address:
            problem = "missing ']' in address"
        elif not address.endswith("]"):
            problem = "missing port in address"
        else:
            problem = ""
        if problem:
            raise InvalidPort(f"invalid IP address {address}: address {address}:: {problem}")
        address = address[1:-1]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InvalidPort(f"invalid IP address: {address}") from None


def _port_range(text: str, what: str) -> tuple[int, int]:
    """A port or ``start-end`` as Go's ParseUint(s, 10, 16) reads each end."""
    bounds = text.split("-") if "-" in text else [text]
    if len(bounds) != 2 and len(bounds) != 1:
        raise InvalidPort(f"invalid {what}: {text}")
    numbers = []
    for bound in bounds:
        if not _DIGITS.match(bound) or int(bound) > _MAX_PORT:
            raise InvalidPort(f"invalid {what}: {text}")
        numbers.append(int(bound))
    start, end = numbers[0], numbers[-1]
    if end < start:
        raise InvalidPort(f"invalid {what}: {text}")
    return start, end
