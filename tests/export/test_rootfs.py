"""builder.export.local and .tar: the image's final root tree, whiteouts applied."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.export.exporter import export
from builder.export.options import parse_output
from builder.image import oci
from builder.image.store import ImageStore
from tests.export.sample import EXPECTED_TREE, read_tree


@pytest.mark.root
def test_local_output_is_exactly_the_final_tree(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    export(store, store.blobs, image, names=(), spec=parse_output(str(dest)))
    assert read_tree(dest) == EXPECTED_TREE
    for path in dest.rglob("*"):
        assert not path.name.startswith(".wh."), path
        assert not stat.S_ISCHR(path.lstat().st_mode), path
    assert (dest / "bin").stat().st_mtime == 1_700_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["root", "out"] or sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["out", "root"]


@pytest.mark.root
def test_local_output_refuses_a_non_empty_directory(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine").write_text("keep me")
    with pytest.raises(StoreError, match="not empty"):
        export(store, store.blobs, image, names=(), spec=parse_output(str(dest)))
    assert (dest / "mine").read_text() == "keep me"


def test_tar_output_holds_the_final_tree(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "root.tar"
    export(store, store.blobs, image, names=(), spec=parse_output(f"type=tar,dest={out}"))
    tree: dict[str, object] = {}
    with tarfile.open(out) as tar:
        for member in tar:
            if member.isdir():
                tree[member.name] = ("dir",)
            elif member.issym():
                tree[member.name] = ("symlink", member.linkname)
            elif member.isfile():
                tree[member.name] = ("file", (tar.extractfile(member) or io.BytesIO()).read())
            else:
                tree[member.name] = ("other", member.type)
    assert tree == EXPECTED_TREE


def test_tar_to_stdout_equals_tar_to_file(
    store: ImageStore, image: oci.Descriptor, tmp_path: Path
) -> None:
    out = tmp_path / "root.tar"
    export(store, store.blobs, image, names=(), spec=parse_output(f"type=tar,dest={out}"))
    stream = io.BytesIO()
    export(store, store.blobs, image, names=(), spec=parse_output("-"), stdout=stream)
    assert stream.getvalue() == out.read_bytes()
