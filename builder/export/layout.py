"""What oci and docker archives share: images prepared for export, and the archive's tar.

Both formats keep blobs as ``blobs/sha256/<hex>`` (docker save does since
docker 25), so one writer serves both; each blob is written once however many
images share it. Members get fixed headers (root, mode 0644, mtime 0) so the
same export gives the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Self

from builder.errors import StoreError
from builder.export import destination
from builder.export.compression import CompressedLayers, convert_layer, layer_algorithm
from builder.export.options import Compression, OutputSpec
from builder.export.tarwriter import BlobTar
from builder.image import oci
from builder.image.store import ImageStore, parse_reference
from cache.blobcheck import ContentCheck
from cache.blobs import BlobStore

__all__ = [
    "ArchiveWriter",
    "Finish",
    "PreparedImage",
    "add_layout_files",
    "blob_member",
    "export_archive",
    "index_entries",
    "prepare_image",
    "qualified_name",
    "write_archive",
]

_CONTAINERD_NAME = "io.containerd.image.name"
# Layers below this stream into an archive as they compress: their output
# stays under tar's 8 GiB plain-header limit (compressors expand by < 1%).
_STREAM_LIMIT = 7 << 30
_DEFAULT_DOMAIN = "docker.io"


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image as it will be archived: its manifest bytes and the blobs they name."""

    manifest: oci.Descriptor
    manifest_bytes: bytes
    config: oci.Descriptor
    layers: tuple[oci.Descriptor, ...]
    # Layer blobs this process has just written and hashed on the way: the
    # archive copies them without hashing them a second time.
    hashed: frozenset[str] = frozenset()


def prepare_image(
    store: ImageStore,
    blobs: BlobStore,
    manifest: oci.Descriptor,
    compression: Compression,
    *,
    oci_media_types: bool,
    archive: ArchiveWriter | None = None,
) -> PreparedImage:
    """Compress the layers as asked (cached) and write the manifest that names them.

    diff_ids are untouched, so the config blob, and the image id, stay the
    same. When nothing changes (uncompressed, OCI types) the stored manifest
    is reused byte for byte and keeps its digest. With ``archive``, each layer
    goes into it as soon as it is ready (streamed in as it compresses, where
    the archive can take that), in order; ``add_image`` then adds the rest.
    """
    stored = store.manifest(manifest)
    config = store.config(stored.config)
    if len(config.diff_ids) != len(stored.layers):
        raise StoreError(f"exporting {manifest.digest}: layers and diff_ids differ in number")
    cache = CompressedLayers(blobs)
    hashed: set[str] = set()
    layers = tuple(
        convert_layer(
            blobs,
            layer,
            diff_id,
            compression,
            oci_media_types=oci_media_types,
            cache=cache,
            written=hashed,
        )
        if archive is None
        else archive.add_layer(
            layer, diff_id, compression, oci_media_types=oci_media_types, cache=cache
        )
        for layer, diff_id in zip(stored.layers, config.diff_ids, strict=True)
    )
    config_type = oci.OCI_CONFIG if oci_media_types else oci.DOCKER_CONFIG
    manifest_type = oci.OCI_MANIFEST if oci_media_types else oci.DOCKER_MANIFEST
    config_descriptor = oci.Descriptor(config_type, stored.config.digest, stored.config.size)
    exported = oci.Manifest(
        config=config_descriptor,
        layers=layers,
        media_type=manifest_type,
        annotations=stored.annotations,
    )
    if exported == stored:
        data = blobs.read_bytes(manifest.digest)
    else:
        data = oci.canonical_json(exported.to_json())
    # Not stored: an export must not leave unreferenced manifests behind in the store.
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return PreparedImage(
        manifest=oci.Descriptor(manifest_type, digest, len(data)),
        manifest_bytes=data,
        config=config_descriptor,
        layers=layers,
        hashed=frozenset(hashed),
    )


# What an archive format adds once the images' blobs are in: its own files.
Finish = Callable[["ArchiveWriter", Sequence[tuple[PreparedImage, Sequence[str]]]], None]


def write_archive(
    dest: str,
    store: ImageStore,
    blobs: BlobStore,
    images: Sequence[tuple[oci.Descriptor, Sequence[str]]],
    *,
    compression: Compression,
    oci_media_types: bool,
    finish: Finish,
    stdout: BinaryIO | None = None,
) -> None:
    """One archive of ``images`` (manifest, names) at ``dest``, atomically, or to stdout.

    Each image's layers go in as they are made ready, in order; then ``finish``
    adds what is left (config and manifest blobs) and the format's own files.
    """
    with destination.open_file(dest, stdout=stdout) as out, ArchiveWriter(out, blobs) as archive:
        prepared = [
            (
                prepare_image(
                    store,
                    blobs,
                    manifest,
                    compression,
                    oci_media_types=oci_media_types,
                    archive=archive,
                ),
                tuple(names),
            )
            for manifest, names in images
        ]
        finish(archive, prepared)


def export_archive(
    store: ImageStore,
    blobs: BlobStore,
    manifest: oci.Descriptor,
    names: Sequence[str],
    spec: OutputSpec,
    stdout: BinaryIO | None,
    finish: Finish,
) -> None:
    """One image as an archive at ``spec.dest``, with ``spec``'s compression and media types."""
    write_archive(
        spec.dest,
        store,
        blobs,
        [(manifest, names)],
        compression=spec.compression,
        oci_media_types=spec.oci_media_types,
        finish=finish,
        stdout=stdout,
    )


