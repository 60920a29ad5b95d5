"""type=local: an OCI layout directory that appears whole, and reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.cachexport import local
from builder.cachexport.document import CONFIG_MEDIA_TYPE, CacheDocument, CacheRecord
from builder.cachexport.imports import ImportChain
from builder.cachexport.local import LocalTarget, load_local
from builder.errors import CacheError
from builder.image import oci
from builder.plan.graph import LayerRef
from cache.blobs import BlobStore
from cache.index import CacheIndex
from tests.cachexport.helpers import layer_tar, sha256


def _export(directory: Path, blobs: BlobStore, key: str, files: dict[str, bytes]) -> str:
    """Export one record whose layer holds ``files``; returns its diff_id."""
    ref = blobs.put_bytes(layer_tar(files))
    target = LocalTarget(directory, blobs)
    (held,) = target.put_layers([oci.Descriptor(oci.OCI_LAYER, ref.digest, ref.size)])
    assert held.media_type == oci.OCI_LAYER_GZIP
    document = CacheDocument("max", (CacheRecord(key, "", ref.digest, ref.size, 5.0,
                                                 held.digest, "RUN x"),))
    config = document.to_bytes()
    manifest = oci.Manifest(oci.Descriptor(CONFIG_MEDIA_TYPE, sha256(config), len(config)),
                            (held,))
    target.finish(manifest, config)
    return ref.digest


def test_round_trip_through_a_directory(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "root")
    directory = tmp_path / "cache"
    diff_id = _export(directory, blobs, "k1", {"hello": b"world"})
    assert json.loads((directory / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    cache = load_local(directory)
    assert [record.key for record in cache.document.records] == ["k1"]

    other = BlobStore(tmp_path / "other")
    (tmp_path / "other").mkdir(exist_ok=True)
    chain = ImportChain([cache], blobs=other, index=CacheIndex(tmp_path / "other" / "cache.db"))
    hit = chain.lookup("k1")
    assert hit is not None and hit.source == f"import:{directory}" and hit.created == 5.0
    chain.ensure([LayerRef(hit.diff_id, hit.size)])
    assert other.read_bytes(diff_id) == blobs.read_bytes(diff_id)


def test_a_failed_export_leaves_the_previous_cache_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = BlobStore(tmp_path / "root")
    directory = tmp_path / "cache"
    _export(directory, blobs, "old", {"a": b"1"})
    real = local.files.write_atomically

    def failing(path: Path, data: bytes, **kwargs: object) -> None:
        if path.name == "index.json":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(local.files, "write_atomically", failing)
    with pytest.raises(CacheError, match="No space left"):
        _export(directory, blobs, "new", {"b": b"2"})
    assert [record.key for record in load_local(directory).document.records] == ["old"]


def test_unreadable_directories_are_cache_errors(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no index.json"):
        load_local(tmp_path / "missing")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "index.json").write_text("{not json")
    with pytest.raises(CacheError):
        load_local(tmp_path / "garbage")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "index.json").write_text(
        '{"schemaVersion": 2, "manifests": []}')
    with pytest.raises(CacheError, match="names no image manifest"):
        load_local(tmp_path / "empty")


def test_a_blob_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "root")
    directory = tmp_path / "cache"
    _export(directory, blobs, "k1", {"a": b"1"})
    index = json.loads((directory / "index.json").read_text())
    manifest = directory / "blobs/sha256" / index["manifests"][0]["digest"][7:]
    manifest.write_bytes(manifest.read_bytes().replace(b"schemaVersion", b"schemaVersioN"))
    with pytest.raises(CacheError, match="does not match"):
        load_local(directory)
