"""A pybuild store assembled by hand for the gc and verify tests: layers, images, cache rows."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tarfile
import time
from pathlib import Path

from builder.image import oci
from builder.image.store import ImageStore
from cache.blobs import BlobStore
from cache.index import CacheEntry, CacheIndex


def layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("blobs/sha256", "snapshots", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(root)
        self.images = ImageStore(root, blobs=self.blobs)
        self.index = CacheIndex(root / "cache.db")

    def blob_path(self, digest: str) -> Path:
        return self.blobs.path(digest)

    def snapshot_path(self, diff_id: str) -> Path:
        return self.root / "snapshots" / diff_id.removeprefix("sha256:")

    def layer(self, files: dict[str, bytes], *, snapshot: bool = True) -> str:
        """A layer blob (a real tar of ``files``) and, unless told not to, its snapshot."""
        ref = self.blobs.put_bytes(layer_tar(files))
        if snapshot:
            fs = self.snapshot_path(ref.digest) / "fs"
            fs.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (fs / name).parent.mkdir(parents=True, exist_ok=True)
                (fs / name).write_bytes(data)
        return ref.digest

    def image(self, layers: list[str], tag: str | None = None, *, label: str = "") -> str:
        """An image over ``layers`` (tagged if ``tag``); returns its manifest digest."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {
            "l": label}}, "rootfs": {"type": "layers", "diff_ids": layers}}).encode()
        config_ref = self.blobs.put_bytes(config)
        manifest = oci.canonical_json({
            "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": config_ref.digest,
                       "size": config_ref.size},
            "layers": [{"mediaType": oci.OCI_LAYER, "digest": digest,
                        "size": self.blobs.size(digest)} for digest in layers],
        })
        ref = self.blobs.put_bytes(manifest)
        if tag is not None:
            self.images.tag(tag, oci.Descriptor(oci.OCI_MANIFEST, ref.digest, ref.size))
        return ref.digest

    def cache_entry(self, key: str, diff_id: str) -> None:
        size = self.blobs.size(diff_id) if diff_id else 0
        self.index.record(CacheEntry(key, diff_id, size))

    def age(self, diff_id: str, seconds: float) -> None:
        """Make a layer (its rows, blob and snapshot) look last used ``seconds`` ago."""
        moment = time.time() - seconds
        connection = sqlite3.connect(self.root / "cache.db")
        with connection:
            connection.execute("UPDATE steps SET last_used = ?, created = ? WHERE diff_id = ?",
                               (moment, moment, diff_id))
        connection.close()
        for path in (self.blob_path(diff_id), self.snapshot_path(diff_id)):
            if path.exists():
                os.utime(path, (moment, moment))

    def age_path(self, path: Path, seconds: float) -> None:
        moment = time.time() - seconds
        os.utime(path, (moment, moment))


def key(text: str) -> str:
    """A cache-key-shaped name (32 hex digits) for a test row."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]