def add_layout_files(archive: ArchiveWriter, entries: Sequence[oci.Descriptor]) -> None:
    """index.json naming ``entries``, and oci-layout: what makes the tar an OCI image layout."""
    archive.add_bytes("index.json", oci.canonical_json(oci.Index(manifests=tuple(entries)).to_json()))
    layout = {"imageLayoutVersion": oci.IMAGE_LAYOUT_VERSION}
    archive.add_bytes("oci-layout", oci.canonical_json(layout))


def qualified_name(name: str) -> str:
    """docker.io/library/app:latest for app: the full name containerd labels images with."""
    reference = str(parse_reference(name))
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return reference
    return f"{_DEFAULT_DOMAIN}/{reference}" if slash else f"{_DEFAULT_DOMAIN}/library/{reference}"


def index_entries(image: PreparedImage, names: Sequence[str]) -> list[oci.Descriptor]:
    """index.json entries for one image: one per name, as buildkit writes them.

    ref.name holds the tag alone and io.containerd.image.name the full name
    (BuildKit's oci exporter, and docker 25's save); no name, one bare entry.
    """
    if not names:
        return [image.manifest]
    entries = []
    for name in names:
        full = qualified_name(name)
        reference = parse_reference(name)
        annotations = {_CONTAINERD_NAME: full}
        if reference.tag:
            annotations[oci.ANNOTATION_REF_NAME] = reference.tag
        entries.append(image.manifest.with_annotations(annotations))
    return entries


def blob_member(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


class ArchiveWriter:
    """A streaming tar of blobs and small files; use it in ``with``.

    Leaving the block normally ends the archive; leaving it by an exception
    writes nothing more (the destination is discarded anyway). ``out`` stays open.
    Every blob's bytes are checked once: as they are copied in (against the
    checksum recorded when the blob landed, or its digest), or, for a blob this
    export has just written (and hashed while writing it), already; those the
    kernel copies without them passing through Python.
    """

    def __init__(self, out: BinaryIO, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._tar = BlobTar(out)
        self._written: set[str] = set()
        self._add_directory("blobs")
        self._add_directory("blobs/sha256")

    def add_blob(self, digest: str, *, hashed: bool = False) -> None:
        """Copy a stored blob in; its bytes are checked (cache/blobcheck.py) unless
        ``hashed`` (this export has just written them)."""
        name = blob_member(digest)
        if name in self._written:
            return
        self._written.add(name)
        path = self._blobs.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as err:
            raise StoreError(f"blob {digest} not found") from err
        try:
            size = os.fstat(fd).st_size
            header = self._header(name, size)
            if hashed:
                self._tar.add_file(header, fd)
                return
            content = ContentCheck(fd, digest)
            self._tar.add_file(header, fd, update=content.update)
            if os.pread(fd, 1, size):
                raise StoreError(f"exporting blob {digest}: it grew while being read")
            content.verify()
        except OSError as err:
            raise StoreError(f"exporting blob {digest}: {err.strerror or err}") from err
        finally:
            os.close(fd)

    def add_layer(
        self,
        layer: oci.Descriptor,
        diff_id: str,
        compression: Compression,
        *,
        oci_media_types: bool,
        cache: CompressedLayers,
    ) -> oci.Descriptor:
        """The layer as ``convert_layer`` exports it, added now; returns its descriptor.

        A layer compressed now is streamed in while it compresses, when the output
        is a file whose member header can be written afterwards: its bytes are
        written to the blob and the archive at once, and never read back.
        """
        start: int | None = None

        def tee(piece: bytes) -> None:
            nonlocal start
            if start is None:
                start = self._tar.begin_stream()
            self._tar.stream(piece)

        streams = self._tar.can_stream and layer.size < _STREAM_LIMIT
        if layer_algorithm(layer.media_type) != "uncompressed":
            streams = False  # its uncompressed size, and so the output's, is unknown
        written: set[str] = set()
        converted = convert_layer(
            self._blobs,
            layer,
            diff_id,
            compression,
            oci_media_types=oci_media_types,
            cache=cache,
            written=written,
            tee=tee if streams else None,
        )
        name = blob_member(converted.digest)
        if start is None:
            self.add_blob(converted.digest, hashed=converted.digest in written)
        elif name in self._written:
            self._tar.drop_stream(start)  # the same layer twice in one archive
        else:
            self._written.add(name)
            self._tar.end_stream(start, self._header(name, 0))
        return converted

    def add_bytes(self, name: str, data: bytes) -> None:
        if name in self._written:
            return
        self._written.add(name)
        self._tar.add_bytes(self._header(name, len(data)), data)

    def add_image(self, image: PreparedImage) -> None:
        """The image's layers, config and manifest, under blobs/sha256/."""
        for layer in image.layers:
            self.add_blob(layer.digest, hashed=layer.digest in image.hashed)
        self.add_blob(image.config.digest)
        self.add_bytes(blob_member(image.manifest.digest), image.manifest_bytes)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self._tar.finish()
        else:
            self._tar.wait()

    def _add_directory(self, name: str) -> None:
        header = self._header(name, 0)
        header.type = tarfile.DIRTYPE
        header.mode = 0o755
        self._tar.add_bytes(header)

    @staticmethod
    def _header(name: str, size: int) -> tarfile.TarInfo:
        header = tarfile.TarInfo(name)
        header.size = size
        header.mode = 0o644
        header.mtime = 0
        header.uid = header.gid = 0
        header.uname = header.gname = ""
        return header
