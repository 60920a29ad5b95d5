"""``type=registry``: the cache as an OCI image manifest in a registry.

The manifest's config is the cache document (its own media type) and its
layers are the cached layers, gzip-compressed by the same code (and the
same remembered compressions) as ``pybuild push``, so an image and its
cache pushed to one registry share their blobs.  Blobs the registry has are
skipped by a HEAD; the manifest goes last, so a failed export never leaves
a tag naming missing blobs.  Reading accepts that, or any image whose
config carries an inline cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from builder.cachexport.imports import LoadedCache, cache_from_manifest
from builder.errors import CacheError, RegistryError, StoreError
from builder.image import oci
from builder.registry.client import RegistryOptions, RepositoryClient, open_repository
from builder.registry.push import push_layer, upload_blob
from builder.registry.reference import parse_remote
from builder.registry.transport import Response
from cache.blobs import BlobStore

__all__ = ["RegistrySource", "RegistryTarget", "load_registry"]

_PARALLEL_LAYERS = 3


class RegistrySource:
    """Blobs of one repository on a registry."""

    def __init__(self, client: RepositoryClient, action: str) -> None:
        self._client = client
        self._action = action

    @contextlib.contextmanager
    def open_blob(self, blob: oci.Descriptor) -> Iterator[Response]:
        with self._client.open_blob(blob.digest, action=self._action) as response:
            yield response


def load_registry(reference: str, options: RegistryOptions) -> LoadedCache:
    """The cache (or the inline cache of the image) that ``reference`` names."""
    remote = parse_remote(reference)
    action = f"importing cache {remote}"
    client = open_repository(remote, options, actions="pull")
    data, media_type = client.get_manifest(remote.reference, action=action)
    if remote.digest and "sha256:" + hashlib.sha256(data).hexdigest() != remote.digest:
        raise RegistryError(f"{action}: manifest does not match {remote.digest}")
    try:
        obj = oci.parse_json(data, f"manifest {remote.reference}")
        kind = oci.read_str(obj, "mediaType", "manifest") or media_type
        if kind in oci.INDEX_TYPES or (not kind and "manifests" in obj):
            raise CacheError(f"{remote} is an index, not a pybuild cache or a single image")
        manifest = oci.Manifest.from_json(obj, media_type=kind)
    except StoreError as err:
        raise CacheError(f"{remote}: {err}") from err
    return cache_from_manifest(manifest, RegistrySource(client, action), reference)


class RegistryTarget:
    """Where ``--cache-to type=registry`` writes: layers first, then config and manifest."""

    def __init__(self, reference: str, options: RegistryOptions, blobs: BlobStore) -> None:
        remote = parse_remote(reference)
        self._action = f"exporting cache to {remote}"
        if remote.digest:
            raise RegistryError(f"{self._action}: a cache goes to a tag, not a digest")
        self._tag = remote.tag
        self._blobs = blobs
        self._client = open_repository(remote, options, actions="pull,push")

    def put_layers(self, layers: Sequence[oci.Descriptor]) -> list[oci.Descriptor]:
        """Make the registry hold each store layer; the blobs it holds them as."""

        def send(layer: oci.Descriptor) -> oci.Descriptor:
            return push_layer(self._client, self._blobs, layer, action=self._action)

        if len(layers) <= 1:
            return [send(layer) for layer in layers]
        with ThreadPoolExecutor(_PARALLEL_LAYERS, thread_name_prefix="cache-push") as pool:
            return list(pool.map(send, layers))

    def finish(self, manifest: oci.Manifest, config: bytes) -> None:
        """The config, then the manifest under the tag: the cache appears whole."""
        upload_blob(self._client, manifest.config.digest, len(config), io.BytesIO(config),
                    action=self._action)
        data = oci.canonical_json(manifest.to_json())
        self._client.put_manifest(self._tag, data, oci.OCI_MANIFEST, action=self._action)
