"""builder.export.save: several images in one docker or OCI archive."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from builder.errors import StoreError, UsageError
from builder.export.save import save
from builder.image import oci
from builder.image.store import ImageStore
from tests.image.sample import put_sample_image, skopeo


@pytest.fixture
def two_images(store: ImageStore, image: oci.Descriptor) -> tuple[oci.Descriptor, oci.Descriptor]:
    other = put_sample_image(store, {"hello": b"world\n"})
    store.tag("other:2", other)
    store.tag("app:latest", image)
    return image, other


def test_docker_save_lists_each_image_once_with_all_its_tags(
    store: ImageStore, two_images: tuple[oci.Descriptor, oci.Descriptor], tmp_path: Path
) -> None:
    out = tmp_path / "all.tar"
    save(store, store.blobs, ["app:1", "other:2", "app"], dest=str(out), format="docker")
    with tarfile.open(out) as tar:
        entries = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert [entry["RepoTags"] for entry in entries] == [["app:1", "app:latest"], ["other:2"]]
    assert entries[0]["Layers"][0].startswith("blobs/sha256/")


@pytest.mark.root
def test_skopeo_reads_each_image_of_a_saved_docker_archive(
    store: ImageStore, two_images: tuple[oci.Descriptor, oci.Descriptor], tmp_path: Path
) -> None:
    out = tmp_path / "all.tar"
    save(store, store.blobs, ["app:1", "other:2"], dest=str(out), format="docker")
    for name, image in (("app:1", two_images[0]), ("other:2", two_images[1])):
        config = json.loads(skopeo("inspect", "--config", f"docker-archive:{out}:{name}"))
        assert config["rootfs"]["diff_ids"] == list(store.config(image).diff_ids)


@pytest.mark.root
def test_skopeo_reads_each_image_of_a_saved_oci_archive(
    store: ImageStore, two_images: tuple[oci.Descriptor, oci.Descriptor], tmp_path: Path
) -> None:
    out = tmp_path / "all.tar"
    save(store, store.blobs, ["app:1", "other:2"], dest=str(out), format="oci")
    for tag, image in (("1", two_images[0]), ("2", two_images[1])):
        raw = json.loads(skopeo("inspect", "--raw", f"oci-archive:{out}:{tag}"))
        assert raw["config"]["digest"] == store.manifest(image).config.digest
        assert raw["layers"][0]["mediaType"] == oci.OCI_LAYER


def test_save_by_digest_adds_no_tag(
    store: ImageStore, two_images: tuple[oci.Descriptor, oci.Descriptor], tmp_path: Path
) -> None:
    out = tmp_path / "one.tar"
    save(store, store.blobs, [two_images[1].digest], dest=str(out), format="oci")
    with tarfile.open(out) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert index["manifests"] == [two_images[1].to_json()]


def test_save_refuses_unknown_format_and_unknown_image(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--format tgz"):
        save(store, store.blobs, ["app"], dest=str(tmp_path / "x.tar"), format="tgz")
    with pytest.raises(StoreError, match="no such image"):
        save(store, store.blobs, ["nothing:here"], dest=str(tmp_path / "x.tar"))
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.root
def test_a_saved_docker_archive_is_also_an_oci_archive(
    store: ImageStore, two_images: tuple[oci.Descriptor, oci.Descriptor], tmp_path: Path
) -> None:
    out = tmp_path / "all.tar"
    save(store, store.blobs, ["app:1", "other:2"], dest=str(out), format="docker")
    for tag, image in (("1", two_images[0]), ("2", two_images[1])):
        config = json.loads(skopeo("inspect", "--config", f"oci-archive:{out}:{tag}"))
        assert config["rootfs"]["diff_ids"] == list(store.config(image).diff_ids)
