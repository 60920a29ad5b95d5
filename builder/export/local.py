"""type=local: the image's final root tree unpacked into a directory.

The merged tree (rootfs.py) streams through a pipe into the snapshot
extractor, which already refuses paths that climb out or write through
symlinks; the merged tar has no whiteouts, so the result is a plain tree.
It is filled beside ``dest`` and renamed into place (destination.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from builder.errors import StoreError
from builder.export import destination
from builder.export.options import OutputSpec
from builder.export.rootfs import write_rootfs
from builder.image import oci
from builder.image.store import ImageStore
from builder.snapshot.apply import extract_layer
from cache.blobs import BlobStore

__all__ = ["export_local"]

_PIPE_BUFFER = 1 << 20


def export_local(
    store: ImageStore,
    blobs: BlobStore,
    manifest: oci.Descriptor,
    *,
    names: Sequence[str] = (),
    spec: OutputSpec,
    stdout: BinaryIO | None = None,
) -> None:
    """Unpack the image's root tree into ``spec.dest`` (absent or empty); needs root for owners."""
    if spec.dest == destination.STDOUT:
        raise StoreError("exporting to a directory: dest - is a stream, use type=tar")
    layers = store.manifest(manifest).layers
    with destination.open_directory(spec.dest) as directory:
        _unpack(blobs, layers, directory)


def _unpack(blobs: BlobStore, layers: Sequence[oci.Descriptor], directory: Path) -> None:
    """Writer thread → pipe → extract_layer; the writer's error wins, as it is the cause.

    The read end is closed before joining, so a writer blocked on a full pipe
    gets EPIPE instead of waiting forever when extraction stops early.
    """
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=_PIPE_BUFFER) as pipe:
                write_rootfs(blobs, layers, pipe)
        except BrokenPipeError:
            pass  # the reader stopped; its error is the one to report
        except BaseException as err:  # noqa: BLE001 (handed to the main thread)
            failure.append(err)

    writer = threading.Thread(target=produce, name="export-rootfs", daemon=True)
    writer.start()
    reader = os.fdopen(read_fd, "rb", buffering=_PIPE_BUFFER)
    try:
        extract_layer(reader, directory)
        while reader.read(_PIPE_BUFFER):  # tarfile leaves the record padding unread
            pass
    except BaseException:
        reader.close()
        writer.join()
        if failure:
            raise failure[0] from None
        raise
    reader.close()
    writer.join()
    if failure:
        raise failure[0]
