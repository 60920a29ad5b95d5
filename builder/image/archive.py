"""Images into the store from outside: `docker save` / OCI layout tars, and rootfs imports.

Layers land uncompressed (application/vnd.oci.image.layer.v1.tar): gzip and
zstd layers are decompressed while they stream in, and the uncompressed
digest must equal the config's diff_id. Config blobs are kept byte for byte,
so a loaded image keeps its docker image id (the config digest). Archive
members are looked up by name and never extracted, and a name that is
absolute or climbs with ".." is refused outright.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self, cast

import pyzstd

from builder.errors import StoreError
from builder.image import oci
from builder.image.config import ContainerConfig, HistoryEntry, ImageConfig
from builder.image.store import ImageStore
from cache.blobs import BlobStore, validate_digest

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["DEFAULT_PATH", "import_rootfs", "load_archive"]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The label docker (25+) and containerd put on index.json entries: the full
# name, where ref.name holds only the tag.
_CONTAINERD_NAME = "io.containerd.image.name"
_CHUNK = 1 << 20
_MAX_LINK_HOPS = 16


def load_archive(
    path: Path, store: ImageStore, blobs: BlobStore
) -> list[tuple[str, oci.Descriptor]]:
    """Load every image of a `docker save` or OCI layout tar; returns (tag, manifest) pairs.

    An image the archive does not name comes back with the tag "" (it is
    stored but untagged). ``blobs`` must be the store's own blob store.
    """
    if blobs.root.resolve() != store.root.resolve():
        raise StoreError(f"loading {path}: blob store {blobs.root} is not the image store's")
    with _Archive(path) as archive:
        if archive.has("manifest.json"):
            return _load_docker(archive, store, blobs)
        if archive.has("index.json") and archive.has("oci-layout"):
            return _load_oci(archive, store, blobs)
    raise StoreError(f"loading {path}: neither a docker archive nor an OCI layout")


def import_rootfs(
    source: Path,
    store: ImageStore,
    blobs: BlobStore,
    *,
    name: str | None = None,
    config_overrides: ContainerConfig | None = None,
    created: datetime | None = None,
) -> oci.Descriptor:
    """`docker import`: one layer from a directory tree or a (compressed) rootfs tar.

    A directory is written as a reproducible tar (names sorted, numeric ids,
    no user or group names, mtimes in whole seconds, no atime/ctime); a
    tarball keeps its member order but gets the same header treatment. The
    config is this machine's platform with docker's default PATH; non-empty
    fields of ``config_overrides`` replace the defaults, its Env entries are
    merged by variable. Tags the image ``name`` if given; returns its manifest.
    """
    with blobs.writer() as writer:
        # Stream mode: tarfile only ever calls write() on the writer.
        stream = cast("IO[bytes]", writer)
        try:
            with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as out:
                if source.is_dir():
                    _write_tree(source, out)
                else:
                    _copy_tarball(source, out)
        except OSError as err:
            raise StoreError(f"importing {source}: {err}") from err
        layer = writer.commit()
    when = (created or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    host = oci.host_platform()
    config = ImageConfig(
        architecture=host.architecture,
        os=host.os,
        variant=host.variant,
        created=when,
        config=_merge(ContainerConfig(env=(DEFAULT_PATH,)), config_overrides),
        diff_ids=(layer.digest,),
        history=(HistoryEntry(created=when, comment=f"Imported from {source.name}"),),
    )
    manifest = store.put_image(config, [oci.Descriptor(oci.OCI_LAYER, layer.digest, layer.size)])
    if name is not None:
        store.tag(name, manifest)
    return manifest


# -- loading ----------------------------------------------------------------


def _load_docker(
    archive: _Archive, store: ImageStore, blobs: BlobStore
) -> list[tuple[str, oci.Descriptor]]:
    """manifest.json: [{"Config": path, "RepoTags": [...], "Layers": [paths]}]."""
    entries = oci.parse_json_value(archive.read("manifest.json"), "manifest.json")
    if not isinstance(entries, list):
        raise StoreError("loading manifest.json: expected a list")
    loaded: list[tuple[str, oci.Descriptor]] = []
    for entry in entries:
        item = oci.read_object(entry, "manifest.json entry")
        config_path = oci.read_str(item, "Config", "manifest.json entry")
        layer_paths = oci.read_strings(item, "Layers", "manifest.json entry")
        config_data = archive.read(config_path)
        config = ImageConfig.from_bytes(config_data)  # parsed before it is stored
        config_ref = blobs.put_bytes(config_data)
        if len(layer_paths) != len(config.diff_ids):
            raise StoreError(
                f"loading {config_path}: {len(layer_paths)} layers for "
                f"{len(config.diff_ids)} diff_ids"
            )
        layers = [
            _import_layer(archive, layer_path, diff_id, None, blobs)
            for layer_path, diff_id in zip(layer_paths, config.diff_ids, strict=True)
        ]
        config_descriptor = oci.Descriptor(oci.OCI_CONFIG, config_ref.digest, config_ref.size)
        manifest = store.put_manifest(config_descriptor, layers)
        tags = oci.read_strings(item, "RepoTags", "manifest.json entry")
        loaded.extend((store.tag(tag, manifest), manifest) for tag in tags)
        if not tags:
            loaded.append(("", manifest))
    return loaded


def _load_oci(
    archive: _Archive, store: ImageStore, blobs: BlobStore
) -> list[tuple[str, oci.Descriptor]]:
    index = oci.Index.from_json(oci.parse_json(archive.read("index.json"), "index.json"))
    loaded: list[tuple[str, oci.Descriptor]] = []
    for entry in index.manifests:
        name = entry.annotation(_CONTAINERD_NAME) or entry.annotation(oci.ANNOTATION_REF_NAME)
        for image in _host_manifests(archive, entry):
            manifest = _load_oci_image(archive, image, store, blobs)
            loaded.append((store.tag(name, manifest) if name else "", manifest))
    return loaded


def _host_manifests(archive: _Archive, entry: oci.Descriptor) -> list[oci.Descriptor]:
    """The image manifest an entry names; for a multi-platform index, this machine's."""
    if entry.media_type in oci.MANIFEST_TYPES:
        return [entry]
    if entry.media_type not in oci.INDEX_TYPES:
        raise StoreError(f"loading {entry.digest}: {entry.media_type} is no image")
    nested = oci.Index.from_json(oci.parse_json(_read_blob(archive, entry), entry.digest))
    host = oci.host_platform()
    matching = [
        candidate
        for candidate in nested.manifests
        if candidate.platform is not None
        and (candidate.platform.architecture, candidate.platform.os) == (host.architecture, host.os)
        and (not host.variant or candidate.platform.variant in ("", host.variant))
    ]
    if not matching:
        raise StoreError(f"loading {entry.digest}: no image for {host.os}/{host.architecture}")
    return matching[:1]


