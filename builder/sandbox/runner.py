"""run(): one RunSpec in fresh namespaces, output streamed, exit status back.

The builder never forks itself (it may be large and threaded); it starts
init.py as a small separate Python and talks to it over pipes. This module
owns that conversation and the step's lifetime: when run() returns or
raises, by exit, timeout, cancellation or KeyboardInterrupt, every process
of the step is dead and every mount made for it is gone with its mount
namespace, and the empty mount points it had to create are removed.
"""

from __future__ import annotations

import marshal
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import builder
from builder.errors import SandboxError
from builder.sandbox import resolver, stubs
from builder.sandbox.spec import BindMount, ContentMount, RunSpec

Output = Callable[[bytes], None]

# How long init gets to kill PID 1 and exit once asked to, before it is
# SIGKILLed itself (PID 1 then dies of its parent-death signal).
STOP_GRACE_SECONDS = 10.0
_CANCEL_POLL_SECONDS = 0.05
_READ_SIZE = 1 << 16


class Cancellation(Protocol):
    """Anything with is_set(), such as threading.Event: set it to stop a running step."""

    def is_set(self) -> bool: ...


def run(
    spec: RunSpec,
    *,
    output: Output,
    stdin: bytes | None = None,
    timeout: float | None = None,
    cancel: Cancellation | None = None,
) -> int:
    """Run ``spec`` and return its exit status (128+N when killed by signal N).

    stdout and stderr are merged into one stream, handed to ``output`` in
    chunks as they arrive (from this thread). ``stdin`` is the command's whole
    input (None: /dev/null). Raises SandboxError when the step cannot be
    started (a bad mount, a missing command), on ``timeout`` (seconds) and
    when ``cancel`` is set; the step is dead and cleaned up by then.
    """
    rootfs = Path(os.path.realpath(spec.rootfs))
    if not rootfs.is_dir():
        raise SandboxError(f"running {_show(spec)}: root file system {rootfs} is not a directory")
    for mount in spec.mounts:
        if isinstance(mount, BindMount) and not mount.source.exists():
            raise SandboxError(f"running {_show(spec)}: bind mount source {mount.source} "
                               "does not exist")
    # A target under /dev lands on the step's own /dev tmpfs, never in the root.
    targets = (*stubs.RESOLVER_TARGETS,
               *(mount.target for mount in spec.mounts if not mount.target.startswith("/dev/")))
    created = stubs.find_missing(rootfs, targets)
    try:
        request = _request(spec, rootfs)
        return _supervise(spec, request, output, stdin, timeout, cancel)
    finally:
        stubs.remove(rootfs, created)


def init_command() -> list[str]:
    """How init is started: no site, no PYTHON* variables; only our package on the path.

    -S alone saves ~60 ms against a Python whose site-packages has many .pth
    files; the package's parent goes first on sys.path instead.
    """
    package_parent = str(Path(builder.__file__).resolve().parent.parent)
    code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from builder.sandbox.init import main; main()")
    return [sys.executable, "-S", "-E", "-c", code]


def _request(spec: RunSpec, rootfs: Path) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = []
    for mount in spec.mounts:
        if isinstance(mount, BindMount):
            mounts.append({"type": "bind", "source": str(mount.source.absolute()),
                           "target": mount.target, "readonly": mount.readonly,
                           "subpath": mount.subpath})
        elif isinstance(mount, ContentMount):
            mounts.append({"type": "content", "target": mount.target, "content": mount.content,
                           "mode": mount.mode, "uid": mount.uid, "gid": mount.gid,
                           "readonly": mount.readonly})
        else:
            mounts.append({"type": "tmpfs", "target": mount.target, "size": mount.size,
                           "readonly": mount.readonly})
    return {
        "argv": list(spec.argv),
        "env": list(spec.env),
        "cwd": spec.cwd,
        "uid": spec.user.uid,
        "gid": spec.user.gid,
        "groups": list(spec.user.additional_gids),
        "rootfs": str(rootfs),
        "mounts": mounts,
        "network": spec.network,
        "privileged": spec.privileged,
        "hostname": spec.hostname,
        "resolv_conf": resolver.resolv_conf(),
        "hosts": resolver.hosts_file(spec),
    }


