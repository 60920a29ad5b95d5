"""The local image store: ROOT is an OCI image layout whose index.json holds the tags.

A tag is an index.json entry annotated with org.opencontainers.image.ref.name,
its value the docker-normalised familiar name ("app:latest",
"127.0.0.1:5000/app:1"), so `skopeo inspect oci:ROOT:app:latest` finds it.
index.json is rewritten whole (temp file, fsync, rename) under an flock on
ROOT/index.json.lock: concurrent taggers queue instead of losing each
other's tags, and readers, who take no lock, always see a complete file.
Untagging never deletes blobs; that is garbage collection's job.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import StoreError
from builder.image import oci
from builder.image.config import ImageConfig
from cache import files
from cache.blobs import BlobStore, validate_digest

__all__ = ["ImageRecord", "ImageStore", "Reference", "parse_reference"]

# docker/distribution's reference grammar (reference/regexp.go), restated.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?"
)
_HEX_ID = re.compile(r"(?:sha256:)?(?P<hex>[0-9a-f]{1,64})")
_FULL_HEX = re.compile(r"[0-9a-f]{64}")
_DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io")
_MAX_NAME = 255
_MAX_MANIFEST_SIZE = 4 << 20


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference: familiar repository plus a tag or a digest."""

    repository: str
    tag: str = ""
    digest: str = ""

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


def parse_reference(text: str) -> Reference:
    """Parse and normalise a name as docker does: ``app`` → ``app:latest``.

    The docker.io domain and its library/ prefix are dropped (the familiar
    form), other registries are kept as written, and a digest wins over a
    tag (``app:1@sha256:…`` names the manifest). Raises StoreError.
    """
    match = _REFERENCE.fullmatch(text)
    if match is None:
        raise StoreError(f"invalid reference format: {text!r}")
    name = match["name"]
    if _FULL_HEX.fullmatch(name):
        raise StoreError(f"invalid repository name {name!r}: it looks like an image id")
    if len(name) > _MAX_NAME:
        raise StoreError(f"invalid repository name {name!r}: longer than {_MAX_NAME} characters")
    digest = match["digest"] or ""
    if digest:
        validate_digest(digest)
    return Reference(
        repository=_familiar(name), tag="" if digest else match["tag"] or "latest", digest=digest
    )


def _familiar(name: str) -> str:
    """docker.io/library/app → app; docker's splitDockerDomain, then its familiar form."""
    first, slash, rest = name.partition("/")
    is_domain = slash and ("." in first or ":" in first or first == "localhost")
    if not is_domain:
        return name.removeprefix("library/") if name.count("/") == 1 else name
    if first in _LEGACY_DOMAINS:
        first = _DEFAULT_DOMAIN
    if first != _DEFAULT_DOMAIN:
        return name
    return rest.removeprefix("library/") if rest.count("/") == 1 else rest


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One line of `images`: a tag, what it points to, and the layers' total size."""

    name: str
    manifest_digest: str
    config_digest: str
    created: str
    size: int


