"""Runs one RUN step in isolation: RunSpec in, exit status out.

Builder side (imported by the run op):
  spec.py         RunSpec, UserSpec, BindMount, TmpfsMount, ContentMount, ExtraHost
  users.py        USER "name[:group]" -> UserSpec, read from the step's root
  runner.py       run(): starts init, streams output, timeout/cancel, cleanup
  protocol.py     the Sandbox seam and NamespaceSandbox
  resolver.py     what /etc/resolv.conf and /etc/hosts say
  stubs.py        mount points the root lacked, removed after the step
Init side (a separate `python -S` per step; imports nothing slow):
  init.py         unshare, fork PID 1, relay its exit status, kill on request
  child.py        PID 1: mounts, root switch, credentials, execve
  mounts.py       /proc, /dev, /sys, resolver files, the spec's mounts, masks
  root.py         mount propagation, pivot_root (chroot fallback)
  credentials.py  capabilities, uid/gid/groups, no_new_privs
  syscalls.py     ctypes: unshare, mount, pivot_root, capset, prctl, ...
Both:
  paths.py        resolving paths inside a root without leaving it

Public names are re-exported lazily: the init process imports this package
too and must not pay for the builder-side modules.
"""

from __future__ import annotations

from builder import lazy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.sandbox.protocol import NamespaceSandbox, Sandbox
    from builder.sandbox.runner import Cancellation, run
    from builder.sandbox.spec import (
        DEFAULT_HOSTNAME,
        BindMount,
        ContentMount,
        ExtraHost,
        Mount,
        Network,
        RunSpec,
        TmpfsMount,
        UserSpec,
    )
    from builder.sandbox.users import home_directory, resolve_user

__all__ = [
    "DEFAULT_HOSTNAME",
    "BindMount",
    "Cancellation",
    "ContentMount",
    "ExtraHost",
    "Mount",
    "NamespaceSandbox",
    "Network",
    "RunSpec",
    "Sandbox",
    "TmpfsMount",
    "UserSpec",
    "home_directory",
    "resolve_user",
    "run",
]

_HOMES = {
    "DEFAULT_HOSTNAME": "builder.sandbox.spec",
    "BindMount": "builder.sandbox.spec",
    "ContentMount": "builder.sandbox.spec",
    "ExtraHost": "builder.sandbox.spec",
    "Mount": "builder.sandbox.spec",
    "Network": "builder.sandbox.spec",
    "RunSpec": "builder.sandbox.spec",
    "TmpfsMount": "builder.sandbox.spec",
    "UserSpec": "builder.sandbox.spec",
    "Cancellation": "builder.sandbox.runner",
    "run": "builder.sandbox.runner",
    "NamespaceSandbox": "builder.sandbox.protocol",
    "Sandbox": "builder.sandbox.protocol",
    "home_directory": "builder.sandbox.users",
    "resolve_user": "builder.sandbox.users",
}

__getattr__ = lazy.exports(__name__, _HOMES)
