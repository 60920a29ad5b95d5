"""What the step's /etc/resolv.conf and /etc/hosts say.

Each step gets private, writable copies (mounts.py binds them from its own
/dev tmpfs): a RUN may edit them, as some installers do, without touching
the host's or the image's files, and the edits vanish with the step. The
content follows BuildKit (executor/oci/resolvconf.go, hosts.go).
"""

from __future__ import annotations

from pathlib import Path

from builder.sandbox.spec import RunSpec

HOST_RESOLV_CONF = Path("/etc/resolv.conf")

# What BuildKit and Docker fall back to when the host names no resolver.
_FALLBACK_RESOLV_CONF = b"nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def hosts_file(spec: RunSpec) -> bytes:
    """localhost and the step's hostname, then one line per extra host, in order."""
    lines = [
        f"127.0.0.1\tlocalhost {spec.hostname}",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        *(f"{host.address}\t{host.name}" for host in spec.extra_hosts),
    ]
    return ("\n".join(lines) + "\n").encode()


def resolv_conf(host_file: Path = HOST_RESOLV_CONF) -> bytes:
    """The host's resolver configuration, as is.

    Localhost nameservers (systemd-resolved's 127.0.0.53) are kept: "default"
    shares the host's network namespace, where they answer; under "none"
    nothing answers anyway.
    """
    try:
        content = host_file.read_bytes()
    except FileNotFoundError:
        return _FALLBACK_RESOLV_CONF
    if b"nameserver" not in content:
        return content + _FALLBACK_RESOLV_CONF
    return content
