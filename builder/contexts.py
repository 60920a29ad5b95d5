"""Named build contexts: ``pybuild build --build-context NAME=VALUE``.

A named context gives ``FROM NAME``, ``COPY --from=NAME`` (and anything else
that reads ``--from=NAME``) something other than what the name would mean
in the Dockerfile, as buildx's flag does for BuildKit:

* ``NAME=DIR`` (any value without a scheme) — a local directory, read
  through its own ``DIR/.dockerignore`` (BuildKit loads a named local
  context with the ``.dockerignore`` at its root, and never the main
  context's ``<Dockerfile>.dockerignore``); its files arrive owned by 0:0.
* ``NAME=docker-image://REF`` — an image, from the local store (pulled when
  REF names its registry, as FROM does).
* ``NAME=oci-layout://PATH[:TAG|@DIGEST]`` — an image in an OCI layout
  directory (TAG defaults to ``latest``; a layout holding one image needs
  none); it is imported into the store, layers decompressed and verified.

A context replaces a stage of the same name entirely (the stage's own
instructions are not run) and wins over an image of that name: with
``--build-context alpine=docker-image://busybox:latest``, ``FROM alpine``
starts from busybox.  Names are compared as image references are: ``alpine``,
``alpine:latest`` and ``docker.io/library/alpine`` are one name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from builder.errors import DockerfileError, StoreError, UsageError
from builder.frontend import commands
from builder.image import oci
from builder.plan.graph import BaseImage, NamedContextSource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.image.store import ImageStore
    from cache.blobs import BlobStore

__all__ = [
    "ContextResolver",
    "NamedContextSpec",
    "context_name",
    "import_oci_layout",
    "parse_build_context",
]

_IMAGE = "docker-image://"
_LAYOUT = "oci-layout://"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class NamedContextSpec:
    """One ``--build-context``: its normalised name, kind ("dir", "image" or
    "oci-layout") and value (a path, a reference, or a layout path and selector)."""

    name: str
    kind: str
    value: str


def context_name(name: str) -> str | None:
    """The name a context is known by: an image reference's familiar form without
    ``:latest``; None when ``name`` is no valid reference."""
    from builder.image.store import parse_reference

    try:
        reference = parse_reference(name)
    except StoreError:
        return None
    text = reference.repository
    if reference.digest:
        return f"{text}@{reference.digest}"
    return text if reference.tag == "latest" else f"{text}:{reference.tag}"


def parse_build_context(text: str) -> NamedContextSpec:
    """Read one ``NAME=VALUE``; raises UsageError naming the flag."""
    name, equals, value = text.partition("=")
    if not equals or not name or not value:
        raise UsageError(f"--build-context {text!r}: expected NAME=VALUE")
    key = context_name(name)
    if key is None:
        raise UsageError(f"--build-context {text!r}: {name!r} is not a valid context name "
                         "(lower-case letters, digits, '.', '_', '-', '/', ':tag')")
    if value.startswith(_IMAGE):
        reference = value.removeprefix(_IMAGE)
        if not reference:
            raise UsageError(f"--build-context {text!r}: docker-image:// needs a reference")
        return NamedContextSpec(key, "image", reference)
    if value.startswith(_LAYOUT):
        layout = value.removeprefix(_LAYOUT)
        if not layout:
            raise UsageError(f"--build-context {text!r}: oci-layout:// needs a path")
        return NamedContextSpec(key, "oci-layout", layout)
    scheme = value.partition("://")
    if scheme[1] and scheme[0].isalnum():
        raise UsageError(f"--build-context {text!r}: {scheme[0]}:// contexts are not supported "
                         "(use a directory, docker-image:// or oci-layout://)")
    if not Path(value).is_dir():
        raise UsageError(f"--build-context {text!r}: {value} is not a directory")
    return NamedContextSpec(key, "dir", str(Path(value).resolve()))


ImageResolver = Callable[[str, commands.Instruction], BaseImage]


class ContextResolver:
    """The planner's view of the named contexts (plan.planner.ContextResolver).

    Image contexts are resolved once each (an OCI layout is imported on first
    use); ``directories`` gives the executor each directory context's path.
    """

    def __init__(
        self,
        specs: tuple[NamedContextSpec, ...],
        *,
        resolve_image: ImageResolver,
        images: ImageStore,
        blobs: BlobStore,
    ) -> None:
        self._specs = {spec.name: spec for spec in specs}  # a later flag wins
        self._resolve_image = resolve_image
        self._images = images
        self._blobs = blobs
        self._resolved: dict[str, BaseImage | NamedContextSource] = {}

    def directories(self) -> dict[str, Path]:
        return {spec.name: Path(spec.value) for spec in self._specs.values()
                if spec.kind == "dir"}

    def __call__(
        self, name: str, instruction: commands.Instruction
    ) -> BaseImage | NamedContextSource | None:
        if not self._specs:
            return None
        key = context_name(name)
        spec = self._specs.get(key) if key is not None else None
        if spec is None:
            return None
        if spec.name not in self._resolved:
            self._resolved[spec.name] = self._resolve(spec, instruction)
        return self._resolved[spec.name]

    def _resolve(
        self, spec: NamedContextSpec, instruction: commands.Instruction
    ) -> BaseImage | NamedContextSource:
        if spec.kind == "dir":
            return NamedContextSource(name=spec.name, path=spec.value)
        if spec.kind == "image":
            image = self._resolve_image(spec.value, instruction)
            return replace(image, reference=_IMAGE + spec.value)
        try:
            manifest = import_oci_layout(spec.value, self._images, self._blobs)
        except StoreError as err:
            raise DockerfileError(f"build context {spec.name}: {err}",
                                  location=instruction.location) from err
        image = self._resolve_image(manifest.digest, instruction)
        return replace(image, reference=_LAYOUT + spec.value)


def import_oci_layout(text: str, images: ImageStore, blobs: BlobStore) -> oci.Descriptor:
    """Import the image ``PATH[:TAG|@DIGEST]`` names from an OCI layout directory into the
    store (untagged); returns its manifest descriptor.  Raises StoreError."""
    path, tag, digest = _split_layout(text)
    layout = Path(path)
    if not (layout / "oci-layout").is_file() or not (layout / "index.json").is_file():
        raise StoreError(f"{path}: not an OCI layout directory (no oci-layout or index.json)")
    index = oci.Index.from_json(oci.parse_json(_read_blob_file(layout / "index.json"),
                                               f"{path}/index.json"))
    entry = _select(index, tag, digest, path)
    manifest_desc = _host_manifest(layout, entry)
    manifest_data = _read_verified(layout, manifest_desc)
    manifest = oci.Manifest.from_json(oci.parse_json(manifest_data, manifest_desc.digest),
                                      media_type=manifest_desc.media_type)
    config_data = _read_verified(layout, manifest.config)
    from builder.image.config import ImageConfig

    config = ImageConfig.from_bytes(config_data)
    if len(config.diff_ids) != len(manifest.layers):
        raise StoreError(f"{path}: {len(manifest.layers)} layers for "
                         f"{len(config.diff_ids)} diff_ids")
    config_ref = blobs.put_bytes(config_data)
    layers = [
        _import_layer(layout, layer, diff_id, blobs)
        for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
    ]
    config_desc = oci.Descriptor(oci.OCI_CONFIG, config_ref.digest, config_ref.size)
    return images.put_manifest(config_desc, layers)


def _split_layout(text: str) -> tuple[str, str, str]:
    """PATH[:TAG|@DIGEST] → (path, tag, digest); the tag is looked for after the last /."""
    path, at, digest = text.rpartition("@")
    if not at:
        path, digest = text, ""
    head, slash, last = path.rpartition("/")
    name, colon, tag = last.rpartition(":")
    if colon and tag and "/" not in tag:
        path = f"{head}{slash}{name}"
    else:
        tag = ""
    return path, tag, digest


def _select(index: oci.Index, tag: str, digest: str, path: str) -> oci.Descriptor:
    if digest:
        for entry in index.manifests:
            if entry.digest == digest:
                return entry
        raise StoreError(f"{path}: no image {digest} in index.json")
    wanted = tag or "latest"
    for entry in index.manifests:
        name = entry.annotation(oci.ANNOTATION_REF_NAME) or ""
        # ref.name is a tag ("v1"), or a whole reference ("app:v1") as some tools write it.
        if wanted in (name, name.rpartition(":")[2] if ":" in name else None):
            return entry
    if not tag and len(index.manifests) == 1:
        return index.manifests[0]
    raise StoreError(f"{path}: no image tagged {wanted!r} in index.json")


def _host_manifest(layout: Path, entry: oci.Descriptor) -> oci.Descriptor:
    """An image manifest; for a multi-platform index, this machine's."""
    if entry.media_type in oci.MANIFEST_TYPES:
        return entry
    if entry.media_type not in oci.INDEX_TYPES:
        raise StoreError(f"{entry.digest}: {entry.media_type} is no image")
    nested = oci.Index.from_json(oci.parse_json(_read_verified(layout, entry), entry.digest))
    host = oci.host_platform()
    for candidate in nested.manifests:
        platform = candidate.platform
        if platform is not None and (platform.architecture, platform.os) == (
            host.architecture, host.os
        ) and (not host.variant or platform.variant in ("", host.variant)):
            return _host_manifest(layout, candidate)
    raise StoreError(f"{entry.digest}: no image for {host.os}/{host.architecture}")


