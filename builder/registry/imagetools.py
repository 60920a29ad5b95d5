"""`pybuild imagetools create`: one multi-platform index, in a registry, over images already there.

pybuild builds for the machine it runs on; a multi-platform image is made
the way ``docker buildx imagetools create`` makes one from per-platform
builds: each source (a manifest, or an index whose entries are all taken)
becomes an entry of a new OCI index, with the platform its config names,
and the index is put under each target tag. An index can only name
manifests in its own repository, so a source from another repository (or
registry) is copied in first: its blobs by a cross-repository mount where
the registry grants one, else downloaded, checked and uploaded; then its
manifest, by digest. Every manifest and config read is checked against its
digest. Nothing here touches the local store.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from builder.errors import RegistryError, StoreError
from builder.image import oci
from builder.registry.client import RegistryOptions, RepositoryClient, open_repository
from builder.registry.push import upload_blob
from builder.registry.reference import RemoteReference, parse_remote

__all__ = ["CreatedIndex", "create_index"]

_MAX_CONFIG = 8 << 20
_SPOOL = 8 << 20  # a copied blob is held in memory up to this, then in a temp file
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class CreatedIndex:
    """The index made: its descriptor and bytes, and the tags it was put under."""

    descriptor: oci.Descriptor
    data: bytes
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Source:
    """One source as read: where it is, and the index entries it gives."""

    reference: RemoteReference
    client: RepositoryClient
    entries: tuple[oci.Descriptor, ...]


def create_index(
    sources: Sequence[str],
    targets: Sequence[str],
    *,
    options: RegistryOptions | None = None,
    dry_run: bool = False,
) -> CreatedIndex:
    """Make an OCI index of ``sources`` and put it under each of ``targets`` (tags).

    With ``dry_run`` nothing is written: the index is only made and returned.
    Raises RegistryError naming the source or target that fails.
    """
    if not sources:
        raise RegistryError("imagetools create: name at least one source image")
    if not targets and not dry_run:
        raise RegistryError("imagetools create: name the index with -t (or use --dry-run)")
    options = options or RegistryOptions()
    read = [_read_source(parse_remote(text), options) for text in sources]
    entries: dict[str, oci.Descriptor] = {}
    for source in read:
        for entry in source.entries:
            entries.setdefault(entry.digest, entry)  # the same manifest twice is one entry
    data = oci.canonical_json(oci.Index(manifests=tuple(entries.values())).to_json())
    descriptor = oci.Descriptor(oci.OCI_INDEX, _sha256(data), len(data))
    written: list[str] = []
    if not dry_run:
        for text in targets:
            target = parse_remote(text)
            if target.digest or not target.tag:
                raise RegistryError(f"imagetools create -t {text}: name a tag to put the index under")
            action = f"creating {target}"
            client = open_repository(target, options, actions="pull,push")
            for source in read:
                if (source.reference.registry, source.reference.repository) != (
                    target.registry, target.repository
                ):
                    for entry in source.entries:
                        _copy_manifest(source, client, entry, action)
            client.put_manifest(target.tag, data, oci.OCI_INDEX, action=action)
            written.append(str(target))
    return CreatedIndex(descriptor, data, tuple(written))


def _read_source(reference: RemoteReference, options: RegistryOptions) -> _Source:
    action = f"reading {reference}"
    client = open_repository(reference, options, actions="pull")
    data, header_type = client.get_manifest(reference.reference, action=action)
    if reference.digest and _sha256(data) != reference.digest:
        raise RegistryError(f"{action}: the manifest is not {reference.digest}")
    obj = _parse(data, action)
    media_type = str(obj.get("mediaType") or header_type or "")
    if not media_type and "layers" in obj:
        media_type = oci.OCI_MANIFEST  # an OCI manifest may leave its type out
    if media_type in oci.INDEX_TYPES or (not media_type and "manifests" in obj):
        try:
            index = oci.Index.from_json(obj)
        except StoreError as err:
            raise RegistryError(f"{action}: {err}") from err
        return _Source(reference, client, index.manifests)
    if media_type not in oci.MANIFEST_TYPES:
        raise RegistryError(f"{action}: {media_type or 'no media type'} is no image manifest")
    try:
        manifest = oci.Manifest.from_json(obj, media_type=media_type)
    except StoreError as err:
        raise RegistryError(f"{action}: {err}") from err
    platform = _platform_of(client, manifest.config, action)
    entry = oci.Descriptor(media_type, _sha256(data), len(data), platform=platform)
    return _Source(reference, client, (entry,))


def _platform_of(
    client: RepositoryClient, config: oci.Descriptor, action: str
) -> oci.Platform:
    """The platform an image's config names (OS, architecture, variant, OS version)."""
    if config.size > _MAX_CONFIG:
        raise RegistryError(f"{action}: its config is larger than {_MAX_CONFIG} bytes")
    with client.open_blob(config.digest, action=action) as response:
        data = response.read(_MAX_CONFIG + 1)
    if _sha256(data) != config.digest:
        raise RegistryError(f"{action}: the config is not {config.digest}")
    obj = _parse(data, action)
    try:
        return oci.Platform.from_json(obj)
    except StoreError as err:
        raise RegistryError(f"{action}: its config names no platform ({err})") from err


def _copy_manifest(
    source: _Source, target: RepositoryClient, entry: oci.Descriptor, action: str
) -> None:
    """Make ``target`` hold the manifest (or index) ``entry`` of ``source``, blobs first."""
    data, _ = source.client.get_manifest(entry.digest, action=action)
    if _sha256(data) != entry.digest:
        raise RegistryError(f"{action}: manifest {entry.digest} from {source.reference} "
                            "does not match its digest")
    obj = _parse(data, action)
    try:
        if entry.media_type in oci.INDEX_TYPES:
            for child in oci.Index.from_json(obj).manifests:
                _copy_manifest(source, target, child, action)
        else:
            manifest = oci.Manifest.from_json(obj, media_type=entry.media_type)
            for blob in (manifest.config, *manifest.layers):
                _copy_blob(source, target, blob, action)
    except StoreError as err:
        raise RegistryError(f"{action}: manifest {entry.digest}: {err}") from err
    target.put_manifest(entry.digest, data, entry.media_type, action=action)


def _copy_blob(
    source: _Source, target: RepositoryClient, blob: oci.Descriptor, action: str
) -> None:
    if target.has_blob(blob.digest, action=action):
        return
    if source.reference.registry == target.registry:
        location = target.start_upload(
            action=action, mount=blob.digest, mount_from=source.reference.repository
        )
        if location is None:
            return  # mounted: the registry linked it from the source repository
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as spool:
        digest = hashlib.sha256()
        size = 0
        with source.client.open_blob(blob.digest, action=action) as response:
            while piece := response.read(_CHUNK):
                digest.update(piece)
                size += len(piece)
                spool.write(piece)
        if "sha256:" + digest.hexdigest() != blob.digest or size != blob.size:
            raise RegistryError(f"{action}: blob {blob.digest} from {source.reference} "
                                "does not match its digest")
        spool.seek(0)
        upload_blob(target, blob.digest, size, spool, action=action)  # type: ignore[arg-type]


def _parse(data: bytes, action: str) -> dict[str, object]:
    try:
        obj = json.loads(data)
    except ValueError as err:
        raise RegistryError(f"{action}: not JSON ({err})") from err
    if not isinstance(obj, dict):
        raise RegistryError(f"{action}: not a JSON object")
    return obj


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
