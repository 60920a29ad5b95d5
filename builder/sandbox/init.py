"""The sandbox's init: new namespaces, one forked PID 1, and its exit status relayed.

The builder starts this as ``python -S -E -c "...main()"`` (runner.py), so
it must start fast: it imports os, select, marshal, ctypes and our own small
modules, nothing that pulls in enum, re or typing (the signal module alone
would double the start-up time). It runs as a plain process of the host;
only its child, PID 1 of the new PID namespace, sees the step's root.

Protocol (file descriptors as the builder sets them up):
- fd 0: the request, a ``marshal`` dict written by runner.py and read to
  EOF. marshal rather than json: it is built in, and importing json (re,
  enum) would cost more than everything else here. Both ends are the same
  interpreter, so the format cannot drift.
- fd 1 and 2: the step's output pipe; init hands it to the child and keeps
  none for itself, so the builder sees EOF once every process of the step
  is gone.
- request["stdin_fd"]: becomes the command's stdin.
- request["status_fd"]: one line for the builder, "error MESSAGE" (the
  step could not be started) or "exit CODE" (128+N for signal N, as a
  shell reports it).
- request["control_fd"]: the read end of a pipe the builder holds open for
  as long as the step may run. When it closes, because the builder stops
  the step or dies, init SIGKILLs PID 1. No signal to init is needed, and
  a builder killed outright still takes its steps with it.

PID 1 exiting makes the kernel kill every other process of its namespace;
init reaps it only after that, and the namespaces, with every mount made for
the step, go with the last process in them.
"""

from __future__ import annotations

import marshal
import os
import select

from builder.sandbox import root, syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def main() -> None:
    request = _read_request()
    status_fd: int = request["status_fd"]
    for fd in (status_fd, request["stdin_fd"], request["control_fd"]):
        os.set_inheritable(fd, False)
    flags = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWUTS
             | syscalls.CLONE_NEWIPC)
    if request["network"] == "none":
        flags |= syscalls.CLONE_NEWNET
    try:
        syscalls.unshare(flags)
        # Nothing mounted for the step may propagate back to the host.
        root.make_private(request["rootfs"])
    except OSError as err:
        report(status_fd, "error", describe(err))
        os._exit(1)
    child = os.fork()
    if child == 0:
        from builder.sandbox import child as pid1

        pid1.start(request)  # never returns
    _relay(child, request, status_fd)


def _read_request() -> dict[str, Any]:
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    os.close(0)
    request: dict[str, Any] = marshal.loads(b"".join(chunks))
    return request


def _relay(child: int, request: dict[str, Any], status_fd: int) -> None:
    # The output pipe and stdin belong to the child alone.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    os.close(request["stdin_fd"])
    control: int = request["control_fd"]
    try:
        exited = os.pidfd_open(child)  # safe from pid reuse: only we can reap it
    except OSError as err:
        os.kill(child, syscalls.SIGKILL)
        os.waitpid(child, 0)
        report(status_fd, "error", f"pidfd_open (Linux 5.3 or later): {describe(err)}")
        os._exit(1)
    poller = select.poll()
    poller.register(exited, select.POLLIN)
    poller.register(control, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if exited in ready:
            break
        if control in ready:  # only ever closed, never written: stop the step
            os.kill(child, syscalls.SIGKILL)
            poller.unregister(control)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    report(status_fd, "exit", str(code if code >= 0 else 128 - code))
    os._exit(0)


def report(status_fd: int, kind: str, value: str) -> None:
    """One status line; newlines in ``value`` are flattened so lines stay lines."""
    os.write(status_fd, f"{kind} {value}".replace("\n", " ").encode() + b"\n")


def describe(err: OSError) -> str:
    """"mount proc on /proc: operation not permitted", Go-style lower case."""
    reason = err.strerror or str(err)
    reason = reason[:1].lower() + reason[1:]
    return f"{err.filename}: {reason}" if err.filename else reason


if __name__ == "__main__":
    main()