def _load_oci_image(
    archive: _Archive, entry: oci.Descriptor, store: ImageStore, blobs: BlobStore
) -> oci.Descriptor:
    manifest = oci.Manifest.from_json(
        oci.parse_json(_read_blob(archive, entry), entry.digest), media_type=entry.media_type
    )
    config_data = _read_blob(archive, manifest.config)
    config = ImageConfig.from_bytes(config_data)
    config_ref = blobs.put_bytes(config_data)
    if len(manifest.layers) != len(config.diff_ids):
        raise StoreError(
            f"loading {entry.digest}: {len(manifest.layers)} layers for "
            f"{len(config.diff_ids)} diff_ids"
        )
    layers = [
        _import_layer(archive, _blob_member(layer.digest), diff_id, layer.digest, blobs)
        for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
    ]
    config_descriptor = oci.Descriptor(oci.OCI_CONFIG, config_ref.digest, config_ref.size)
    return store.put_manifest(config_descriptor, layers)


def _import_layer(
    archive: _Archive, member: str, diff_id: str, packed_digest: str | None, blobs: BlobStore
) -> oci.Descriptor:
    """Stream one layer in, uncompressed; ``packed_digest`` checks the bytes as archived."""
    if blobs.has(diff_id):
        # Content-addressed: the layer we would write is already here.
        return oci.Descriptor(oci.OCI_LAYER, diff_id, blobs.size(diff_id))
    with archive.open(member) as raw:
        hashing = _HashingReader(raw)
        packed = io.BufferedReader(hashing, buffer_size=_CHUNK)
        with _decompressed(packed) as tar_stream, blobs.writer() as writer:
            while chunk := _read_chunk(tar_stream, member):
                writer.write(chunk)
            while packed.read(_CHUNK):  # hash whatever the decompressor left unread
                pass
            if packed_digest is not None and hashing.digest() != packed_digest:
                raise StoreError(f"loading {member}: content does not match {packed_digest}")
            try:
                ref = writer.commit(diff_id)
            except StoreError as err:
                raise StoreError(
                    f"loading {member}: uncompressed layer does not match diff_id {diff_id}"
                ) from err
    return oci.Descriptor(oci.OCI_LAYER, ref.digest, ref.size)


