"""The snapshotter: overlay mounts, upper dir → layer tar, layer tar → snapshot dir.

Modules: ``mount`` (mount(2) through libc, overlay mounts of any chain
length), ``diff`` (write_layer), ``apply`` (extract_layer), ``store``
(SnapshotStore under ROOT/snapshots), ``tarformat`` (byte-exact headers),
``tarstream`` (reading gzip/zstd/plain layers strictly) and ``fsmount`` (the
new mount API, for chains past one page of options).
"""

from __future__ import annotations

from builder import lazy

__all__ = [
    "ActiveSnapshot",
    "LayerStats",
    "SnapshotStore",
    "extract_layer",
    "mounts_under",
    "overlay",
    "write_layer",
]

# Re-exported lazily: a fully cached build only asks whether a snapshot
# exists and must not pay for ctypes, the mount code and the tar readers.
# mount() and umount() stay in builder.snapshot.mount: re-exporting them here
# would shadow the submodule of the same name.
_HOMES = {
    "ActiveSnapshot": "builder.snapshot.store",
    "SnapshotStore": "builder.snapshot.store",
    "LayerStats": "builder.snapshot.diff",
    "write_layer": "builder.snapshot.diff",
    "extract_layer": "builder.snapshot.apply",
    "mounts_under": "builder.snapshot.mount",
    "overlay": "builder.snapshot.mount",
}

__getattr__ = lazy.exports(__name__, _HOMES)
