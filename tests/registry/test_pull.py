"""builder/registry/pull.py against a fake transport: formats, platforms, verification, reuse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import RegistryError
from builder.image import oci
from builder.image.store import ImageStore
from builder.registry.client import RegistryOptions
from builder.registry.pull import pull
from tests.registry.fakes import FakeRegistry, serve_image, sha256

AMD64 = oci.Platform(architecture="amd64", os="linux")
ARM64 = oci.Platform(architecture="arm64", os="linux", variant="v8")


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


def options(fake: FakeRegistry, tmp_path: Path) -> RegistryOptions:
    return RegistryOptions(transport=fake, config_path=tmp_path / "no-config.json")


def stored_blobs(store: ImageStore) -> list[str]:
    return list(store.blobs.iter_digests())


def test_pull_stores_gzip_zstd_and_plain_layers_uncompressed(
    store: ImageStore, fake: FakeRegistry, tmp_path: Path
) -> None:
    served = serve_image(
        fake,
        "1",
        layers=({"a": b"1"}, {"b": b"2"}, {"c": b"3"}),
        compressions=("gzip", "zstd", "plain"),
    )
    local = pull("reg.example:5000/team/app:1", store, store.blobs, options=options(fake, tmp_path))
    manifest = store.manifest(local)
    assert [layer.digest for layer in manifest.layers] == list(served.diff_ids)
    assert {layer.media_type for layer in manifest.layers} == {oci.OCI_LAYER}
    assert manifest.config.digest == served.config_digest
    assert store.resolve("reg.example:5000/team/app:1") == local
    assert ("GET", "/v2/team/app/manifests/1") in fake.requests


def test_pull_reads_docker_v2_manifests(
    store: ImageStore, fake: FakeRegistry, tmp_path: Path
) -> None:
    served = serve_image(fake, "latest", docker_types=True)
    local = pull("reg.example/app", store, store.blobs, options=options(fake, tmp_path))
    assert store.manifest(local).config.digest == served.config_digest
    assert ("GET", "/v2/app/manifests/latest") in fake.requests


def test_pull_picks_the_platform_from_an_index(
    store: ImageStore, fake: FakeRegistry, tmp_path: Path
) -> None:
    amd = serve_image(fake, "amd", layers=({"arch": b"amd64"},), architecture="amd64")
    arm = serve_image(fake, "arm", layers=({"arch": b"arm64"},), architecture="arm64")
    index = oci.Index(
        manifests=(
            oci.Descriptor(
                oci.OCI_MANIFEST, amd.manifest.digest, amd.manifest.size, platform=AMD64
            ),
            oci.Descriptor(
                oci.OCI_MANIFEST, arm.manifest.digest, arm.manifest.size, platform=ARM64
            ),
        )
    )
    fake.add_manifest("multi", index.to_json(), oci.OCI_INDEX)
    local = pull(
        "reg.example/app:multi", store, store.blobs, platform=ARM64, options=options(fake, tmp_path)
    )
    assert store.manifest(local).config.digest == arm.config_digest
    with pytest.raises(RegistryError, match="no image for linux/s390x"):
        pull(
            "reg.example/app:multi",
            store,
            store.blobs,
            platform=oci.Platform(architecture="s390x", os="linux"),
            options=options(fake, tmp_path),
        )


def test_pull_refuses_a_tampered_layer_and_stores_nothing(
    store: ImageStore, fake: FakeRegistry, tmp_path: Path
) -> None:
    served = serve_image(fake, "1")
    manifest = oci.Manifest.from_json(oci.parse_json(fake.manifests["1"][0], "manifest"))
    layer_digest = manifest.layers[0].digest
    original = fake.blobs[layer_digest]
    fake.blobs[layer_digest] = original[:-1] + bytes([original[-1] ^ 1])
    with pytest.raises(RegistryError, match=f"layer {layer_digest} does not match its digest"):
        pull("reg.example/app:1", store, store.blobs, options=options(fake, tmp_path))
    assert stored_blobs(store) == []
    assert not any(name.startswith("blob-") for name in os.listdir(store.blobs.staging_dir))
    with pytest.raises(Exception, match="no such image"):
        store.resolve("reg.example/app:1")
    assert served.config_digest not in stored_blobs(store)


def test_pull_refuses_a_layer_whose_content_is_not_the_diff_id(
    store: ImageStore, fake: FakeRegistry, tmp_path: Path
) -> None:
    serve_image(fake, "1")
    data, media_type = fake.manifests["1"]
    obj = oci.parse_json(data, "manifest")
    config = oci.parse_json(fake.blobs[obj["config"]["digest"]], "config")
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    config_data = oci.canonical_json(config)
    obj["config"] = {
        "mediaType": oci.OCI_CONFIG,
        "digest": fake.add_blob(config_data),
        "size": len(config_data),
    }
    fake.add_manifest("bad", obj, media_type)
    with pytest.raises(RegistryError, match="does not match diff_id"):
        pull("reg.example/app:bad", store, store.blobs, options=options(fake, tmp_path))
    assert stored_blobs(store) == []


def test_pull_by_digest_checks_the_manifest(
    store: ImageStore, fake: FakeRegistry, tmp_path: Path
) -> None:
    served = serve_image(fake, "1")
    pull(
        f"reg.example/app@{served.manifest.digest}",
        store,
        store.blobs,
        options=options(fake, tmp_path),
    )
    other = sha256(b"something else")
    fake.manifests[other] = fake.manifests["1"]
    with pytest.raises(RegistryError, match="does not match its content"):
        pull(f"reg.example/app@{other}", store, store.blobs, options=options(fake, tmp_path))


def test_pull_again_fetches_no_blobs(store: ImageStore, fake: FakeRegistry, tmp_path: Path) -> None:
    serve_image(fake, "1", layers=({"a": b"1"}, {"b": b"2"}), compressions=("gzip", "zstd"))
    first = pull("reg.example/app:1", store, store.blobs, options=options(fake, tmp_path))
    assert len(fake.blob_fetches()) == 3
    fake.requests.clear()
    second = pull("reg.example/app:1", store, store.blobs, options=options(fake, tmp_path))
    assert second == first
    assert fake.blob_fetches() == []


def test_pull_of_a_missing_tag_names_the_repository(
    store: ImageStore, fake: FakeRegistry, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="manifest nope not found in team/app on reg.example"):
        pull("reg.example/team/app:nope", store, store.blobs, options=options(fake, tmp_path))