class ImageStore:
    """Tags, manifests and configs in the OCI layout at ``root``; blobs via ``blobs``.

    Creating a store creates the layout (oci-layout, index.json, blobs/) if
    it is missing; an existing layout written by other tools is kept,
    entries it holds that are not ours included.
    """

    def __init__(self, root: Path, *, blobs: BlobStore | None = None) -> None:
        self.root = Path(root)
        self.blobs = blobs if blobs is not None else BlobStore(self.root)
        if self.blobs.root.resolve() != self.root.resolve():
            raise StoreError(f"opening image store {root}: blob store is at {self.blobs.root}")
        self._index_path = self.root / "index.json"
        self._lock_path = self.root / "index.json.lock"
        self._ensure_layout()

    # -- writing images -------------------------------------------------

    def put_image(self, config: ImageConfig, layers: Sequence[oci.Descriptor]) -> oci.Descriptor:
        """Write the config and a manifest over ``layers``; returns the manifest descriptor.

        Layers must already be blobs; one per diff_id, and an uncompressed
        layer's digest must be its diff_id. Idempotent, like every put.
        """
        if len(layers) != len(config.diff_ids):
            raise StoreError(
                f"writing image: {len(layers)} layers for {len(config.diff_ids)} diff_ids"
            )
        for layer, diff_id in zip(layers, config.diff_ids, strict=True):
            if layer.media_type == oci.OCI_LAYER and layer.digest != diff_id:
                raise StoreError(f"writing image: layer {layer.digest} is not diff_id {diff_id}")
        ref = self.blobs.put_bytes(config.to_bytes())
        config_descriptor = oci.Descriptor(oci.OCI_CONFIG, ref.digest, ref.size)
        return self.put_manifest(config_descriptor, layers)

    def put_manifest(
        self, config: oci.Descriptor, layers: Sequence[oci.Descriptor]
    ) -> oci.Descriptor:
        """Write a manifest over blobs already stored (a config kept byte for byte, say)."""
        for descriptor in (config, *layers):
            if not self.blobs.has(descriptor.digest):
                raise StoreError(f"writing manifest: blob {descriptor.digest} is not in the store")
        manifest = oci.Manifest(config=config, layers=tuple(layers))
        ref = self.blobs.put_bytes(oci.canonical_json(manifest.to_json()))
        return oci.Descriptor(oci.OCI_MANIFEST, ref.digest, ref.size)

    # -- tags -------------------------------------------------------------

    def tag(self, name: str, manifest: oci.Descriptor) -> str:
        """Point ``name`` at ``manifest`` (moving it if it exists); returns the normalised name."""
        reference = parse_reference(name)
        if reference.digest and reference.digest != manifest.digest:
            raise StoreError(f"tagging {reference}: the manifest is {manifest.digest}")
        if not self.blobs.has(manifest.digest):
            raise StoreError(f"tagging {reference}: manifest {manifest.digest} is not in the store")
        ref_name = str(reference)
        entry = oci.Descriptor(
            media_type=manifest.media_type,
            digest=manifest.digest,
            size=manifest.size,
            annotations=((oci.ANNOTATION_REF_NAME, ref_name),),
            platform=manifest.platform,
        )

        def retag(entries: list[oci.Descriptor]) -> list[oci.Descriptor]:
            return [e for e in entries if _ref_name(e) != ref_name] + [entry]

        self._update_index(retag)
        return ref_name

    def untag(self, name: str) -> None:
        """Remove one tag; StoreError if there is no such tag."""
        names = _candidate_names(name)
        self._remove_entries(lambda entry: _ref_name(entry) in names, name)

    def remove(self, name_or_digest: str) -> tuple[str, ...]:
        """rmi: a name removes that tag, a digest (or prefix) every tag of that manifest.

        Returns the tags removed. Blobs stay until garbage collection.
        """
        tagged = self._find_tag(name_or_digest)
        if tagged is not None:
            ref_name = _ref_name(tagged) or ""
            self.untag(ref_name)
            return (ref_name,)
        digest = self.resolve(name_or_digest).digest
        return self._remove_entries(lambda entry: entry.digest == digest, name_or_digest)

    # -- reading ----------------------------------------------------------

    def resolve(self, name_or_digest: str) -> oci.Descriptor:
        """The manifest a name, a ``name@digest``, a digest or a unique digest prefix names.

        Names are tried first, as docker does, then digest prefixes of
        tagged manifests; a full digest also finds an untagged manifest that
        is still in the blob store. The result carries no ref-name annotation.
        """
        tagged = self._find_tag(name_or_digest)
        if tagged is not None:
            return _plain(tagged)
        hex_id = _HEX_ID.fullmatch(name_or_digest)
        if hex_id is None:
            raise StoreError(f"no such image: {name_or_digest}")
        prefix = hex_id["hex"]
        found = {
            entry.digest: entry
            for entry in self._read_index().manifests
            if entry.digest.removeprefix("sha256:").startswith(prefix)
        }
        if len(found) > 1:
            raise StoreError(f"ambiguous image id {name_or_digest}: {len(found)} images match")
        if found:
            return _plain(next(iter(found.values())))
        if len(prefix) == 64 and self.blobs.has("sha256:" + prefix):
            return self._describe_blob("sha256:" + prefix)
        raise StoreError(f"no such image: {name_or_digest}")

    def manifest(self, descriptor: oci.Descriptor) -> oci.Manifest:
        """The manifest a descriptor points to, read with its digest verified."""
        data = self.blobs.read_bytes(descriptor.digest)
        return oci.Manifest.from_json(
            oci.parse_json(data, f"manifest {descriptor.digest}"), media_type=descriptor.media_type
        )

    def config(self, descriptor: oci.Descriptor) -> ImageConfig:
        """The image config of a manifest descriptor (or of a config descriptor itself)."""
        if descriptor.media_type not in oci.CONFIG_TYPES:
            descriptor = self.manifest(descriptor).config
        return ImageConfig.from_bytes(self.blobs.read_bytes(descriptor.digest))

    def images(self) -> list[ImageRecord]:
        """Every tagged image manifest, sorted by name; indexes and foreign entries are skipped."""
        records = []
        for entry in self._read_index().manifests:
            name = _ref_name(entry)
            if name is None or entry.media_type not in oci.MANIFEST_TYPES:
                continue
            manifest = self.manifest(entry)
            created = self.config(manifest.config).created
            records.append(
                ImageRecord(
                    name=name,
                    manifest_digest=entry.digest,
                    config_digest=manifest.config.digest,
                    created=created,
                    size=sum(layer.size for layer in manifest.layers),
                )
            )
        return sorted(records, key=lambda record: record.name)

    # -- index.json -------------------------------------------------------

    def _find_tag(self, name: str) -> oci.Descriptor | None:
        """The index entry a reference names, or None (also when it is no valid name)."""
        names = _candidate_names(name)
        entries = self._read_index().manifests
        for entry in entries:
            if _ref_name(entry) in names:
                return entry
        try:
            reference = parse_reference(name)
        except StoreError:
            return None
        if reference.digest:
            # app@sha256:… also names the manifest when app is tagged with it.
            for entry in entries:
                tagged = _ref_name(entry)
                if (
                    entry.digest == reference.digest
                    and tagged is not None
                    and _repository(tagged) == reference.repository
                ):
                    return entry
        return None

    def _describe_blob(self, digest: str) -> oci.Descriptor:
        """Describe an untagged manifest blob; any other blob is no image."""
        # Manifests are small (registries cap them at 4 MiB); a layer must not
        # be read whole just to find out it is not JSON.
        size = self.blobs.size(digest)
        if size > _MAX_MANIFEST_SIZE:
            raise StoreError(f"no such image: {digest} is not a manifest")
        try:
            obj = oci.parse_json(self.blobs.read_bytes(digest), f"manifest {digest}")
        except StoreError as err:
            raise StoreError(f"no such image: {digest} is not a manifest") from err
        media_type = obj.get("mediaType")
        if not isinstance(media_type, str):
            # mediaType is optional in a manifest; configs have no "layers".
            media_type = oci.OCI_MANIFEST if "layers" in obj else ""
        if media_type not in oci.MANIFEST_TYPES | oci.INDEX_TYPES:
            raise StoreError(f"no such image: {digest} is not a manifest")
        return oci.Descriptor(media_type, digest, size)

    def _remove_entries(
        self, doomed: Callable[[oci.Descriptor], bool], what: str
    ) -> tuple[str, ...]:
        removed: list[str] = []

        def drop(entries: list[oci.Descriptor]) -> list[oci.Descriptor]:
            kept = [entry for entry in entries if not doomed(entry)]
            removed.extend(_ref_name(entry) or entry.digest for entry in entries if doomed(entry))
            return kept

        self._update_index(drop)
        if not removed:
            raise StoreError(f"no such image: {what}")
        return tuple(removed)

    def _read_index(self) -> oci.Index:
        try:
            data = self._index_path.read_bytes()
        except FileNotFoundError:
            return oci.Index()
        return oci.Index.from_json(oci.parse_json(data, str(self._index_path)))

    def _update_index(self, change: Callable[[list[oci.Descriptor]], list[oci.Descriptor]]) -> None:
        """Read, change and rewrite index.json while holding the lock."""
        with self._locked():
            index = self._read_index()
            entries = change(list(index.manifests))
            entries.sort(key=lambda entry: (_ref_name(entry) or "", entry.digest))
            if tuple(entries) == index.manifests:
                return  # nothing changed (a rebuild re-tagging the same image): no rewrite
            updated = oci.Index(manifests=tuple(entries), annotations=index.annotations)
            self._write_atomically(self._index_path, oci.canonical_json(updated.to_json()))

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return files.exclusive_lock(self._lock_path)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        files.write_atomically(path, data, staging_dir=self.blobs.staging_dir)

    def _ensure_layout(self) -> None:
        layout = self.root / "oci-layout"
        if layout.exists():
            obj = oci.parse_json(layout.read_bytes(), str(layout))
            if obj.get("imageLayoutVersion") != oci.IMAGE_LAYOUT_VERSION:
                raise StoreError(f"opening image store: {layout} is not layout version 1.0.0")
        else:
            content = {"imageLayoutVersion": oci.IMAGE_LAYOUT_VERSION}
            self._write_atomically(layout, oci.canonical_json(content))
        if not self._index_path.exists():
            with self._locked():
                if not self._index_path.exists():
                    data = oci.canonical_json(oci.Index().to_json())
                    self._write_atomically(self._index_path, data)


def _candidate_names(name: str) -> frozenset[str]:
    """The ref names a user's name can match: normalised, or verbatim for entries
    other tools wrote (skopeo's oci:ROOT:foo stores plain "foo")."""
    try:
        return frozenset({name, str(parse_reference(name))})
    except StoreError:
        return frozenset({name})


def _ref_name(entry: oci.Descriptor) -> str | None:
    return entry.annotation(oci.ANNOTATION_REF_NAME)


def _repository(ref_name: str) -> str:
    """The repository of a stored ref name (already normalised: repo:tag or repo@digest)."""
    if "@" in ref_name:
        return ref_name.partition("@")[0]
    head, colon, tag = ref_name.rpartition(":")
    return head if colon and "/" not in tag else ref_name


def _plain(entry: oci.Descriptor) -> oci.Descriptor:
    """An index entry without its ref name: the same image resolves to equal descriptors."""
    kept = {k: v for k, v in entry.annotations if k != oci.ANNOTATION_REF_NAME}
    return entry.with_annotations(kept)
