"""builder/image/store.py: an OCI layout whose index.json holds docker-normalised tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.image import oci
from builder.image.config import ImageConfig
from builder.image.store import ImageRecord, ImageStore, Reference, parse_reference
from tests.conftest import REPO
from tests.image.sample import put_layer, put_sample_image, skopeo


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


def index_names(store: ImageStore) -> list[str]:
    index = json.loads((store.root / "index.json").read_bytes())
    return [entry["annotations"][oci.ANNOTATION_REF_NAME] for entry in index["manifests"]]


def test_a_new_store_is_an_empty_oci_layout(store: ImageStore) -> None:
    assert json.loads((store.root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store.root / "index.json").read_bytes())
    assert index == {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []}
    assert (store.root / "blobs" / "sha256").is_dir()
    assert store.images() == []
    ImageStore(store.root)  # reopening keeps it


def test_a_layout_of_another_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    with pytest.raises(StoreError, match="layout version"):
        ImageStore(tmp_path)


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("app", "app:latest"),
        ("app:1.0", "app:1.0"),
        ("library/app", "app:latest"),
        ("docker.io/library/app:2", "app:2"),
        ("index.docker.io/library/app", "app:latest"),
        ("docker.io/user/app", "user/app:latest"),
        ("user/app:x", "user/app:x"),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest"),
        ("ghcr.io/o/app:v_1", "ghcr.io/o/app:v_1"),
        ("app:1@sha256:" + "a" * 64, "app@sha256:" + "a" * 64),
        ("app@sha256:" + "b" * 64, "app@sha256:" + "b" * 64),
    ],
)
def test_names_are_normalised_like_docker(name: str, normalised: str) -> None:
    assert str(parse_reference(name)) == normalised


@pytest.mark.parametrize(
    "name",
    [
        "",
        "App",
        "app:",
        ":tag",
        "a b",
        "app:-x",
        "/app",
        "app/",
        "a" * 64,
        "app@sha256:abc",
        "x@@y",
    ],
)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(StoreError):
        parse_reference(name)


def test_reference_fields() -> None:
    assert parse_reference("reg:5000/app:1") == Reference("reg:5000/app", tag="1")


def test_tag_and_resolve_by_name(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"a": b"1"})
    assert store.tag("app", manifest) == "app:latest"
    assert store.resolve("app") == manifest
    assert store.resolve("app:latest") == manifest
    assert store.resolve("docker.io/library/app:latest") == manifest
    assert index_names(store) == ["app:latest"]
    with pytest.raises(StoreError, match="no such image"):
        store.resolve("app:other")


def test_resolve_by_digest_prefix_and_name_at_digest(store: ImageStore) -> None:
    first = put_sample_image(store, {"a": b"1"})
    second = put_sample_image(store, {"a": b"2"})
    store.tag("one", first)
    store.tag("two", second)
    assert store.resolve(first.digest) == first
    assert store.resolve(first.digest.removeprefix("sha256:")) == first
    common = os.path.commonprefix([first.digest, second.digest])
    unique = first.digest[: len(common) + 1]
    assert store.resolve(unique) == first
    assert store.resolve(unique.removeprefix("sha256:")) == first
    assert store.resolve(f"one@{first.digest}") == first
    with pytest.raises(StoreError, match="no such image"):
        store.resolve(f"two@{first.digest}")
    if len(common) > len("sha256:"):
        with pytest.raises(StoreError, match="ambiguous"):
            store.resolve(common)
    with pytest.raises(StoreError, match="no such image"):
        store.resolve("sha256:")


def test_an_untagged_manifest_resolves_by_full_digest_only(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"a": b"1"})
    assert store.resolve(manifest.digest) == manifest
    with pytest.raises(StoreError, match="no such image"):
        store.resolve(manifest.digest[:20])
    layer = store.manifest(manifest).layers[0]
    with pytest.raises(StoreError, match="no such image"):
        store.resolve(layer.digest)


def test_retagging_moves_the_tag(store: ImageStore) -> None:
    first = put_sample_image(store, {"a": b"1"})
    second = put_sample_image(store, {"a": b"2"})
    store.tag("app", first)
    store.tag("app", second)
    assert store.resolve("app") == second
    assert index_names(store) == ["app:latest"]


def test_tag_with_a_digest_must_name_that_manifest(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"a": b"1"})
    assert store.tag(f"app@{manifest.digest}", manifest) == f"app@{manifest.digest}"
    with pytest.raises(StoreError, match="the manifest is"):
        store.tag("app@sha256:" + "0" * 64, manifest)


def test_tagging_a_manifest_that_is_not_stored_fails(store: ImageStore) -> None:
    ghost = oci.Descriptor(oci.OCI_MANIFEST, "sha256:" + "0" * 64, 10)
    with pytest.raises(StoreError, match="not in the store"):
        store.tag("app", ghost)
    assert index_names(store) == []


def test_untag_and_remove_keep_the_blobs(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"a": b"1"})
    for name in ("a", "b", "c:1"):
        store.tag(name, manifest)
    store.untag("a:latest")
    assert index_names(store) == ["b:latest", "c:1"]
    with pytest.raises(StoreError, match="no such image"):
        store.untag("a")
    assert store.remove("b") == ("b:latest",)
    assert index_names(store) == ["c:1"]
    store.tag("d", manifest)
    assert store.remove(manifest.digest[:16]) == ("c:1", "d:latest")
    assert index_names(store) == []
    assert store.blobs.has(manifest.digest)
    assert store.resolve(manifest.digest) == manifest
    with pytest.raises(StoreError, match="no such image"):
        store.remove("b")


def test_images_lists_tags_with_their_digests(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"a": b"1"}, {"b": b"22"})
    store.tag("zeta", manifest)
    store.tag("alpha:1", manifest)
    parsed = store.manifest(manifest)
    records = store.images()
    assert [record.name for record in records] == ["alpha:1", "zeta:latest"]
    assert records[0] == ImageRecord(
        name="alpha:1",
        manifest_digest=manifest.digest,
        config_digest=parsed.config.digest,
        created="2024-01-02T03:04:05Z",
        size=sum(layer.size for layer in parsed.layers),
    )


def test_put_image_writes_canonical_blobs_idempotently(store: ImageStore) -> None:
    first = put_sample_image(store, {"a": b"1"})
    second = put_sample_image(store, {"a": b"1"})
    assert first == second
    manifest = store.manifest(first)
    raw = store.blobs.read_bytes(first.digest)
    assert raw == oci.canonical_json(json.loads(raw))
    assert manifest.media_type == oci.OCI_MANIFEST
    assert manifest.config.media_type == oci.OCI_CONFIG
    config = store.config(first)
    assert config == store.config(manifest.config)
    assert store.blobs.read_bytes(manifest.config.digest) == config.to_bytes()


def test_put_image_checks_layers_against_diff_ids(store: ImageStore) -> None:
    layer = put_layer(store, {"a": b"1"})
    other = put_layer(store, {"b": b"2"})
    config = ImageConfig(architecture="amd64", os="linux", diff_ids=(layer.digest,))
    with pytest.raises(StoreError, match="1 diff_ids"):
        store.put_image(config, [layer, other])
    with pytest.raises(StoreError, match="is not diff_id"):
        store.put_image(config, [other])
    missing = oci.Descriptor(oci.OCI_LAYER, "sha256:" + "0" * 64, 1)
    ghost = ImageConfig(architecture="amd64", os="linux", diff_ids=(missing.digest,))
    with pytest.raises(StoreError, match="not in the store"):
        store.put_image(ghost, [missing])


def test_index_writes_leave_no_temp_files(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"a": b"1"})
    for n in range(5):
        store.tag(f"app:{n}", manifest)
    assert os.listdir(store.blobs.staging_dir) == []


def test_entries_other_tools_wrote_are_kept_and_found(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"a": b"1"})
    index = json.loads((store.root / "index.json").read_bytes())
    index["manifests"].append(
        {**manifest.to_json(), "annotations": {oci.ANNOTATION_REF_NAME: "plain"}}
    )
    index["manifests"].append(manifest.to_json())  # no name at all
    (store.root / "index.json").write_text(json.dumps(index))
    assert store.resolve("plain") == manifest
    store.tag("ours", manifest)
    assert sorted(index_names_or_none(store)) == ["", "ours:latest", "plain"]
    store.untag("plain")
    assert sorted(index_names_or_none(store)) == ["", "ours:latest"]


def index_names_or_none(store: ImageStore) -> list[str]:
    index = json.loads((store.root / "index.json").read_bytes())
    return [e.get("annotations", {}).get(oci.ANNOTATION_REF_NAME, "") for e in index["manifests"]]


_TAGGER = """
import sys
from pathlib import Path
from builder.image.store import ImageStore
store = ImageStore(Path(sys.argv[1]))
manifest = store.resolve(sys.argv[2])
for n in range(int(sys.argv[4])):
    store.tag(f"{sys.argv[3]}-{n}", manifest)
