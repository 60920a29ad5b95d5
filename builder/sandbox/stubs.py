"""Mount points a step needed but its root lacked: found before the step, removed after.

A mount needs a file or directory to land on; when the root has none, the
init creates it, parents included. Left alone, these empty stubs would land
in the step's layer (an empty /etc/resolv.conf in a scratch image, the target
directory of a cache mount). As BuildKit's MountStubsCleaner does in its
recursive form, the builder notes which paths are missing before the step
and afterwards removes those that are still empty, keeping the times of the
directory they were in.

Removal runs as root on a tree the step could change, so it walks with
``paths.open_directory`` (no symlink followed) and only ever removes an empty
directory or an empty regular file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from builder.sandbox import paths

# The init mounts these in every step, besides the spec's own mounts.
RESOLVER_TARGETS = ("/etc/resolv.conf", "/etc/hosts")


def find_missing(rootfs: Path, targets: Iterable[str]) -> tuple[str, ...]:
    """Root-relative paths of the targets and their parents that do not exist, deepest first."""
    root = str(rootfs)
    missing: set[str] = set()
    for target in targets:
        try:
            relative = paths.resolve(root, target)
        except OSError:
            continue  # a symlink loop: the init will fail on it and say so
        while relative and relative not in missing:
            if os.path.lexists(os.path.join(root, relative)):
                break
            missing.add(relative)
            relative = relative.rpartition("/")[0]
    return tuple(sorted(missing, key=lambda relative: (-relative.count("/"), relative)))


def remove(rootfs: Path, stubs: Iterable[str]) -> None:
    """Remove each stub that is still empty; give its directory back its times."""
    root = str(rootfs)
    for relative in stubs:
        parent_path, name = paths.split(relative)
        try:
            parent = paths.open_directory(root, parent_path)
        except OSError:
            continue  # replaced or removed by the step: leave it to the layer
        try:
            _remove_if_empty(parent, name)
        finally:
            os.close(parent)


def _remove_if_empty(parent: int, name: str) -> None:
    try:
        found = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return
    if not (stat.S_ISDIR(found.st_mode) or (stat.S_ISREG(found.st_mode) and found.st_size == 0)):
        return
    directory = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent)
    try:
        times = os.fstat(directory)
        try:
            if stat.S_ISDIR(found.st_mode):
                os.rmdir(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
        except OSError:
            return  # not empty any more, or still busy: it stays
        os.utime(directory, ns=(times.st_atime_ns, times.st_mtime_ns))
    finally:
        os.close(directory)
