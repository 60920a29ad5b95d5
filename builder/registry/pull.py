"""`pybuild pull`: an image from a registry into the local store, every byte verified.

The local store keeps layers uncompressed (blob digest == diff_id), so each
layer is decompressed as it streams in: the compressed bytes are hashed
against the manifest's digest, the uncompressed ones against the config's
diff_id, and the blob only lands when both match. The config and the
manifest land last, so a failed pull leaves no image, only verified layers.
Layers already in the store (by diff_id) and a config already stored are
never fetched again. Memory stays flat: the body is read in 1 MiB pieces and
each is decompressed in bounded pieces too (a MiB of gzip'd zeros is a GiB
of output). ``progress`` shows each layer's download.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from builder.errors import RegistryError, StoreError
from builder.image import oci
from builder.image.config import ImageConfig
from builder.image.layerstream import LayerLandingError, land_uncompressed
from builder.image.store import ImageStore
from builder.registry.client import RegistryOptions, RepositoryClient, open_repository
from builder.registry.reference import RemoteReference, parse_remote
from builder.transfer_progress import TransferProgress
from cache.blobs import BlobStore

__all__ = ["pull", "select_platform"]

_PARALLEL_LAYERS = 3


def pull(
    reference: str | RemoteReference,
    store: ImageStore,
    blobs: BlobStore,
    *,
    platform: oci.Platform | None = None,
    options: RegistryOptions | None = None,
    progress: TransferProgress | None = None,
) -> oci.Descriptor:
    """Pull ``reference`` (``platform`` from an index; this machine's by default), store it
    and tag it with its familiar name; returns the local manifest's descriptor.

    The local manifest is pybuild's OCI manifest over uncompressed layers, so its digest
    differs from the registry's; the config is kept byte for byte (same image id). A
    reference by digest is checked against the registry's manifest and left untagged.
    ``progress`` is told of each layer (transfer_progress.py; quiet if None).
    """
    remote = parse_remote(reference) if isinstance(reference, str) else reference
    if blobs.root.resolve() != store.root.resolve():
        raise StoreError(f"pulling {remote}: blob store {blobs.root} is not the image store's")
    action = f"pulling {remote}"
    client = open_repository(remote, options or RegistryOptions(), actions="pull")
    manifest = _resolve_manifest(client, remote, platform or oci.host_platform(), action)
    config_data = _fetch_config(client, manifest.config, blobs, action)
    try:
        config = ImageConfig.from_bytes(config_data)
    except StoreError as err:
        raise RegistryError(f"{action}: {err}") from err
    if len(manifest.layers) != len(config.diff_ids):
        raise RegistryError(
            f"{action}: {len(manifest.layers)} layers for {len(config.diff_ids)} diff_ids"
        )
    pairs = list(zip(manifest.layers, config.diff_ids, strict=True))
    view = progress if progress is not None else TransferProgress()
    with ThreadPoolExecutor(max_workers=_PARALLEL_LAYERS, thread_name_prefix="pull") as pool:
        layers = list(
            pool.map(
                lambda pair: _fetch_layer(client, pair[0], pair[1], blobs, action, view), pairs
            )
        )
    config_ref = blobs.put_bytes(config_data)
    local = store.put_manifest(
        oci.Descriptor(oci.OCI_CONFIG, config_ref.digest, config_ref.size), layers
    )
    if not remote.digest:
        store.tag(remote.familiar_name, local)
    return local


def select_platform(index: oci.Index, platform: oci.Platform) -> oci.Descriptor:
    """The index entry for ``platform``: os and architecture must match; an exact variant
    wins over an unstated one. Raises RegistryError if none fits."""
    fitting = [
        entry
        for entry in index.manifests
        if entry.platform is not None
        and entry.media_type in oci.MANIFEST_TYPES
        and (entry.platform.os, entry.platform.architecture) == (platform.os, platform.architecture)
        and (not platform.variant or entry.platform.variant in ("", platform.variant))
    ]
    if not fitting:
        wanted = f"{platform.os}/{platform.architecture}"
        if platform.variant:
            wanted += f"/{platform.variant}"
        raise RegistryError(f"no image for {wanted} in the index")
    fitting.sort(
        key=lambda entry: entry.platform is None or entry.platform.variant != platform.variant
    )
    return fitting[0]


def _resolve_manifest(
    client: RepositoryClient, remote: RemoteReference, platform: oci.Platform, action: str
) -> oci.Manifest:
    data, media_type = client.get_manifest(remote.reference, action=action)
    if remote.digest:
        _check_digest(data, remote.digest, action, "manifest")
    try:
        obj = oci.parse_json(data, f"manifest {remote.reference}")
        kind = oci.read_str(obj, "mediaType", "manifest") or media_type
        if kind in oci.INDEX_TYPES or (not kind and "manifests" in obj):
            try:
                entry = select_platform(oci.Index.from_json(obj), platform)
            except RegistryError as err:
                raise RegistryError(f"{action}: {err}") from err
            data, media_type = client.get_manifest(entry.digest, action=action)
            _check_digest(data, entry.digest, action, "manifest")
            obj = oci.parse_json(data, f"manifest {entry.digest}")
            kind = oci.read_str(obj, "mediaType", "manifest") or media_type or entry.media_type
        return oci.Manifest.from_json(obj, media_type=kind)
    except StoreError as err:
        raise RegistryError(f"{action}: {err}") from err


def _fetch_config(
    client: RepositoryClient, descriptor: oci.Descriptor, blobs: BlobStore, action: str
) -> bytes:
    if blobs.has(descriptor.digest):
        return blobs.read_bytes(descriptor.digest)
    with client.open_blob(descriptor.digest, action=action) as response:
        data = response.read(descriptor.size + 1)
    if len(data) != descriptor.size:
        raise RegistryError(f"{action}: config {descriptor.digest} is not {descriptor.size} bytes")
    _check_digest(data, descriptor.digest, action, "config")
    return data


def _fetch_layer(
    client: RepositoryClient,
    layer: oci.Descriptor,
    diff_id: str,
    blobs: BlobStore,
    action: str,
    progress: TransferProgress,
) -> oci.Descriptor:
    """Stream one layer into the store uncompressed; returns its local descriptor."""
    if blobs.has(diff_id):
        progress.skipped("pull", layer.digest, layer.size, "already present")
        return oci.Descriptor(oci.OCI_LAYER, diff_id, blobs.size(diff_id))
    with progress.begin("pull", layer.digest, layer.size) as transfer:
        local = _download_layer(client, layer, diff_id, blobs, action, transfer.advance)
        transfer.finish()
    return local


def _download_layer(
    client: RepositoryClient,
    layer: oci.Descriptor,
    diff_id: str,
    blobs: BlobStore,
    action: str,
    moved: Callable[[int], None],
) -> oci.Descriptor:
    what = f"layer {layer.digest}"
    try:
        with client.open_blob(layer.digest, action=action) as response:
            ref = land_uncompressed(response, layer, diff_id, blobs, moved=moved)
    except LayerLandingError as err:
        reasons = {
            LayerLandingError.TOO_LARGE: f"{what} is larger than {layer.size} bytes",
            LayerLandingError.NOT_ITS_DIGEST: f"{what} does not match its digest",
            LayerLandingError.UNDECODABLE: f"decompressing {what}: {err.detail}",
            LayerLandingError.NOT_ITS_DIFF_ID: (
                f"uncompressed {what} does not match diff_id {diff_id}"
            ),
        }
        raise RegistryError(f"{action}: {reasons[err.reason]}") from err
    return oci.Descriptor(oci.OCI_LAYER, ref.digest, ref.size)


def _check_digest(data: bytes, digest: str, action: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise RegistryError(f"{action}: {what} {digest} does not match its content ({actual})")
