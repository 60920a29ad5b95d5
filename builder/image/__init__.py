"""OCI images: media types and descriptors, the image config, the local image store, archives."""

from __future__ import annotations

from builder.image.config import ContainerConfig, Healthcheck, HistoryEntry, ImageConfig
from builder.image.oci import Descriptor, Index, Manifest, Platform, canonical_json
from builder.image.store import ImageRecord, ImageStore, Reference, parse_reference

__all__ = [
    "ContainerConfig",
    "Descriptor",
    "Healthcheck",
    "HistoryEntry",
    "ImageConfig",
    "ImageRecord",
    "ImageStore",
    "Index",
    "Manifest",
    "Platform",
    "Reference",
    "canonical_json",
    "parse_reference",
]