"""


def test_concurrent_taggers_never_lose_each_others_tags(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"a": b"1"})
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _TAGGER, str(store.root), manifest.digest, f"p{p}", "15"],
            cwd=REPO,
        )
        for p in range(8)
    ]
    assert [process.wait() for process in processes] == [0] * 8
    expected = sorted(f"p{p}-{n}:latest" for p in range(8) for n in range(15))
    assert sorted(index_names(store)) == expected
    assert [record.name for record in store.images()] == expected


@pytest.mark.root
def test_skopeo_inspects_an_image_we_wrote(store: ImageStore) -> None:
    manifest = put_sample_image(store, {"etc/hostname": b"box\n"}, {"bin/tool": b"#!/bin/sh\n"})
    store.tag("app", manifest)
    store.tag("127.0.0.1:5000/team/app:1", manifest)
    config_digest = store.manifest(manifest).config.digest
    for name in ("app:latest", "127.0.0.1:5000/team/app:1"):
        inspected = json.loads(skopeo("inspect", f"oci:{store.root}:{name}"))
        assert inspected["Digest"] == manifest.digest
        assert inspected["Layers"] == list(store.config(manifest).diff_ids)
        assert inspected["Env"] == ["PATH=/usr/bin:/bin"]
        raw_manifest = json.loads(skopeo("inspect", "--raw", f"oci:{store.root}:{name}"))
        assert raw_manifest["config"]["digest"] == config_digest
        raw_config = skopeo("inspect", "--config", "--raw", f"oci:{store.root}:{name}")
        assert raw_config.encode() == store.blobs.read_bytes(config_digest)
