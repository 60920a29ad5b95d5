"""The snapshotter: overlay mounts, upper dir → layer tar, layer tar → snapshot dir.

Modules: ``mount`` (mount(2) through libc, overlay mounts of any chain
length), ``diff`` (write_layer), ``apply`` (extract_layer), ``store``
(SnapshotStore under ROOT/snapshots), ``tarformat`` (byte-exact headers),
``tarstream`` (reading gzip/zstd/plain layers strictly) and ``fsmount`` (the
new mount API, for chains past one page of options).
"""

from __future__ import annotations

from builder.snapshot.apply import extract_layer
from builder.snapshot.diff import LayerStats, write_layer

# mount() and umount() stay in builder.snapshot.mount: re-exporting them here
# would shadow the submodule of the same name.
from builder.snapshot.mount import mounts_under, overlay
from builder.snapshot.store import ActiveSnapshot, SnapshotStore

__all__ = [
    "ActiveSnapshot",
    "LayerStats",
    "SnapshotStore",
    "extract_layer",
    "mounts_under",
    "overlay",
    "write_layer",
]
