"""``type=local``: the cache as an OCI image layout directory (index.json, oci-layout, blobs/).

Writing never leaves a half-written cache behind: each blob lands by
rename under its digest, and index.json, which is what makes the new
manifest visible, is renamed into place last.  A reader sees the old cache
or the new one.  Blobs of earlier exports to the same directory stay (an
earlier index.json being read at that moment may still name them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from builder.cachexport.imports import LoadedCache, cache_from_manifest, read_small_blob
from builder.errors import CacheError, StoreError
from builder.image import oci
from cache import files
from cache.blobs import BlobStore, validate_digest

__all__ = ["DirectorySource", "LocalTarget", "load_local"]

_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_REF_NAME = "pybuild-cache"


class DirectorySource:
    """Blobs of an OCI layout directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, digest: str) -> Path:
        try:
            hex_digest = validate_digest(digest).removeprefix("sha256:")
        except StoreError as err:
            raise CacheError(f"cache {self.directory}: {err}") from err
        return self.directory / "blobs" / "sha256" / hex_digest

    @contextlib.contextmanager
    def open_blob(self, blob: oci.Descriptor) -> Iterator[BinaryIO]:
        try:
            stream = open(self.path(blob.digest), "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError as err:
            raise CacheError(f"cache {self.directory}: blob {blob.digest} is missing") from err
        with stream:
            yield stream


def load_local(directory: Path) -> LoadedCache:
    """The cache an OCI layout directory holds (its newest cache manifest)."""
    source = DirectorySource(directory)
    try:
        index_data = (directory / "index.json").read_bytes()
    except FileNotFoundError as err:
        raise CacheError(f"{directory}: no index.json (no cache exported there yet)") from err
    try:
        index = oci.Index.from_json(json.loads(index_data))
        entries = [entry for entry in index.manifests if entry.media_type == oci.OCI_MANIFEST]
        if not entries:
            raise CacheError(f"{directory}: index.json names no image manifest")
        entry = entries[-1]
        data = read_small_blob(source, entry, f"cache {directory}: manifest")
        manifest = oci.Manifest.from_json(oci.parse_json(data, "cache manifest"))
    except (StoreError, ValueError) as err:
        raise CacheError(f"{directory}: {err}") from err
    return cache_from_manifest(manifest, source, str(directory))


class LocalTarget:
    """Where ``--cache-to type=local`` writes: blobs first, index.json last."""

    def __init__(self, directory: Path, blobs: BlobStore) -> None:
        self.directory = directory
        self._blobs = blobs
        self._blob_dir = directory / "blobs" / "sha256"

    def put_layers(self, layers: Sequence[oci.Descriptor]) -> list[oci.Descriptor]:
        """Copy each store layer in, gzip-compressed (compressions are remembered in the
        store, so exporting the same layers again does not compress them again)."""
        from builder.export.compression import convert_layer
        from builder.export.options import Compression

        gzip = Compression.default("gzip")
        out = []
        try:
            self._blob_dir.mkdir(parents=True, exist_ok=True)
            for layer in layers:
                blob = convert_layer(self._blobs, layer, layer.digest, gzip, oci_media_types=True)
                _copy_blob(self._blob_dir, blob.digest, self._blobs.path(blob.digest))
                out.append(blob)
        except OSError as err:
            raise CacheError(f"writing the cache to {self.directory}: {err.strerror or err}"
                             ) from err
        return out

    def finish(self, manifest: oci.Manifest, config: bytes) -> None:
        try:
            self._blob_dir.mkdir(parents=True, exist_ok=True)
            _write_blob(self._blob_dir, manifest.config.digest, config)
            data = oci.canonical_json(manifest.to_json())
            descriptor = oci.Descriptor(oci.OCI_MANIFEST, _sha256(data), len(data))
            _write_blob(self._blob_dir, descriptor.digest, data)
            if not (self.directory / "oci-layout").is_file():
                files.write_atomically(self.directory / "oci-layout", _LAYOUT)
            entry = descriptor.with_annotations({oci.ANNOTATION_REF_NAME: _REF_NAME})
            index = oci.Index(manifests=(entry,))
            # Last: until this rename, readers see the previous cache whole.
            files.write_atomically(self.directory / "index.json",
                                   oci.canonical_json(index.to_json()))
        except OSError as err:
            raise CacheError(f"writing the cache to {self.directory}: {err.strerror or err}"
                             ) from err


def _copy_blob(blob_dir: Path, digest: str, source: Path) -> None:
    target = blob_dir / digest.removeprefix("sha256:")
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return  # content-addressed: same name, same bytes
    fd, temp = tempfile.mkstemp(prefix=".blob-", dir=blob_dir)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as stream:
            shutil.copyfileobj(stream, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)
        os.rename(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _write_blob(blob_dir: Path, digest: str, data: bytes) -> None:
    target = blob_dir / digest.removeprefix("sha256:")
    if not target.is_file():
        files.write_atomically(target, data)


def _sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()