def _read_blob(archive: _Archive, descriptor: oci.Descriptor) -> bytes:
    data = archive.read(_blob_member(descriptor.digest))
    if "sha256:" + hashlib.sha256(data).hexdigest() != descriptor.digest:
        raise StoreError(f"loading {descriptor.digest}: archived blob does not match its digest")
    return data


def _blob_member(digest: str) -> str:
    return "blobs/sha256/" + validate_digest(digest).removeprefix("sha256:")


# Magic bytes → reader: what the stream is decides, since media types in
# archives can lie (docker-archive layers have none at all). _decompressed
# closes the reader it opens.
_DECOMPRESSORS: tuple[tuple[bytes, Callable[[io.BufferedReader[Any]], io.BufferedIOBase]], ...] = (
    (b"\x1f\x8b", lambda stream: gzip.GzipFile(fileobj=stream, mode="rb")),
    (b"\x28\xb5\x2f\xfd", lambda stream: pyzstd.ZstdFile(stream, "rb")),
    (b"BZh", lambda stream: bz2.BZ2File(stream, "rb")),
    (b"\xfd7zXZ\x00", lambda stream: lzma.LZMAFile(stream, "rb")),  # noqa: SIM115 (see below)
)


@contextlib.contextmanager
def _decompressed(stream: io.BufferedReader[Any]) -> Iterator[io.BufferedIOBase]:
    """The stream, decompressed if its first bytes are a gzip, zstd, bzip2 or xz magic."""
    magic = stream.peek(6)[:6]
    for prefix, open_reader in _DECOMPRESSORS:
        if magic.startswith(prefix):
            with open_reader(stream) as reader:
                yield reader
            return
    yield stream


# What a corrupt compressed stream raises while it is read.
_DECOMPRESSION_ERRORS = (OSError, EOFError, lzma.LZMAError, pyzstd.ZstdError)


def _read_chunk(stream: io.BufferedIOBase, what: str) -> bytes:
    try:
        return stream.read(_CHUNK)
    except _DECOMPRESSION_ERRORS as err:
        raise StoreError(f"decompressing {what}: {err}") from err


