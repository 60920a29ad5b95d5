"""Switching the process's root to the step's root: pivot_root, or chroot when it cannot.

pivot_root moves the old root away and detaches it, so nothing of the host
stays reachable from the mount namespace. It fails with EINVAL when the
current root is not a mount point or is the kernel's initial ramfs (the
host runs from an initramfs, as some minimal VMs and installers do, or the
builder itself runs under a plain chroot). Then, as runc's no-pivot mode does,
the host's other mounts are detached, the step's root is moved over "/" and
chrooted into. That is weaker: a root process with CAP_SYS_CHROOT could
chroot its way back to the host's root directory, so the caller then drops
that capability (child.py).
"""

from __future__ import annotations

import errno
import os

from builder.sandbox import syscalls as sc


def make_private(rootfs: str) -> None:
    """Make every mount of this (new) namespace private, so nothing made for the step propagates.

    Normally one recursive change at "/" does it. Under a chroot whose root
    is no mount point, "/" cannot be named; then each visible mount is made
    private instead, which is enough only if the step's root lies on one of
    them (the mounts made for the step are made below it).
    """
    try:
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE, what="make the mount namespace private")
        return
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
    visible = _mount_points()
    for mount_point in sorted(visible, key=len):
        sc.mount(None, mount_point, None, sc.MS_REC | sc.MS_PRIVATE,
                 what=f"make {mount_point} private")
    if not any(rootfs == point or rootfs.startswith(point + "/") for point in visible):
        raise OSError(errno.EINVAL, "the builder's root is not a mount point and the step's root "
                      "is on it", "make the mount namespace private")


def enter(rootfs: str) -> bool:
    """Make ``rootfs`` (a mount point) "/" and the working directory; True if pivot_root did it."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(rootfs)
        try:
            # pivot_root(".", ".") stacks the old root on top of the new
            # one; unmounting "." from inside the old root then removes it.
            sc.pivot_root(".", ".")
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
            _move_root(rootfs)
            return False
        os.fchdir(old_root)
        sc.umount(".", sc.MNT_DETACH)
    finally:
        os.close(old_root)
    os.chdir("/")
    return True


def _move_root(rootfs: str) -> None:
    for mount_point in _host_mounts(rootfs):
        try:
            sc.umount(mount_point, sc.MNT_DETACH)
        except OSError:
            pass  # already gone with a parent, or busy: it is shadowed below the root anyway
    os.chdir(rootfs)
    sc.mount(rootfs, "/", None, sc.MS_MOVE, what="move the root file system to /")
    os.chroot(".")
    os.chdir("/")


def _host_mounts(rootfs: str) -> list[str]:
    """Mount points neither inside ``rootfs`` nor above it, deepest first."""
    found = [point for point in _mount_points()
             if point != "/" and point != rootfs and not point.startswith(rootfs + "/")
             and not rootfs.startswith(point + "/")]
    return sorted(found, key=len, reverse=True)


def _mount_points() -> set[str]:
    """Mount points as this process sees them (relative to its root)."""
    with open("/proc/self/mountinfo", "rb") as file:
        lines = file.read().decode("utf-8", "surrogateescape").splitlines()
    return {_unescape(line.split(" ")[4]) for line in lines}


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for escape, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escape, char)
    return field
