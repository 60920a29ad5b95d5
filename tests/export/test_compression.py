"""builder.export.compression: gzip/zstd layers skopeo reads back, cached for the next export."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
import pyzstd

from builder.errors import StoreError
from builder.export.compression import CompressedLayers, compress_stream
from builder.export.exporter import export
from builder.export.options import Compression, parse_output
from builder.export.tarwriter import BlobTar
from builder.image import oci
from builder.image.store import ImageStore
from tests.image.sample import skopeo


def _sample_data(size: int) -> bytes:
    rng = random.Random(7)
    text = b"".join(b"line %d of some text\n" % n for n in range(size // 40))
    return (rng.randbytes(size // 2) + text)[:size]


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_parallel_gzip_is_valid_gzip_whatever_the_thread_count(level: int) -> None:
    data = _sample_data(3 * (1 << 20) + 12345)
    outputs = {
        threads: b"".join(
            compress_stream(io.BytesIO(data), Compression("gzip", level), threads=threads)
        )
        for threads in (1, 2, 5)
    }
    assert len(set(outputs.values())) == 1, "output depends on the thread count"
    assert gzip.decompress(outputs[1]) == data


def test_gzip_of_empty_input_is_valid() -> None:
    out = b"".join(compress_stream(io.BytesIO(b""), Compression("gzip", 6)))
    assert gzip.decompress(out) == b""


def test_zstd_round_trips() -> None:
    data = _sample_data(2 << 20)
    out = b"".join(compress_stream(io.BytesIO(data), Compression("zstd", 3), threads=2))
    assert pyzstd.decompress(out) == data


@pytest.mark.root
@pytest.mark.parametrize(
    ("option", "media_type", "decompress"),
    [
        ("compression=gzip", oci.OCI_LAYER_GZIP, gzip.decompress),
        ("compression=zstd,compression-level=5", oci.OCI_LAYER_ZSTD, pyzstd.decompress),
    ],
)
def test_skopeo_copies_compressed_layers_with_their_diff_ids(
    store: ImageStore,
    image: oci.Descriptor,
    tmp_path: Path,
    option: str,
    media_type: str,
    decompress: object,
) -> None:
    out = tmp_path / "out.tar"
    export(
        store,
        store.blobs,
        image,
        names=("app:1",),
        spec=parse_output(f"type=oci,dest={out},{option}"),
    )
    copied = tmp_path / "dir"
    skopeo("copy", f"oci-archive:{out}:1", f"dir:{copied}")
    manifest = json.loads((copied / "manifest.json").read_text())
    config = json.loads((copied / manifest["config"]["digest"][7:]).read_bytes())
    diff_ids = config["rootfs"]["diff_ids"]
    assert diff_ids == list(store.config(image).diff_ids)
    assert [layer["mediaType"] for layer in manifest["layers"]] == [media_type] * 3
    for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        packed = (copied / layer["digest"][7:]).read_bytes()
        assert len(packed) == layer["size"]
        plain = decompress(packed)  # type: ignore[operator]
        assert "sha256:" + hashlib.sha256(plain).hexdigest() == diff_id


def test_docker_media_types_with_docker_output(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    spec = parse_output(f"type=oci,dest={out},oci-mediatypes=false")
    export(store, store.blobs, image, names=("app:1",), spec=spec)
    with tarfile.open(out) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        digest = index["manifests"][0]["digest"]
        manifest = json.loads(
            tar.extractfile("blobs/sha256/" + digest[7:]).read()  # type: ignore[union-attr]
        )
    assert index["manifests"][0]["mediaType"] == oci.DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == oci.DOCKER_CONFIG
    assert {layer["mediaType"] for layer in manifest["layers"]} == {oci.DOCKER_LAYER_GZIP}


def _export_to_file(store: ImageStore, image: oci.Descriptor, path: Path, options: str) -> None:
    export(store, store.blobs, image, names=(), spec=parse_output(f"type=oci,dest={path}{options}"))


def test_a_first_export_to_a_file_keeps_no_copy_the_second_keeps_one_the_third_reuses_it(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    compression = parse_output("type=oci,dest=x,compression=zstd").compression
    cache = CompressedLayers(store.blobs)
    diff_ids = store.config(image).diff_ids
    blobs_before = set(store.blobs.iter_digests())

    _export_to_file(store, image, tmp_path / "one.tar", ",compression=zstd")
    assert set(store.blobs.iter_digests()) == blobs_before  # streamed in, not kept
    assert [cache.lookup(diff_id, compression) for diff_id in diff_ids] == [None] * len(diff_ids)
    assert all(cache.exported_before(diff_id, compression) for diff_id in diff_ids)

    _export_to_file(store, image, tmp_path / "two.tar", ",compression=zstd")
    found = [cache.lookup(diff_id, compression) for diff_id in diff_ids]
    assert all(found)
    blob_times = {d: os.stat(store.blobs.path(d)).st_mtime_ns for d, _ in found}  # type: ignore[misc]
    index_before = (store.root / "compressed-layers.json").read_bytes()

    _export_to_file(store, image, tmp_path / "three.tar", ",compression=zstd")
    one = (tmp_path / "one.tar").read_bytes()
    assert one == (tmp_path / "two.tar").read_bytes() == (tmp_path / "three.tar").read_bytes()
    assert (store.root / "compressed-layers.json").read_bytes() == index_before
    assert {d: os.stat(store.blobs.path(d)).st_mtime_ns for d in blob_times} == blob_times


def test_an_export_to_a_pipe_keeps_a_copy_from_the_first(
    store: ImageStore, image: oci.Descriptor
) -> None:
    # A pipe cannot take a member's header after its body: the blob is made first.
    spec = parse_output("type=oci,dest=-,compression=zstd")
    export(store, store.blobs, image, names=(), spec=spec, stdout=io.BytesIO())
    cache = CompressedLayers(store.blobs)
    assert all(cache.lookup(d, spec.compression) for d in store.config(image).diff_ids)


def test_layers_exported_once_are_remembered_up_to_a_limit(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builder.export.compression as compression_module

    monkeypatch.setattr(compression_module, "_EXPORTED_ONCE_LIMIT", 3)
    cache = CompressedLayers(store.blobs)
    zstd = Compression("zstd", 3)
    diff_ids = ["sha256:" + f"{n:064x}" for n in range(5)]
    clock = iter(range(1000, 2000))
    monkeypatch.setattr(compression_module.time, "time", lambda: next(clock))
    for diff_id in diff_ids:
        cache.note_exported(diff_id, zstd)
    assert [cache.exported_before(d, zstd) for d in diff_ids] == [False, False, True, True, True]
    assert not cache.exported_before(diff_ids[-1], Compression("zstd", 4))  # the level counts


def test_cache_entry_whose_blob_is_gone_is_recompressed(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    for _ in range(2):  # the second export keeps a copy
        _export_to_file(store, image, tmp_path / "one.tar", "")
    spec = parse_output(f"type=oci,dest={tmp_path / 'one.tar'}")
    diff_id = store.config(image).diff_ids[0]
    found = CompressedLayers(store.blobs).lookup(diff_id, spec.compression)
    assert found is not None
    store.blobs.delete(found[0])
    assert CompressedLayers(store.blobs).lookup(diff_id, spec.compression) is None
    export(store, store.blobs, image, names=(), spec=spec)
    assert store.blobs.has(found[0])


class _Trickle(io.RawIOBase):
    """A stream that hands out at most 1000 bytes per read, as decompressors may."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        piece = self._data.read(min(len(buffer), 1000))
        buffer[: len(piece)] = piece
        return len(piece)


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_output_depends_neither_on_threads_nor_on_read_sizes(algorithm: str) -> None:
    data = _sample_data(9 * (1 << 20) + 4321)
    compression = Compression(algorithm, 3)
    outputs = {
        (threads, trickle): b"".join(
            compress_stream(
                cast(BinaryIO, _Trickle(data) if trickle else io.BytesIO(data)),
                compression,
                threads=threads,
            )
        )
        for threads in (1, 2, 7)
        for trickle in (False, True)
    }
    assert len(set(outputs.values())) == 1, "output depends on threads or read sizes"
    out = outputs[(1, False)]
    assert (gzip.decompress(out) if algorithm == "gzip" else pyzstd.decompress(out)) == data