class _HashingReader(io.RawIOBase):
    """Passes a stream through, hashing it with sha256."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(len(view))
        view[: len(data)] = data
        self._hash.update(data)
        return len(data)

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _Archive:
    """Random access to a tar's members by name, following links inside the tar only."""

    def __init__(self, path: Path) -> None:
        try:
            self._tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 (closed by __exit__)
        except tarfile.ReadError as err:
            # tarfile lists every compression it tried; one line says it better.
            raise StoreError(f"loading {path}: not a tar archive (OCI or docker)") from err
        except OSError as err:
            raise StoreError(f"loading {path}: {err.strerror or err}") from err
        except tarfile.TarError as err:
            raise StoreError(f"loading {path}: {err}") from err
        try:
            self._members = {_member_name(m.name): m for m in self._tar.getmembers()}
        except (OSError, tarfile.TarError) as err:
            self._tar.close()
            raise StoreError(f"loading {path}: {err}") from err
        except StoreError:
            self._tar.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._tar.close()

    def has(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        with self.open(name) as stream:
            return stream.read()

    def open(self, name: str) -> IO[bytes]:
        member = self._follow(_member_name(name))
        stream = self._tar.extractfile(member)
        if stream is None:
            raise StoreError(f"loading archive member {name}: not a regular file")
        return stream

    def _follow(self, name: str) -> tarfile.TarInfo:
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(name)
            if member is None:
                raise StoreError(f"loading archive: member {name} is missing")
            if member.issym():
                # Old `docker save` links repeated layers as ../<id>/layer.tar.
                name = _link_target(name, member.linkname)
            elif member.islnk():
                name = _member_name(member.linkname)
            else:
                return member
        raise StoreError(f"loading archive: too many links at {name}")


def _member_name(name: str) -> str:
    """A member name relative to the archive root; absolute or climbing names are refused."""
    if name.startswith("/"):
        raise StoreError(f"loading archive: member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise StoreError(f"loading archive: member {name!r} contains ..")
    return "/".join(parts) or "."


def _link_target(name: str, target: str) -> str:
    """Where a symlink member points, as a member name; it must stay inside the archive."""
    if target.startswith("/"):
        raise StoreError(f"loading archive: link {name!r} points to an absolute path")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise StoreError(f"loading archive: link {name!r} points outside the archive")
    return _member_name(resolved)


# -- importing a root file system ---------------------------------------------


def _write_tree(root: Path, out: tarfile.TarFile) -> None:
    """Every entry under ``root`` (not root itself), sorted, hard links kept as links."""
    first_path: dict[tuple[int, int], str] = {}
    for relative in _walk_sorted(root, ""):
        full = os.path.join(root, relative)
        info = os.lstat(full)
        entry = tarfile.TarInfo(relative)
        entry.mode = stat.S_IMODE(info.st_mode)
        entry.uid, entry.gid = info.st_uid, info.st_gid
        entry.uname = entry.gname = ""
        entry.mtime = int(info.st_mtime)
        if stat.S_ISDIR(info.st_mode):
            entry.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(info.st_mode):
            entry.type, entry.linkname = tarfile.SYMTYPE, os.readlink(full)
        elif stat.S_ISREG(info.st_mode):
            inode = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and inode in first_path:
                entry.type, entry.linkname = tarfile.LNKTYPE, first_path[inode]
            else:
                first_path[inode] = relative
                entry.size = info.st_size
                with open(full, "rb") as content:
                    out.addfile(entry, content)
                continue
        elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
            entry.type = tarfile.CHRTYPE if stat.S_ISCHR(info.st_mode) else tarfile.BLKTYPE
            entry.devmajor, entry.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
        elif stat.S_ISFIFO(info.st_mode):
            entry.type = tarfile.FIFOTYPE
        else:
            continue  # sockets cannot be archived; docker skips them too
        out.addfile(entry)


def _walk_sorted(root: Path, prefix: str) -> Iterator[str]:
    """Relative paths depth first, each directory's entries sorted by their bytes."""
    directory = os.path.join(root, prefix) if prefix else str(root)
    entries = sorted(os.scandir(directory), key=lambda entry: os.fsencode(entry.name))
    for entry in entries:
        relative = f"{prefix}/{entry.name}" if prefix else entry.name
        yield relative
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_sorted(root, relative)


def _copy_tarball(source: Path, out: tarfile.TarFile) -> None:
    """Rewrite a rootfs tar member by member with reproducible headers, in its own order."""
    with open(source, "rb") as raw, _decompressed(raw) as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    _copy_member(tar, member, out)
        except (tarfile.TarError, *_DECOMPRESSION_ERRORS) as err:
            raise StoreError(f"importing {source}: {err}") from err


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, out: tarfile.TarFile) -> None:
    name = _member_name(member.name)
    if name == ".":
        return
    member.name = name
    if member.islnk():
        member.linkname = _member_name(member.linkname)
    member.uname = member.gname = ""
    member.mtime = int(member.mtime)
    # Keep extended attributes; drop atime, ctime and the rest of the pax noise.
    member.pax_headers = {
        key: value for key, value in member.pax_headers.items() if key.startswith("SCHILY.xattr.")
    }
    out.addfile(member, tar.extractfile(member) if member.isreg() else None)


def _merge(defaults: ContainerConfig, overrides: ContainerConfig | None) -> ContainerConfig:
    if overrides is None:
        return defaults
    changes: dict[str, Any] = {}
    for field in fields(ContainerConfig):
        value = getattr(overrides, field.name)
        if field.name not in ("env", "extra") and value:
            changes[field.name] = value
    env = {item.partition("=")[0]: item for item in defaults.env}
    env.update((item.partition("=")[0], item) for item in overrides.env)
    return replace(defaults, env=tuple(env.values()), **changes)
