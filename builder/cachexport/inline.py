"""``--cache-from type=image,ref=NAME``: the inline cache of an image in the local store.

What classic ``docker build --cache-from NAME`` did: an image brought in
by ``pybuild load`` or ``pybuild pull`` that was built with ``--cache-to
type=inline`` answers the steps that made it.  Its layers are already in
the store, so every hit is indexed at once, nothing is fetched.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

from builder.cachexport.imports import LoadedCache, cache_from_manifest
from builder.image import oci
from builder.image.store import ImageStore
from cache.blobs import BlobStore

__all__ = ["StoreSource", "load_image"]


class StoreSource:
    """Blobs of the local store."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    @contextlib.contextmanager
    def open_blob(self, blob: oci.Descriptor) -> Iterator[io.BufferedReader]:
        with self._blobs.open(blob.digest) as stream:
            yield stream


def load_image(store: ImageStore, name: str) -> LoadedCache:
    manifest = store.manifest(store.resolve(name))
    return cache_from_manifest(manifest, StoreSource(store.blobs), name)