def test_zstd_is_a_frame_per_4_mib_that_the_zstd_tool_reads() -> None:
    data = _sample_data(10 << 20)
    out = b"".join(compress_stream(io.BytesIO(data), Compression("zstd", 3), threads=2))
    assert out.count(b"\x28\xb5\x2f\xfd") >= 3  # 4 + 4 + 2 MiB, a frame each
    tool = shutil.which("zstd")
    if tool is None:
        pytest.skip("the zstd tool is not installed")
    plain = subprocess.run([tool, "-d", "-c", "-q"], input=out, capture_output=True, check=True)
    assert plain.stdout == data


def test_zstd_of_nothing_is_a_valid_empty_stream() -> None:
    out = b"".join(compress_stream(io.BytesIO(b""), Compression("zstd", 3)))
    assert out and pyzstd.decompress(out) == b""


@pytest.mark.parametrize("algorithm", ["gzip", "zstd", "uncompressed"])
def test_streamed_and_copied_archives_are_the_same_bytes(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path, algorithm: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # To a file, a layer compressed now is streamed in as it compresses and never read
    # back from the store; to a pipe (here a BytesIO) it is copied in afterwards.
    copied_blobs: list[str] = []
    original = BlobTar.add_file

    def recording(self: BlobTar, header: tarfile.TarInfo, source: int, **kwargs: Any) -> None:
        copied_blobs.append("sha256:" + header.name.rpartition("/")[2])
        original(self, header, source, **kwargs)

    monkeypatch.setattr(BlobTar, "add_file", recording)
    to_file = tmp_path / "file.tar"
    export(store, store.blobs, image, names=("app:1",),
           spec=parse_output(f"type=oci,dest={to_file},compression={algorithm}"))
    layers = [layer.digest for layer in _archived_manifest(to_file).layers]
    streamed = algorithm != "uncompressed"
    assert bool(set(layers) & set(copied_blobs)) != streamed
    piped = io.BytesIO()
    export(store, store.blobs, image, names=("app:1",),
           spec=parse_output(f"type=oci,dest=-,compression={algorithm}"), stdout=piped)
    assert piped.getvalue() == to_file.read_bytes()


def _archived_manifest(path: Path) -> oci.Manifest:
    with tarfile.open(path) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        digest = index["manifests"][0]["digest"]
        data = tar.extractfile("blobs/sha256/" + digest[7:]).read()  # type: ignore[union-attr]
    return oci.Manifest.from_json(json.loads(data))


def test_a_damaged_cached_blob_is_refused(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    spec = parse_output(f"type=oci,dest={tmp_path / 'one.tar'},compression=zstd")
    for _ in range(2):  # the second export keeps a copy
        export(store, store.blobs, image, names=(), spec=spec)
    diff_id = store.config(image).diff_ids[-1]
    found = CompressedLayers(store.blobs).lookup(diff_id, spec.compression)
    assert found is not None
    path = store.blobs.path(found[0])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        export(store, store.blobs, image, names=(),
               spec=parse_output(f"type=oci,dest={tmp_path / 'two.tar'},compression=zstd"))
    assert not (tmp_path / "two.tar").exists()


def test_a_failed_write_stops_the_reading_and_compressing_threads(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from cache.blobs import BlobWriter

    big = store.blobs.put_bytes(_sample_data(12 << 20))
    layer = oci.Descriptor(oci.OCI_LAYER, big.digest, big.size)

    def full(self: BlobWriter, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BlobWriter, "write", full)
    from builder.export.compression import convert_layer

    with pytest.raises(OSError, match="No space"):
        convert_layer(store.blobs, layer, big.digest, Compression("zstd", 3), oci_media_types=True)
    alive = [t.name for t in threading.enumerate() if t.name.startswith(("compress", "writeback"))]
    assert alive == []
