"""Overlay mounts through the new mount API, for lower chains too long for one page.

fsopen/fsconfig/fsmount/move_mount (Linux 5.2+) configure a mount one
parameter at a time; overlay's ``lowerdir+`` parameter (Linux 6.8+) appends a
single lower layer per call, so the one-page limit of mount(2) data no longer
caps the chain.  Another benefit: the kernel's reasons for refusing come back
through the context fd instead of only in the kernel log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Sequence
from pathlib import Path

from builder.errors import SandboxError

__all__ = ["mount_overlay_by_layers"]

# These syscalls were added after the per-architecture tables were unified,
# so the numbers are the same on x86_64, aarch64 and the other 64-bit ports.
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432

_FSOPEN_CLOEXEC = 0x1
_FSMOUNT_CLOEXEC = 0x1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100
_FSCONFIG_STRING_LIMIT = 255

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: int | bytes | None) -> int:
    converted: list[object] = []
    for arg in args:
        if isinstance(arg, bytes) or arg is None:
            converted.append(ctypes.c_char_p(arg))
        else:
            converted.append(ctypes.c_long(arg))
    result = int(_libc.syscall(ctypes.c_long(number), *converted))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _kernel_messages(context_fd: int) -> str:
    """Drain the messages the kernel queued on an fs context ("e overlayfs: ...")."""
    messages: list[str] = []
    while True:
        try:
            message = os.read(context_fd, 4096)
        except OSError:
            break
        if not message:
            break
        messages.append(message.decode(errors="replace").strip())
    return "; ".join(messages)


def mount_overlay_by_layers(
    lower_names: Sequence[str],
    upper: str,
    work: str,
    target: Path,
    options: Sequence[str],
) -> None:
    """Mount overlay at ``target`` adding lower layers (top first) one by one.

    Each name must be under 256 bytes (the callers pass ``/proc/self/fd/N``).
    ``options`` are ``key=value`` or bare flags, as in mount(2) data.
    """
    try:
        context_fd = _syscall(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC)
    except OSError as err:
        raise SandboxError(
            f"mounting overlay at {target} with {len(lower_names)} lower dirs: "
            f"the new mount API is unavailable ({err.strerror}) and the layer list "
            "does not fit in one page of mount(2) options"
        ) from err
    step = "configuring"
    try:
        try:
            for name in lower_names:
                _set_string(context_fd, "lowerdir+", name)
            _set_string(context_fd, "upperdir", upper)
            _set_string(context_fd, "workdir", work)
            for option in options:
                key, has_value, value = option.partition("=")
                if has_value:
                    _set_string(context_fd, key, value)
                else:
                    _syscall(_SYS_FSCONFIG, context_fd, _FSCONFIG_SET_FLAG, key.encode(), None, 0)
            step = "creating"
            _syscall(_SYS_FSCONFIG, context_fd, _FSCONFIG_CMD_CREATE, None, None, 0)
            step = "attaching"
            mount_fd = _syscall(_SYS_FSMOUNT, context_fd, _FSMOUNT_CLOEXEC, 0)
            try:
                _syscall(
                    _SYS_MOVE_MOUNT,
                    mount_fd,
                    b"",
                    _AT_FDCWD,
                    os.fsencode(target),
                    _MOVE_MOUNT_F_EMPTY_PATH,
                )
            finally:
                os.close(mount_fd)
        except OSError as err:
            detail = _kernel_messages(context_fd)
            hint = ""
            if err.errno == errno.EINVAL and "lowerdir+" in detail:
                hint = " (overlay needs Linux 6.8+ for lowerdir+)"
            raise SandboxError(
                f"mounting overlay at {target} with {len(lower_names)} lower dirs: "
                f"{step}: {err.strerror}{': ' + detail if detail else ''}{hint}"
            ) from err
    finally:
        os.close(context_fd)


def _set_string(context_fd: int, key: str, value: str) -> None:
    raw = os.fsencode(value)
    if len(raw) > _FSCONFIG_STRING_LIMIT:
        raise OSError(errno.ENAMETOOLONG, f"{key} value longer than 255 bytes: {value}")
    _syscall(_SYS_FSCONFIG, context_fd, _FSCONFIG_SET_STRING, key.encode(), raw, 0)
