"""An image's layers → its final root tree as one plain tar, without extracting anything.

Two passes over the layer blobs. The first walks the layers from the top
down and decides, member by member, whether the entry is still there in the
final tree: not replaced by the same path higher up, not under a path a
higher layer deleted (``.wh.name``), made opaque (``.wh..wh..opq``),
replaced by a non-directory, or turned into a directory. The second walks
the layers bottom up and copies the survivors. Only paths are kept in
memory, never contents, so memory grows with the number of entries and not
with layer sizes; no whiteout reaches the output.

A hard link whose target was replaced higher up still has the old content
in the final tree: the target's data is written under the first surviving
link's name and the other links point there.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from builder.errors import StoreError
from builder.export.tarwriter import open_tar_writer
from builder.image import oci
from builder.snapshot import tarstream
from cache.blobs import BlobStore

__all__ = ["write_rootfs"]

_WHITEOUT_PREFIX = ".wh."
_OPAQUE_MARKER = ".wh..wh..opq"
_AUFS_META_PREFIX = ".wh..wh."


@dataclass(slots=True)
class _Above:
    """What the layers above the one being read did to the tree."""

    entries: set[str] = field(default_factory=set)
    non_dirs: set[str] = field(default_factory=set)
    implicit_dirs: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)

    def merge(self, other: _Above) -> None:
        self.entries |= other.entries
        self.non_dirs |= other.non_dirs
        self.implicit_dirs |= other.implicit_dirs
        self.deleted |= other.deleted
        self.opaque |= other.opaque

    def hides(self, path: str, *, is_dir: bool) -> bool:
        if path in self.entries or path in self.deleted:
            return True
        if not is_dir and path in self.implicit_dirs:
            return True
        for ancestor in _ancestors(path):
            if ancestor in self.deleted or ancestor in self.opaque or ancestor in self.non_dirs:
                return True
        return False


@dataclass(slots=True)
class _LayerPlan:
    """Which members of one layer survive, by position, and hard links to re-point."""

    keep: bytearray = field(default_factory=bytearray)
    relink: dict[str, str] = field(default_factory=dict)


def write_rootfs(blobs: BlobStore, layers: Sequence[oci.Descriptor], out: BinaryIO) -> None:
    """Write the merged root tree of ``layers`` (bottom first) to ``out`` as a tar.

    Entries keep their layer's headers (owners, modes, mtimes, xattrs); the
    root directory itself is left out. ``out`` stays open.
    """
    above = _Above()
    plans: list[_LayerPlan] = []
    for layer in reversed(layers):
        plans.append(_plan_layer(blobs, layer, above))
    plans.reverse()
    emitted: set[str] = set()
    with open_tar_writer(out) as tar_out:
        for layer, plan in zip(layers, plans, strict=True):
            _copy_layer(blobs, layer, plan, tar_out, emitted)


def _plan_layer(blobs: BlobStore, layer: oci.Descriptor, above: _Above) -> _LayerPlan:
    plan = _LayerPlan()
    mine = _Above()
    kept_here: dict[str, bool] = {}
    with _open_layer(blobs, layer) as archive:
        for member in tarstream.members(archive):
            path = _normal(member.name)
            keep = False
            base = path.rpartition("/")[2]
            if not path:
                pass
            elif base == _OPAQUE_MARKER:
                mine.opaque.add(path.rpartition("/")[0])
            elif base.startswith(_AUFS_META_PREFIX):
                pass
            elif base.startswith(_WHITEOUT_PREFIX):
                parent = path.rpartition("/")[0]
                hidden = base[len(_WHITEOUT_PREFIX) :]
                mine.deleted.add(f"{parent}/{hidden}" if parent else hidden)
            else:
                keep = not above.hides(path, is_dir=member.isdir())
                mine.entries.add(path)
                if not member.isdir():
                    mine.non_dirs.add(path)
                mine.implicit_dirs.update(_ancestors(path))
                kept_here[path] = keep
                if keep and member.islnk():
                    target = _normal(member.linkname)
                    if kept_here.get(target) is False:
                        plan.relink.setdefault(target, path)
            plan.keep.append(keep)
    above.merge(mine)
    return plan


def _copy_layer(
    blobs: BlobStore,
    layer: oci.Descriptor,
    plan: _LayerPlan,
    tar_out: tarfile.TarFile,
    emitted: set[str],
) -> None:
    with _open_layer(blobs, layer) as archive:
        for position, member in enumerate(tarstream.members(archive)):
            path = _normal(member.name)
            keep = plan.keep[position]
            if not keep and path in plan.relink and member.isreg():
                _rename(member, plan.relink[path])
                tar_out.addfile(member, archive.extractfile(member))
                emitted.add(member.name)
                continue
            if not keep:
                continue
            if member.islnk():
                target = _normal(member.linkname)
                if target in plan.relink:
                    if plan.relink[target] == path:
                        continue  # its content is already written under this name
                    target = plan.relink[target]
                if target not in emitted:
                    raise StoreError(
                        f"exporting root tree: layer {layer.digest}: hard link {path} "
                        f"points to {target}, which is not in the image"
                    )
                _rename(member, path, target)
            else:
                _rename(member, path)
            tar_out.addfile(member, archive.extractfile(member) if member.isreg() else None)
            if not member.isdir():
                emitted.add(path)


@contextlib.contextmanager
def _open_layer(blobs: BlobStore, layer: oci.Descriptor) -> Iterator[tarfile.TarFile]:
    """A stored layer as a streaming tar (gzip/zstd layers decompressed); errors → StoreError."""
    with blobs.open(layer.digest) as stream, tarstream.open_layer(stream) as archive:
        try:
            yield archive
        except StoreError:
            raise
        except Exception as err:
            if not tarstream.is_bad_input(err):
                raise
            raise StoreError(f"exporting root tree from layer {layer.digest}: {err}") from err


def _rename(member: tarfile.TarInfo, name: str, linkname: str | None = None) -> None:
    """Set the names; a PAX path/linkpath record would otherwise win over them on write."""
    member.name = name
    if linkname is not None:
        member.linkname = linkname
    member.pax_headers = {
        key: value for key, value in member.pax_headers.items() if key not in ("path", "linkpath")
    }


def _normal(name: str) -> str:
    """A member name relative to the root ("" for the root); ``..`` is refused."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise StoreError(f"exporting root tree: member {name!r} contains ..")
    return "/".join(parts)


def _ancestors(path: str) -> list[str]:
    """a/b/c → [a, a/b]: the directories above a path, the root left out."""
    parts = path.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts))]