def _supervise(
    spec: RunSpec,
    request: dict[str, Any],
    output: Output,
    stdin: bytes | None,
    timeout: float | None,
    cancel: Cancellation | None,
) -> int:
    ours = _Descriptors()
    theirs = _Descriptors()
    try:
        ours.pipe_to(theirs, "spec")
        theirs.pipe_to(ours, "output")
        theirs.pipe_to(ours, "status")
        ours.pipe_to(theirs, "control")  # closing our end stops the step (init.py)
        if stdin is None:
            theirs.add("stdin", os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        else:
            ours.pipe_to(theirs, "stdin")
        request.update(stdin_fd=theirs["stdin"], status_fd=theirs["status"],
                       control_fd=theirs["control"])
        process = subprocess.Popen(
            init_command(),
            stdin=theirs["spec"],
            stdout=theirs["output"],
            stderr=theirs["output"],
            pass_fds=(theirs["stdin"], theirs["status"], theirs["control"]),
            cwd="/",
            env=_init_environment(),
            start_new_session=True,  # the terminal's Ctrl-C is ours to handle, not the step's
        )
    except OSError as err:
        ours.close_all()
        raise SandboxError(f"running {_show(spec)}: starting the sandbox: {err.strerror}") from err
    finally:
        theirs.close_all()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        try:
            _write_all(ours["spec"], marshal.dumps(request))
        except BrokenPipeError:
            pass  # init died at once; its exit status tells
        ours.close("spec")
        status = _pump(ours, stdin or b"", output, deadline, cancel)
    except _Stopped as stopped:
        _stop(process, ours)
        reason = f"timed out after {timeout:g}s" if stopped.args[0] == "timeout" else "cancelled"
        raise SandboxError(f"running {_show(spec)}: {reason}") from None
    except BaseException:
        _stop(process, ours)
        raise
    finally:
        ours.close_all()
    process.wait()
    return _outcome(spec, status, process.returncode)


class _Stopped(Exception):
    """The step ran out of time ("timeout") or was cancelled ("cancel")."""


class _Descriptors:
    """Named file descriptors, each closed exactly once (a number closed twice may be reused)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def __getitem__(self, name: str) -> int:
        return self._open[name]

    def __contains__(self, name: str) -> bool:
        return name in self._open

    def add(self, name: str, fd: int) -> None:
        self._open[name] = fd

    def pipe_to(self, reader: _Descriptors, name: str) -> None:
        """A pipe whose write end is ours and whose read end belongs to ``reader``."""
        read_end, write_end = os.pipe()
        reader.add(name, read_end)
        self.add(name, write_end)

    def close(self, name: str) -> None:
        fd = self._open.pop(name, None)
        if fd is not None:
            os.close(fd)

    def close_all(self) -> None:
        for name in list(self._open):
            self.close(name)


def _pump(
    fds: _Descriptors,
    stdin: bytes,
    output: Output,
    deadline: float | None,
    cancel: Cancellation | None,
) -> bytes:
    """Move bytes until init has exited and every holder of the output pipe is gone."""
    status = bytearray()
    pending = memoryview(stdin)
    names = {fds["output"]: "output", fds["status"]: "status"}
    with selectors.DefaultSelector() as selector:
        selector.register(fds["output"], selectors.EVENT_READ)
        selector.register(fds["status"], selectors.EVENT_READ)
        if "stdin" in fds:
            if pending:
                os.set_blocking(fds["stdin"], False)
                selector.register(fds["stdin"], selectors.EVENT_WRITE)
                names[fds["stdin"]] = "stdin"
            else:
                fds.close("stdin")  # EOF at once
        readers = 2
        while readers:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise _Stopped("timeout")
            if cancel is not None:
                if cancel.is_set():
                    raise _Stopped("cancel")
                wait = _CANCEL_POLL_SECONDS if wait is None else min(wait, _CANCEL_POLL_SECONDS)
            for key, _ in selector.select(wait):
                name = names[key.fd]
                if name == "stdin":
                    try:
                        pending = pending[os.write(key.fd, pending[:_READ_SIZE]):]
                    except BrokenPipeError:
                        pending = pending[:0]  # the command stopped reading: fine
                    if not pending:
                        selector.unregister(key.fd)
                        fds.close("stdin")
                    continue
                chunk = os.read(key.fd, _READ_SIZE)
                if not chunk:
                    selector.unregister(key.fd)
                    readers -= 1
                elif name == "output":
                    output(chunk)
                else:
                    status += chunk
    return bytes(status)


def _stop(process: subprocess.Popen[bytes], ours: _Descriptors) -> None:
    """Have init kill PID 1 (and with it the whole step) and wait until it has.

    Closing the control pipe is the request. Should init not exit within the
    grace period, or a second interrupt arrive meanwhile, init is SIGKILLed
    and PID 1 dies of its parent-death signal.
    """
    ours.close("control")
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise


def _outcome(spec: RunSpec, status: bytes, returncode: int) -> int:
    messages: dict[str, str] = {}
    for line in status.decode("utf-8", "replace").splitlines():
        kind, _, value = line.partition(" ")
        messages[kind] = value
    if "error" in messages:
        raise SandboxError(f"running {_show(spec)}: {messages['error']}")
    if "exit" in messages:
        return int(messages["exit"])
    raise SandboxError(f"running {_show(spec)}: the sandbox init failed "
                       f"(exit status {returncode})")


def _init_environment() -> dict[str, str]:
    # Only what the interpreter itself may need to start; the step's
    # environment comes from the spec alone.
    return {name: os.environ[name] for name in ("LD_LIBRARY_PATH",) if name in os.environ}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _show(spec: RunSpec) -> str:
    """The command as BuildKit names a step in errors: its argv, quoted like a list."""
    return "[" + ", ".join(f'"{arg}"' for arg in spec.argv) + "]"
