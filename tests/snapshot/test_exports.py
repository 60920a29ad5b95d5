"""The snapshot package exports exactly its public names, each importable."""

from __future__ import annotations

import builder.snapshot
import builder.snapshot.mount


def test_exports_are_the_documented_set() -> None:
    assert sorted(builder.snapshot.__all__) == [
        "ActiveSnapshot",
        "LayerStats",
        "SnapshotStore",
        "extract_layer",
        "mounts_under",
        "overlay",
        "write_layer",
    ]
    for name in builder.snapshot.__all__:
        assert getattr(builder.snapshot, name) is not None, name


def test_the_mount_module_is_not_shadowed_by_a_function() -> None:
    assert callable(builder.snapshot.mount.mount)
    assert callable(builder.snapshot.mount.umount)