def _blob_path(layout: Path, digest: str) -> Path:
    from cache.blobs import validate_digest

    return layout / "blobs" / "sha256" / validate_digest(digest).removeprefix("sha256:")


def _read_blob_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise StoreError(f"reading {path}: {err.strerror or err}") from err


def _read_verified(layout: Path, descriptor: oci.Descriptor) -> bytes:
    data = _read_blob_file(_blob_path(layout, descriptor.digest))
    if "sha256:" + hashlib.sha256(data).hexdigest() != descriptor.digest:
        raise StoreError(f"{layout}: blob {descriptor.digest} does not match its digest")
    return data


def _import_layer(
    layout: Path, layer: oci.Descriptor, diff_id: str, blobs: BlobStore
) -> oci.Descriptor:
    """One layer into the store, uncompressed; both digests are checked on the way."""
    if blobs.has(diff_id):
        return oci.Descriptor(oci.OCI_LAYER, diff_id, blobs.size(diff_id))
    packed = hashlib.sha256()
    path = _blob_path(layout, layer.digest)
    try:
        raw = path.open("rb")
    except OSError as err:
        raise StoreError(f"reading {path}: {err.strerror or err}") from err
    with raw, _hashed(raw, packed) as hashed, _uncompressed(hashed) as stream, \
            blobs.writer() as writer:
        try:
            while chunk := stream.read(_CHUNK):
                writer.write(chunk)
            while hashed.read(_CHUNK):  # the rest of a compressed stream, for the digest
                pass
        except (OSError, EOFError) as err:
            raise StoreError(f"reading layer {layer.digest}: {err}") from err
        if "sha256:" + packed.hexdigest() != layer.digest:
            raise StoreError(f"{layout}: layer {layer.digest} does not match its digest")
        try:
            ref = writer.commit(diff_id)
        except StoreError as err:
            raise StoreError(f"{layout}: layer {layer.digest} does not match diff_id "
                             f"{diff_id}") from err
    return oci.Descriptor(oci.OCI_LAYER, ref.digest, ref.size)


class _HashedReader(io.RawIOBase):
    def __init__(self, inner: IO[bytes], digest: hashlib._Hash) -> None:
        super().__init__()
        self._inner = inner
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        self._digest.update(data)
        return len(data)


@contextmanager
def _hashed(raw: IO[bytes], digest: hashlib._Hash) -> Iterator[io.BufferedReader[Any]]:
    with io.BufferedReader(_HashedReader(raw, digest), buffer_size=_CHUNK) as reader:
        yield reader


@contextmanager
def _uncompressed(stream: io.BufferedReader[Any]) -> Iterator[io.BufferedIOBase]:
    """gzip or zstd by their magic bytes (media types can lie), else the stream itself."""
    magic = stream.peek(4)[:4]
    if magic.startswith(b"\x1f\x8b"):
        with gzip.GzipFile(fileobj=stream, mode="rb") as unpacked:
            yield unpacked
    elif magic == b"\x28\xb5\x2f\xfd":
        import pyzstd

        with pyzstd.ZstdFile(stream, "rb") as unpacked:
            yield unpacked
    else:
        yield stream
