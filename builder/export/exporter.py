"""The Exporter protocol and the table of outputs behind ``--output type=...``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import BinaryIO, Protocol

from builder.errors import UsageError
from builder.export.docker import export_docker
from builder.export.local import export_local
from builder.export.oci import export_oci
from builder.export.options import OutputSpec
from builder.export.tar import export_tar
from builder.image import oci
from builder.image.store import ImageStore
from cache.blobs import BlobStore

__all__ = ["EXPORTERS", "Exporter", "export"]


class Exporter(Protocol):
    """Writes one image from the store to ``spec.dest`` in one output format.

    Contract: the destination appears whole or not at all (temp + rename in
    its own directory), except ``-``, which streams to ``stdout`` (default
    sys.stdout's buffer) with no temp; memory stays flat however big the
    layers are; ``names`` are the image's tags (unused by tree outputs).
    """

    def __call__(
        self,
        store: ImageStore,
        blobs: BlobStore,
        manifest: oci.Descriptor,
        *,
        names: Sequence[str],
        spec: OutputSpec,
        stdout: BinaryIO | None = None,
    ) -> None: ...


EXPORTERS: Mapping[str, Exporter] = MappingProxyType(
    {"oci": export_oci, "docker": export_docker, "local": export_local, "tar": export_tar}
)


def export(
    store: ImageStore,
    blobs: BlobStore,
    manifest: oci.Descriptor,
    *,
    names: Sequence[str],
    spec: OutputSpec,
    stdout: BinaryIO | None = None,
) -> None:
    """Run the exporter ``spec.type`` names; ``spec.names`` are added to ``names``."""
    exporter = EXPORTERS.get(spec.type)
    if exporter is None:
        raise UsageError(f"--output type={spec.type}: unknown type")
    all_names = tuple(dict.fromkeys((*names, *spec.names)))
    exporter(store, blobs, manifest, names=all_names, spec=spec, stdout=stdout)
