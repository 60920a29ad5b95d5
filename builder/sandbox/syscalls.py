"""The privileged Linux calls Python 3.11's os module lacks, through ctypes.

Only the sandbox's init process imports this module (it must import fast:
ctypes and os, nothing else). Every wrapper raises ``OSError`` with the errno
and a ``filename`` that says what was being done, so the init can report
"mount proc on /proc: Operation not permitted" without a traceback.
"""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

MNT_DETACH = 0x2

# Linux's numbers on every architecture we start on; the signal module is not
# imported because it pulls in enum, which costs more than all the rest.
SIGKILL = 9
SIGPIPE = 13
SIGXFSZ = 25
_SIG_SETMASK = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# glibc has no pivot_root() wrapper, so it goes through syscall(2) by number.
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (the next child is PID 1 of a new one)."""
    _check(_libc.unshare(flags), "unshare")


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
    *,
    what: str,
) -> None:
    """mount(2); ``what`` names the mount in errors (a container path, not a host one)."""
    _check(
        _libc.mount(
            None if source is None else os.fsencode(source),
            os.fsencode(target),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        what,
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(os.fsencode(target), flags), f"unmount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, "pivot_root: unknown syscall number on this machine", "pivot_root")
    _check(_libc.syscall(ctypes.c_long(number), os.fsencode(new_root), os.fsencode(put_old)),
           "pivot_root")


def reset_signals() -> None:
    """Default dispositions for the signals Python ignores, and an empty signal mask.

    Ignored signals and the mask survive execve: a command started with
    SIGPIPE ignored would not die when its reader goes away (``yes | head``).
    """
    for signum in (SIGPIPE, SIGXFSZ):
        if _libc.signal(ctypes.c_int(signum), ctypes.c_void_p(0)) == -1:
            _check(-1, "reset signal handlers")
    empty = ctypes.create_string_buffer(128)  # a zeroed sigset_t
    _check(_libc.sigprocmask(_SIG_SETMASK, empty, None), "reset the signal mask")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(
        _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                    ctypes.c_ulong(0), ctypes.c_ulong(0)),
        f"prctl({option})",
    )


def prctl_value(option: int, arg2: int = 0) -> int:
    """prctl(2) for options that answer with their return value (PR_CAPBSET_READ)."""
    result: int = _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(0),
                              ctypes.c_ulong(0), ctypes.c_ulong(0))
    _check(result, f"prctl({option})")
    return result


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capset(*, effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets (64-bit masks, version 3 ABI)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index, shift in ((0, 0), (1, 32)):
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def interface_up(name: str) -> None:
    """Set IFF_UP on a network interface (``lo`` in a fresh network namespace)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    sock = _libc.socket(2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM | SOCK_CLOEXEC
    _check(sock, f"bring up {name}")
    try:
        request = ctypes.create_string_buffer(40)  # struct ifreq: name[16] + union
        request.raw = name.encode().ljust(16, b"\0") + bytes(24)
        _check(_libc.ioctl(sock, ctypes.c_ulong(siocgifflags), request), f"bring up {name}")
        flags = int.from_bytes(request.raw[16:18], sys.byteorder) | iff_up
        request.raw = request.raw[:16] + flags.to_bytes(2, sys.byteorder) + request.raw[18:]
        _check(_libc.ioctl(sock, ctypes.c_ulong(siocsifflags), request), f"bring up {name}")
    finally:
        os.close(sock)
