"""Cache mounts as layers: exported from one root, restored into another's empty mount."""

from __future__ import annotations

import gzip
from pathlib import Path

from builder.cachexport.document import CacheDocument, MountRecord
from builder.cachexport.imports import LoadedCache
from builder.cachexport.mounts import mount_layers, restore_mounts
from builder.image import oci
from cache.blobs import BlobStore
from cache.mounts import CacheMounts
from tests.cachexport.helpers import MemorySource, sha256


def _cache_of(root: Path, blobs: BlobStore) -> LoadedCache:
    """Root's cache mounts as a cache another root can import."""
    records, layers, contents = [], {}, {}
    for mount_id, layer in mount_layers(root, blobs):
        packed = gzip.compress(blobs.read_bytes(layer.diff_id), mtime=0)
        blob = oci.Descriptor(oci.OCI_LAYER_GZIP, sha256(packed), len(packed))
        contents[blob.digest] = packed
        layers[blob.digest] = blob
        records.append(MountRecord(mount_id, layer.diff_id, blob.digest))
    return LoadedCache("mounts", CacheDocument("min", mounts=tuple(records)), layers,
                       MemorySource(contents))


def test_mounts_travel_into_missing_and_empty_mounts_only(tmp_path: Path) -> None:
    first = tmp_path / "first"
    mounts = CacheMounts(first)
    for mount_id, text in (("pip", "wheels"), ("apt", "debs"), ("warm", "remote")):
        data = mounts.directory(mount_id) / "data"
        (data / "sub").mkdir()
        (data / "sub" / "file").write_text(text)
    mounts.directory("empty")  # nothing in it: nothing exported
    cache = _cache_of(first, BlobStore(first))
    assert sorted(record.id for record in cache.document.mounts) == ["apt", "pip", "warm"]

    second = tmp_path / "second"
    here = CacheMounts(second)
    here.directory("apt")  # exists, empty: filled
    (here.directory("warm") / "data" / "mine").write_text("local")  # warm: kept
    warnings: list[str] = []
    restored = restore_mounts([cache], second, BlobStore(second), warnings.append)
    assert sorted(restored) == ["apt", "pip"] and warnings == []
    for mount_id, text in (("pip", "wheels"), ("apt", "debs")):
        assert (here.path(mount_id) / "data/sub/file").read_text() == text
    assert [path.name for path in (here.path("warm") / "data").iterdir()] == ["mine"]
    # The mount tars were only a way in: no stray blobs stay in the store.
    assert list(BlobStore(second).iter_digests()) == []


def test_a_damaged_mount_is_a_warning(tmp_path: Path) -> None:
    first = tmp_path / "first"
    (CacheMounts(first).directory("pip") / "data" / "f").write_text("x")
    cache = _cache_of(first, BlobStore(first))
    source = cache.source
    assert isinstance(source, MemorySource)
    for digest in source.blobs:
        source.blobs[digest] = b"\x1f\x8b garbage"
    warnings: list[str] = []
    second = tmp_path / "second"
    assert restore_mounts([cache], second, BlobStore(second), warnings.append) == []
    assert len(warnings) == 1 and "cache mount 'pip'" in warnings[0]
    assert not (CacheMounts(second).path("pip") / "data" / "f").exists()
