"""Paths inside a root file system, resolved as if the root were "/".

A step's root was written by earlier steps, so any symlink in it may point
anywhere: /etc/passwd -> /etc/shadow, /proc -> /. Host-side code that looks
inside a root (the builder reading /etc/passwd, the init choosing mount
targets) resolves paths here, with the rules of continuity's fs.RootPath: an
absolute link restarts at the root and ".." stops there. Opening then walks
the resolved components with O_NOFOLLOW from a descriptor of the root, so a
tree changed between the two fails (ELOOP, ENOTDIR) instead of escaping.

Imports only os and stat: the init process uses this module too.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_LINKS = 255  # as many as Linux follows in one path walk before ELOOP

_WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def resolve(root: str, path: str) -> str:
    """Return what ``path`` names inside ``root`` as "a/b/c" ("" for the root itself).

    Symlinks are read with ``root`` standing for "/"; components that do not
    exist are kept as written (".." in them still stops at the root).
    """
    resolved: list[str] = []
    pending = _components(path)
    pending.reverse()
    links = 0
    while pending:
        name = pending.pop()
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, name)
        try:
            mode = os.lstat(candidate).st_mode
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(name)
            continue
        if not stat.S_ISLNK(mode):
            resolved.append(name)
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/" + path.lstrip("/"))
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved.clear()
        pending.extend(reversed(_components(target)))
    return "/".join(resolved)


def open_directory(root: str, relative: str, *, create: bool = False) -> int:
    """Open root/relative (already resolved) as an O_PATH directory, following no symlink.

    With ``create``, missing directories are made (mode 0755, owned by the
    caller). The caller closes the returned descriptor.
    """
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in _components(relative):
            try:
                child = os.open(name, _WALK_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(name, _WALK_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def split(relative: str) -> tuple[str, str]:
    """Split "a/b/c" into ("a/b", "c"); the root itself has no parent."""
    parent, _, name = relative.rpartition("/")
    if not name:
        raise ValueError("the root has no parent directory")
    return parent, name


def read_file(root: str, path: str, *, limit: int) -> bytes | None:
    """Read a regular file inside ``root``; None when it is missing or not a regular file.

    A FIFO or device planted by an earlier step is never opened for reading
    (it could block, or read the host's disk); more than ``limit`` bytes is
    an error.
    """
    relative = resolve(root, path)
    if not relative:
        return None
    parent_path, name = split(relative)
    try:
        parent = open_directory(root, parent_path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        try:
            before = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(before.st_mode):
            return None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=parent)
    finally:
        os.close(parent)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise OSError(errno.ESTALE, "file changed while being opened", path)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]
