"""Named build contexts: the flag, the names, and OCI layout directories."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from builder.contexts import (
    NamedContextSpec,
    _split_layout,
    context_name,
    import_oci_layout,
    parse_build_context,
)
from builder.errors import StoreError, UsageError
from builder.image import oci
from builder.image.config import ImageConfig
from builder.image.store import ImageStore
from builder.request import BuildRequest, journal_key
from cache.blobs import BlobStore


@pytest.mark.parametrize(("name", "key"), [
    ("alpine", "alpine"),
    ("alpine:latest", "alpine"),
    ("docker.io/library/alpine:latest", "alpine"),
    ("alpine:3.19", "alpine:3.19"),
    ("registry.example:5000/team/app", "registry.example:5000/team/app"),
    ("deps", "deps"),
    ("Bad Name", None),
    ("UPPER", None),
])
def test_names_are_compared_as_image_references(name: str, key: str | None) -> None:
    assert context_name(name) == key


def test_parse_build_context(tmp_path: Path) -> None:
    assert parse_build_context(f"src={tmp_path}") == NamedContextSpec("src", "dir", str(tmp_path))
    assert parse_build_context("alpine:latest=docker-image://busybox:1") == NamedContextSpec(
        "alpine", "image", "busybox:1")
    assert parse_build_context("b=oci-layout:///x/y:v1") == NamedContextSpec(
        "b", "oci-layout", "/x/y:v1")
    for bad in ("x", "=y", "x=", "x=docker-image://", "x=https://h/r.git"):
        with pytest.raises(UsageError, match="--build-context"):
            parse_build_context(bad)


@pytest.mark.parametrize(("text", "parts"), [
    ("/a/b", ("/a/b", "", "")),
    ("/a/b:v1", ("/a/b", "v1", "")),
    ("/a:b/c", ("/a:b/c", "", "")),  # a colon before the last / belongs to the path
    ("rel/dir@sha256:" + "a" * 64, ("rel/dir", "", "sha256:" + "a" * 64)),
])
def test_layout_selectors(text: str, parts: tuple[str, str, str]) -> None:
    assert _split_layout(text) == parts


def _layer() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return buffer.getvalue()


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest


def _layout(tmp_path: Path) -> tuple[Path, str, str]:
    """A layout with one image (gzip layer) tagged v1; (path, manifest digest, diff_id)."""
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    raw = _layer()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    packed = gzip.compress(raw)
    layer = oci.Descriptor(oci.OCI_LAYER_GZIP, _blob(layout, packed), len(packed))
    host = oci.host_platform()
    config_data = oci.canonical_json(ImageConfig(
        architecture=host.architecture, os=host.os, diff_ids=(diff_id,)).to_json())
    config = oci.Descriptor(oci.OCI_CONFIG, _blob(layout, config_data), len(config_data))
    manifest_data = oci.canonical_json(oci.Manifest(config=config, layers=(layer,)).to_json())
    manifest = oci.Descriptor(oci.OCI_MANIFEST, _blob(layout, manifest_data), len(manifest_data),
                              annotations=((oci.ANNOTATION_REF_NAME, "v1"),))
    (layout / "index.json").write_text(json.dumps(oci.Index(manifests=(manifest,)).to_json()))
    return layout, manifest.digest, diff_id


def test_import_an_oci_layout_by_tag_digest_or_alone(tmp_path: Path) -> None:
    layout, manifest_digest, diff_id = _layout(tmp_path)
    blobs = BlobStore(tmp_path / "root")
    images = ImageStore(tmp_path / "root", blobs=blobs)
    for selector in (":v1", f"@{manifest_digest}", ""):  # one image needs no tag
        imported = import_oci_layout(f"{layout}{selector}", images, blobs)
        manifest = images.manifest(imported)
        assert [layer.digest for layer in manifest.layers] == [diff_id]  # stored uncompressed
        assert blobs.has(diff_id)
    with pytest.raises(StoreError, match="no image tagged 'v2'"):
        import_oci_layout(f"{layout}:v2", images, blobs)
    with pytest.raises(StoreError, match="not an OCI layout"):
        import_oci_layout(str(tmp_path), images, blobs)


def test_a_tampered_layer_is_refused(tmp_path: Path) -> None:
    layout, _, _ = _layout(tmp_path)
    blobs = BlobStore(tmp_path / "root")
    images = ImageStore(tmp_path / "root", blobs=blobs)
    manifest = oci.Index.from_json(json.loads((layout / "index.json").read_text())).manifests[0]
    layer_digest = oci.Manifest.from_json(json.loads(
        (layout / "blobs" / "sha256" / manifest.digest.removeprefix("sha256:")).read_text()
    )).layers[0].digest
    (layout / "blobs" / "sha256" / layer_digest.removeprefix("sha256:")).write_bytes(
        gzip.compress(b"not the layer"))
    with pytest.raises(StoreError, match="does not match"):
        import_oci_layout(str(layout), images, blobs)


def test_no_journal_answers_a_build_with_named_contexts(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{}")
    request = BuildRequest(context=tmp_path, dockerfile=b"FROM scratch\n",
                           dockerfile_name="Dockerfile", dockerfile_path=None, root=tmp_path)
    assert journal_key(request) is not None
    with_context = BuildRequest(context=tmp_path, dockerfile=b"FROM scratch\n",
                                dockerfile_name="Dockerfile", dockerfile_path=None,
                                root=tmp_path, build_contexts=(f"x={tmp_path}",))
    assert journal_key(with_context) is None
