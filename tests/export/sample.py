"""A three-layer image with replacements, whiteouts, an opaque dir and links, and its final tree."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from builder.image import oci
from builder.image.config import ContainerConfig, HistoryEntry, ImageConfig
from builder.image.store import ImageStore

Entry = tuple[str, str, bytes | str]  # (name, kind, content or link target)

LAYERS: tuple[tuple[Entry, ...], ...] = (
    (
        ("bin/", "dir", b""),
        ("bin/busybox", "file", b"#!busybox\n"),
        ("bin/sh", "symlink", "busybox"),
        ("data/", "dir", b""),
        ("data/keep", "file", b"old data\n"),
        ("etc/", "dir", b""),
        ("etc/a", "file", b"a1\n"),
        ("etc/b", "file", b"b1\n"),
        ("etc/link", "hardlink", "etc/b"),
        ("gone/", "dir", b""),
        ("gone/x", "file", b"x\n"),
        ("top", "file", b"top1\n"),
    ),
    (
        ("data/", "dir", b""),
        ("data/.wh..wh..opq", "file", b""),
        ("data/new", "file", b"new data\n"),
        ("etc/", "dir", b""),
        ("etc/.wh.never-there", "file", b""),
        ("etc/a", "file", b"a2\n"),
        ("etc/b", "file", b"b2\n"),
        (".wh.gone", "file", b""),
    ),
    (
        ("top", "dir", b""),
        ("top/inside", "file", b"inside\n"),
        ("etc/", "dir", b""),
        ("etc/c", "file", b"c3\n" * 5000),
    ),
)

# What the root tree must hold afterwards: path → ("file", bytes) | ("symlink", target) | ("dir",)
EXPECTED_TREE: dict[str, tuple[str, bytes | str] | tuple[str]] = {
    "bin": ("dir",),
    "bin/busybox": ("file", b"#!busybox\n"),
    "bin/sh": ("symlink", "busybox"),
    "data": ("dir",),
    "data/new": ("file", b"new data\n"),
    "etc": ("dir",),
    "etc/a": ("file", b"a2\n"),
    "etc/b": ("file", b"b2\n"),
    "etc/c": ("file", b"c3\n" * 5000),
    "etc/link": ("file", b"b1\n"),  # the old etc/b, still linked when etc/b was replaced
    "top": ("dir",),
    "top/inside": ("file", b"inside\n"),
}


def layer_bytes(entries: tuple[Entry, ...]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(content)
                tar.addfile(info)
            else:
                assert isinstance(content, bytes)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def put_layered_image(store: ImageStore, *, name: str = "app:1") -> oci.Descriptor:
    layers = []
    for entries in LAYERS:
        ref = store.blobs.put_bytes(layer_bytes(entries))
        layers.append(oci.Descriptor(oci.OCI_LAYER, ref.digest, ref.size))
    config = ImageConfig(
        architecture=oci.host_platform().architecture,
        os="linux",
        created="2024-01-02T03:04:05Z",
        config=ContainerConfig(env=("PATH=/bin",), cmd=("/bin/sh",)),
        diff_ids=tuple(layer.digest for layer in layers),
        history=tuple(HistoryEntry(created_by=f"layer {n}") for n in range(len(layers))),
    )
    manifest = store.put_image(config, layers)
    store.tag(name, manifest)
    return manifest


def read_tree(root: Path) -> dict[str, tuple[str, bytes | str] | tuple[str]]:
    """The tree under ``root`` in EXPECTED_TREE's shape; other kinds show up as ("other",)."""
    tree: dict[str, tuple[str, bytes | str] | tuple[str]] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[relative] = ("symlink", str(path.readlink()))
        elif path.is_dir():
            tree[relative] = ("dir",)
        elif path.is_file():
            tree[relative] = ("file", path.read_bytes())
        else:
            tree[relative] = ("other",)
    return tree
