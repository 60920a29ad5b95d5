"""The step's last privileges: Docker's default capabilities, its uid/gid/groups, no_new_privs.

Docker's default set (moby oci/caps/defaults.go) stays in the bounding set;
everything else is dropped for good. Root keeps exactly that set as
effective and permitted. The inheritable and ambient sets are empty, as runc
leaves them since CVE-2022-24769, so an exec'd program with file
capabilities gains nothing. A non-root user ends with no capabilities at all
(setuid clears them), and no_new_privs keeps setuid binaries from giving
them back.

A privileged step (RUN --security=insecure) keeps every capability the
builder itself has, as Docker's --privileged does, and no_new_privs stays
off so setuid programs work as on a host.
"""

from __future__ import annotations

import errno
import os

from builder.sandbox import syscalls as sc

CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP = 0, 1, 3, 4, 5, 6, 7, 8
NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP = 10, 13, 18, 27, 29, 31

DEFAULT_CAPABILITIES = (CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW, SETGID, SETUID,
                        SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE)


def capability_mask(capabilities: tuple[int, ...]) -> int:
    mask = 0
    for capability in capabilities:
        mask |= 1 << capability
    return mask


def drop(*, uid: int, gid: int, groups: list[int], allow_chroot: bool = True,
         privileged: bool = False) -> None:
    """Become uid:gid with ``groups`` and Docker's capabilities; irreversible."""
    keep = capability_mask(DEFAULT_CAPABILITIES)
    if privileged:
        keep = _bounding_set()
    if not allow_chroot:
        keep &= ~(1 << SYS_CHROOT)
    for capability in range(64):
        if keep & (1 << capability):
            continue
        try:
            sc.prctl(sc.PR_CAPBSET_DROP, capability)
        except OSError as err:
            if err.errno == errno.EINVAL:  # past the kernel's last capability
                break
            raise
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    try:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
    except OSError as err:
        raise OSError(err.errno, err.strerror, f"become user {uid}:{gid}") from err
    mine = keep if uid == 0 else 0
    sc.capset(effective=mine, permitted=mine, inheritable=0)
    if not privileged:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


def _bounding_set() -> int:
    """Every capability still in this process's bounding set (what the builder may give)."""
    mask = 0
    for capability in range(64):
        try:
            if sc.prctl_value(sc.PR_CAPBSET_READ, capability):
                mask |= 1 << capability
        except OSError as err:
            if err.errno == errno.EINVAL:  # past the kernel's last capability
                break
            raise
    return mask
