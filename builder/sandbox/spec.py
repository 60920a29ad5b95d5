"""What one RUN step runs and sees: RunSpec and its parts, as plain frozen data.

Like BuildKit's executor.Meta, a RunSpec says nothing about how the root was
made (overlay, plain directory): ``rootfs`` is a directory the caller has
already prepared and will tear down after ``run`` returns.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from builder.errors import SandboxError

Network = Literal["default", "host", "none"]
NETWORKS: tuple[Network, ...] = ("default", "host", "none")

# BuildKit's name for every RUN container (executor/oci/hosts.go); tools that
# print or test the hostname during a build see what they see under BuildKit.
DEFAULT_HOSTNAME = "buildkitsandbox"


@dataclass(frozen=True, slots=True)
class UserSpec:
    """Numeric credentials of the step's process (resolve names with users.resolve_user)."""

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class BindMount:
    """A host file or directory at ``target`` inside the root.

    ``source`` is trusted: it is the caller's path (a snapshot, a cache dir),
    followed as the host sees it. ``subpath``, when given, names what to bind
    inside ``source`` and is not trusted: it is resolved inside ``source``
    (its symlinks cannot leave it) and opened without following a link, at
    mount time, so a step changing a shared directory meanwhile cannot aim
    the mount elsewhere. The target is resolved inside the root. Bind mounts
    are always nodev.
    """

    source: Path
    target: str
    readonly: bool = False
    subpath: str = ""


@dataclass(frozen=True, slots=True)
class TmpfsMount:
    """A fresh tmpfs at ``target``; ``size`` in bytes, None for the kernel's default."""

    target: str
    size: int | None = None
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class ContentMount:
    """A file holding ``content`` at ``target``, made in the step's own memory.

    For secrets and inline scripts: the bytes reach the sandbox through its
    request pipe and live in the step's private /dev tmpfs, bound at the
    target, so they never touch the host's disk and vanish with the step.
    """

    target: str
    content: bytes = field(repr=False)
    mode: int = 0o400
    uid: int = 0
    gid: int = 0
    readonly: bool = True


Mount = BindMount | TmpfsMount | ContentMount


@dataclass(frozen=True, slots=True)
class ExtraHost:
    """One more /etc/hosts line (``--add-host name:address``)."""

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One process to run in isolation; see run.run for what it sees.

    ``env`` is the whole environment ("K=V", in order): nothing of the
    builder's leaks in. ``cwd`` is created (owned by the user) when missing.
    ``network``: "default" and "host" share the host's network namespace
    (BuildKit's default without CNI); "none" gets a new one with only ``lo``.
    ``privileged`` (RUN --security=insecure): every capability the builder
    has, no masked or read-only kernel paths, a writable /sys and the host's
    device nodes in /dev.
    """

    argv: tuple[str, ...]
    rootfs: Path
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: UserSpec = field(default_factory=UserSpec)
    mounts: tuple[Mount, ...] = ()
    network: Network = "default"
    hostname: str = DEFAULT_HOSTNAME
    extra_hosts: tuple[ExtraHost, ...] = ()
    privileged: bool = False

    def __post_init__(self) -> None:
        if not self.argv:
            raise SandboxError("run spec: empty command")
        if not self.cwd.startswith("/"):
            raise SandboxError(f"run spec: working directory {self.cwd!r} is not absolute")
        for entry in self.env:
            if "=" not in entry or entry.startswith("="):
                raise SandboxError(f"run spec: environment entry {entry!r} is not K=V")
        for mount in self.mounts:
            if not mount.target.startswith("/") or not mount.target.strip("/"):
                raise SandboxError(f"run spec: mount target {mount.target!r} must be an "
                                   "absolute path below /")
        if self.network not in NETWORKS:
            raise SandboxError(f"run spec: unknown network mode {self.network!r}")
        if not self.hostname or len(self.hostname.encode()) > 64 or "/" in self.hostname:
            raise SandboxError(f"run spec: invalid hostname {self.hostname!r}")
        for host in self.extra_hosts:
            if not host.name or any(c.isspace() or c == "#" for c in host.name):
                raise SandboxError(f"run spec: invalid extra host name {host.name!r}")
            try:
                ipaddress.ip_address(host.address)
            except ValueError as err:
                raise SandboxError(f"run spec: extra host {host.name}: {err}") from err
        for text in (*self.argv, *self.env, self.cwd, self.hostname):
            if "\0" in text:
                raise SandboxError("run spec: NUL byte in a command, variable or path")
