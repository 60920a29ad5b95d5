"""The step's file system view, mounted in its private mount namespace (runc's defaults).

Every target inside the root is resolved with ``paths`` (the root stands for
"/") and mounted through /proc/self/fd/N of an O_PATH descriptor, so a
symlink an earlier step left at /proc or /etc/hosts can never aim a mount at
the host. Missing targets are created; the builder removes those stubs later.

Flags follow Docker's defaults: /proc nosuid,nodev,noexec; /dev a small
tmpfs with the usual character devices; /sys read-only; the root itself and
every bind mount nodev, so device nodes work only in /dev.  A privileged step
(RUN --security=insecure) gets Docker's --privileged view instead: /sys
writable and the host's device nodes copied into its /dev.
"""

from __future__ import annotations

import errno
import os
import stat

from builder.sandbox import paths
from builder.sandbox import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
            ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))

# Docker's lists (moby oci/defaults.go): read-only, and hidden behind
# /dev/null (files) or an empty read-only tmpfs (directories).
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")

_FLAG_BITS = ((os.ST_RDONLY, sc.MS_RDONLY), (os.ST_NOSUID, sc.MS_NOSUID),
              (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
              (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME),
              (os.ST_RELATIME, sc.MS_RELATIME))


def mount_filesystems(rootfs: str, request: dict[str, Any]) -> None:
    """Everything made before the root switch, in mount order."""
    privileged: bool = request.get("privileged", False)
    # pivot_root needs the new root to be a mount point; binding it onto
    # itself also gives a mount of our own to make nodev.
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC, what="bind the root file system")
    _remount(rootfs, sc.MS_NODEV, what="remount the root file system nodev")
    nosuid_nodev_noexec = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    _mount_in(rootfs, "/proc", "proc", "proc", nosuid_nodev_noexec)
    _mount_in(rootfs, "/dev", "tmpfs", "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME,
              "mode=755,size=65536k")
    _populate_dev(rootfs)
    if privileged:
        _copy_host_devices(rootfs)
    _mount_in(rootfs, "/sys", "sysfs", "sysfs",
              nosuid_nodev_noexec | (0 if privileged else sc.MS_RDONLY))
    _bind_content(rootfs, request["resolv_conf"], "/etc/resolv.conf")
    _bind_content(rootfs, request["hosts"], "/etc/hosts")
    # Parents before children, as Docker sorts them; equal depth keeps order.
    ordered = sorted(enumerate(request["mounts"]), key=lambda item: _depth(item[1]["target"]))
    for index, mount in ordered:
        if mount["type"] == "bind":
            _bind_in(rootfs, mount["source"], mount["target"], readonly=mount["readonly"],
                     subpath=mount.get("subpath", ""))
        elif mount["type"] == "content":
            _bind_content(rootfs, mount["content"], mount["target"],
                          name=f".pybuild-mount-{index}", mode=mount["mode"], uid=mount["uid"],
                          gid=mount["gid"], readonly=mount["readonly"])
        else:
            size = mount["size"]
            readonly = sc.MS_RDONLY if mount.get("readonly") else 0
            _mount_in(rootfs, mount["target"], "tmpfs", "tmpfs",
                      sc.MS_NOSUID | sc.MS_NODEV | sc.MS_STRICTATIME | readonly,
                      None if size is None else f"size={size}")


def protect_kernel_files() -> None:
    """After the root switch: Docker's read-only and masked paths under /proc and /sys."""
    for path in READONLY_PATHS:
        if not os.path.lexists(path):
            continue
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC, what=f"bind {path} read-only")
        _remount(path, sc.MS_RDONLY, what=f"remount {path} read-only")
    for path in MASKED_PATHS:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, what=f"mask {path}")
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND, what=f"mask {path}")


def _mount_in(rootfs: str, target: str, source: str, fstype: str, flags: int,
              data: str | None = None) -> None:
    fd = _open_target(rootfs, target, directory=True)
    try:
        sc.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data,
                 what=f"mount {fstype} on {target}")
    finally:
        os.close(fd)


def _bind_in(rootfs: str, source: str, target: str, *, readonly: bool,
             subpath: str = "") -> None:
    source_fd = _open_source(source, subpath) if subpath else None
    try:
        if source_fd is not None:
            source = f"/proc/self/fd/{source_fd}"
        try:
            directory = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as err:
            raise OSError(err.errno, err.strerror, f"bind mount source {source}") from err
        fd = _open_target(rootfs, target, directory=directory)
        try:
            sc.mount(source, f"/proc/self/fd/{fd}", None, sc.MS_BIND | sc.MS_REC,
                     what=f"bind mount {target}")
        finally:
            os.close(fd)
    finally:
        if source_fd is not None:
            os.close(source_fd)
    # The remount must name the new mount, so resolve the target again.
    fd = _open_target(rootfs, target, directory=directory)
    try:
        extra = sc.MS_NODEV | (sc.MS_RDONLY if readonly else 0)
        _remount(f"/proc/self/fd/{fd}", extra, what=f"remount {target}")
    finally:
        os.close(fd)


