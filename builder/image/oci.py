"""The OCI vocabulary: media types, descriptors, manifests, indexes, canonical JSON.

Docker's v2 media types are here too, for reading: `docker save` tars and
registries still hand them out. Everything pybuild writes is OCI, encoded by
``canonical_json`` so the same image always gets the same digests.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.errors import StoreError
from cache.blobs import validate_digest

__all__ = [
    "ANNOTATION_REF_NAME",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_FOREIGN_GZIP",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "IMAGE_LAYOUT_VERSION",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "Descriptor",
    "Index",
    "Manifest",
    "Platform",
    "canonical_json",
    "host_platform",
    "parse_json",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_LAYOUT_VERSION = "1.0.0"

# Go's GOARCH names, which OCI configs and platforms use, for Python's machine().
_GO_ARCHITECTURES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}

Annotations = tuple[tuple[str, str], ...]


def canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces, UTF-8: the one encoding of every blob pybuild writes.

    Go's encoder would also escape <, > and & and keep struct order; neither
    matters as long as we always encode the same way, and sorted keys make
    the encoding independent of how a dict was built.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    """Decode a JSON object blob, or raise StoreError naming ``what`` was being read."""
    return read_object(parse_json_value(data, what), what)


def parse_json_value(data: bytes, what: str) -> object:
    """Decode any JSON value (docker's manifest.json is a list)."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"reading {what}: not JSON: {err}") from err


def read_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StoreError(f"reading {what}: expected a JSON object")
    return value


def read_str(obj: Mapping[str, Any], key: str, what: str, default: str = "") -> str:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise StoreError(f"reading {what}: {key} is not a string")
    return value


def read_int(obj: Mapping[str, Any], key: str, what: str, default: int = 0) -> int:
    value = obj.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"reading {what}: {key} is not an integer")
    return value


def read_strings(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StoreError(f"reading {what}: {key} is not a list of strings")
    return tuple(value)


def read_string_map(obj: Mapping[str, Any], key: str, what: str) -> tuple[tuple[str, str], ...]:
    """A JSON object of strings as ordered pairs (the order it was written in)."""
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StoreError(f"reading {what}: {key} is not an object of strings")
    return tuple(value.items())


@dataclass(frozen=True, slots=True)
class Platform:
    """Which machine an image runs on, in Go's names (``amd64``, ``linux``)."""

    architecture: str
    os: str
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    variant: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, value: object) -> Platform:
        obj = read_object(value, "platform")
        return cls(
            architecture=read_str(obj, "architecture", "platform"),
            os=read_str(obj, "os", "platform"),
            os_version=read_str(obj, "os.version", "platform"),
            os_features=read_strings(obj, "os.features", "platform"),
            variant=read_str(obj, "variant", "platform"),
        )


def host_platform() -> Platform:
    """This machine as an OCI platform: linux plus Go's name for the CPU."""
    machine = platform.machine().lower()
    architecture, variant = _GO_ARCHITECTURES.get(machine, (machine, ""))
    return Platform(architecture=architecture, os="linux", variant=variant)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A pointer to a blob: what it is, its sha256 digest and size, and annotations.

    Annotations are pairs sorted by key so equal descriptors compare equal.
    """

    media_type: str
    digest: str
    size: int
    annotations: Annotations = ()
    platform: Platform | None = None

    def annotation(self, key: str) -> str | None:
        for name, value in self.annotations:
            if name == key:
                return value
        return None

    def with_annotations(self, annotations: Mapping[str, str]) -> Descriptor:
        """A copy whose annotations are exactly ``annotations``."""
        return Descriptor(
            media_type=self.media_type,
            digest=self.digest,
            size=self.size,
            annotations=tuple(sorted(annotations.items())),
            platform=self.platform,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    @classmethod
    def from_json(cls, value: object) -> Descriptor:
        """Read a descriptor; only sha256 digests are accepted (the store knows no other)."""
        obj = read_object(value, "descriptor")
        digest = read_str(obj, "digest", "descriptor")
        validate_digest(digest)
        size = read_int(obj, "size", "descriptor", default=-1)
        if size < 0:
            raise StoreError(f"reading descriptor {digest}: size is missing or negative")
        platform_json = obj.get("platform")
        return cls(
            media_type=read_str(obj, "mediaType", "descriptor"),
            digest=digest,
            size=size,
            annotations=tuple(sorted(read_string_map(obj, "annotations", "descriptor"))),
            platform=None if platform_json is None else Platform.from_json(platform_json),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest (OCI, or Docker v2 when read): a config and its layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = OCI_MANIFEST
    annotations: Annotations = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, value: object, *, media_type: str = "") -> Manifest:
        """Read a manifest; ``media_type`` (the descriptor's) is used if the JSON has none."""
        obj = read_object(value, "manifest")
        if obj.get("schemaVersion") != 2:
            raise StoreError("reading manifest: schemaVersion is not 2")
        kind = read_str(obj, "mediaType", "manifest") or media_type or OCI_MANIFEST
        if kind not in MANIFEST_TYPES:
            raise StoreError(f"reading manifest: {kind} is not an image manifest")
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise StoreError("reading manifest: layers is not a list")
        return cls(
            config=Descriptor.from_json(obj.get("config")),
            layers=tuple(Descriptor.from_json(layer) for layer in layers),
            media_type=kind,
            annotations=tuple(sorted(read_string_map(obj, "annotations", "manifest"))),
        )


@dataclass(frozen=True, slots=True)
class Index:
    """An image index (index.json, or a multi-platform image): descriptors of manifests."""

    manifests: tuple[Descriptor, ...] = ()
    annotations: Annotations = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [manifest.to_json() for manifest in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, value: object) -> Index:
        obj = read_object(value, "index")
        if obj.get("schemaVersion") != 2:
            raise StoreError("reading index: schemaVersion is not 2")
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise StoreError("reading index: manifests is not a list")
        return cls(
            manifests=tuple(Descriptor.from_json(entry) for entry in manifests),
            annotations=tuple(sorted(read_string_map(obj, "annotations", "index"))),
        )