def _open_source(source: str, subpath: str) -> int:
    """An O_PATH descriptor of ``subpath`` inside ``source``, reached without leaving it."""
    try:
        relative = paths.resolve(source, subpath)
        if not relative:
            return os.open(source, os.O_PATH | os.O_CLOEXEC)
        parent_path, name = paths.split(relative)
        parent = paths.open_directory(source, parent_path)
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
    except OSError as err:
        raise OSError(err.errno, err.strerror, f"bind mount source {subpath}") from err
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.ELOOP, "symbolic link appeared during setup",
                      f"bind mount source {subpath}")
    return fd


def _bind_content(rootfs: str, content: bytes, target: str, *, name: str = "",
                  mode: int = 0o644, uid: int = 0, gid: int = 0, readonly: bool = False) -> None:
    """A private file with ``content`` (``mode``, owned by ``uid``:``gid``) bound at ``target``.

    The file is made in the step's fresh /dev tmpfs and unlinked once bound:
    the mount keeps it alive, nothing appears in /dev, nothing is written on
    the host, and it vanishes with the namespace. Edits by the step stay in it
    (unless ``readonly``).
    """
    dev = _open_target(rootfs, "/dev", directory=True)
    try:
        name = name or ".pybuild-" + target.rpartition("/")[2]
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dev)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        source = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=dev)
        try:
            mount_point = _open_target(rootfs, target, directory=False)
            try:
                sc.mount(f"/proc/self/fd/{source}", f"/proc/self/fd/{mount_point}", None,
                         sc.MS_BIND, what=f"bind mount {target}")
            finally:
                os.close(mount_point)
        finally:
            os.close(source)
        os.unlink(name, dir_fd=dev)
    finally:
        os.close(dev)
    if readonly:
        fd = _open_target(rootfs, target, directory=False)
        try:
            _remount(f"/proc/self/fd/{fd}", sc.MS_NODEV | sc.MS_RDONLY, what=f"remount {target}")
        finally:
            os.close(fd)


def _remount(path: str, extra: int, *, what: str) -> None:
    """Remount a bind mount with ``extra`` flags added to those it has."""
    current = os.statvfs(path).f_flag
    flags = sc.MS_REMOUNT | sc.MS_BIND | extra
    for st_bit, ms_bit in _FLAG_BITS:
        if current & st_bit:
            flags |= ms_bit
    sc.mount(None, path, None, flags, what=what)


def _populate_dev(rootfs: str) -> None:
    """Device nodes, /dev/pts (a private devpts), /dev/shm, /dev/mqueue and the usual links."""
    dev = _open_target(rootfs, "/dev", directory=True)
    try:
        for name, major, minor in _DEVICES:
            os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
        for name, target in _DEV_LINKS:
            os.symlink(target, name, dir_fd=dev)
        for name in ("pts", "shm", "mqueue"):
            os.mkdir(name, 0o755, dir_fd=dev)
    finally:
        os.close(dev)
    _mount_in(rootfs, "/dev/pts", "devpts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5")
    nosuid_nodev_noexec = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    _mount_in(rootfs, "/dev/shm", "shm", "tmpfs", nosuid_nodev_noexec, "mode=1777,size=65536k")
    _mount_in(rootfs, "/dev/mqueue", "mqueue", "mqueue", nosuid_nodev_noexec)


# Host /dev entries a privileged step does not get: they are the step's own.
_OWN_DEV_ENTRIES = frozenset({"pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr", "ptmx",
                              "console", *(name for name, _, _ in _DEVICES)})


def _copy_host_devices(rootfs: str, host_dev: str = "/dev") -> None:
    """The host's character and block devices, as runc gives a --privileged container.

    Only device nodes (and the directories holding them) are made, with the
    host's mode, numbers and owner; the step's own entries stay its own.
    """
    dev = _open_target(rootfs, "/dev", directory=True)
    try:
        _copy_devices_from(host_dev, dev, depth=0)
    finally:
        os.close(dev)


def _copy_devices_from(host_dir: str, into: int, *, depth: int) -> None:
    try:
        names = sorted(os.listdir(host_dir))
    except OSError:
        return
    for name in names:
        if depth == 0 and name in _OWN_DEV_ENTRIES:
            continue
        path = os.path.join(host_dir, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
            try:
                os.mknod(name, info.st_mode, info.st_rdev, dir_fd=into)
                os.chown(name, info.st_uid, info.st_gid, dir_fd=into, follow_symlinks=False)
            except FileExistsError:
                pass
        elif stat.S_ISDIR(info.st_mode) and depth < 3:
            try:
                os.mkdir(name, stat.S_IMODE(info.st_mode), dir_fd=into)
            except FileExistsError:
                pass
            sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=into)
            try:
                _copy_devices_from(path, sub, depth=depth + 1)
            finally:
                os.close(sub)


def _open_target(rootfs: str, target: str, *, directory: bool) -> int:
    """An O_PATH descriptor of ``target`` inside the root, created (with parents) if missing."""
    try:
        relative = paths.resolve(rootfs, target)
        if not relative:
            return os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        parent_path, name = paths.split(relative)
        parent = paths.open_directory(rootfs, parent_path, create=True)
        try:
            if directory:
                try:
                    os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    pass
            else:
                try:
                    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=parent))
                except FileExistsError:
                    pass
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
    except OSError as err:
        raise OSError(err.errno, err.strerror, f"create mount point {target}") from err
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.ELOOP, "symbolic link appeared during setup",
                      f"create mount point {target}")
    return fd


def _depth(target: str) -> int:
    return len([part for part in target.split("/") if part])
