"""builder/image/oci.py: canonical JSON and descriptors, manifests, indexes both ways."""

from __future__ import annotations

import json

import pytest

from builder.errors import StoreError
from builder.image import oci

DIGEST = "sha256:" + "ab" * 32


def test_canonical_json_sorts_keys_without_spaces_in_utf8() -> None:
    encoded = oci.canonical_json({"b": [1, {"z": 1, "y": "é"}], "a": "<&>"})
    assert encoded == '{"a":"<&>","b":[1,{"y":"é","z":1}]}'.encode()


def test_canonical_json_does_not_depend_on_dict_order() -> None:
    first = oci.canonical_json({"a": 1, "b": {"c": 2, "d": 3}})
    second = oci.canonical_json({"b": {"d": 3, "c": 2}, "a": 1})
    assert first == second


def test_descriptor_round_trips_with_annotations_and_platform() -> None:
    raw = {
        "mediaType": oci.OCI_MANIFEST,
        "digest": DIGEST,
        "size": 42,
        "annotations": {"z": "1", oci.ANNOTATION_REF_NAME: "app:latest"},
        "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
    }
    descriptor = oci.Descriptor.from_json(raw)
    assert descriptor.annotation(oci.ANNOTATION_REF_NAME) == "app:latest"
    assert descriptor.platform == oci.Platform("arm", "linux", variant="v7")
    assert descriptor.to_json() == raw
    assert oci.Descriptor.from_json(descriptor.to_json()) == descriptor
    assert hash(descriptor) == hash(oci.Descriptor.from_json(raw))


@pytest.mark.parametrize(
    "raw",
    [
        {"mediaType": oci.OCI_LAYER, "digest": "sha256:../../etc", "size": 1},
        {"mediaType": oci.OCI_LAYER, "digest": "sha512:" + "a" * 128, "size": 1},
        {"mediaType": oci.OCI_LAYER, "digest": DIGEST},
        {"mediaType": oci.OCI_LAYER, "digest": DIGEST, "size": -1},
        {"mediaType": oci.OCI_LAYER, "digest": DIGEST, "size": "1"},
        ["not", "an", "object"],
    ],
)
def test_descriptor_refuses_malformed_json(raw: object) -> None:
    with pytest.raises(StoreError):
        oci.Descriptor.from_json(raw)


def test_manifest_round_trips_and_reads_docker_v2() -> None:
    layer = oci.Descriptor(oci.OCI_LAYER, DIGEST, 10)
    manifest = oci.Manifest(config=oci.Descriptor(oci.OCI_CONFIG, DIGEST, 5), layers=(layer,))
    assert oci.Manifest.from_json(json.loads(oci.canonical_json(manifest.to_json()))) == manifest
    docker = {
        "schemaVersion": 2,
        "mediaType": oci.DOCKER_MANIFEST,
        "config": {"mediaType": oci.DOCKER_CONFIG, "digest": DIGEST, "size": 5},
        "layers": [{"mediaType": oci.DOCKER_LAYER_GZIP, "digest": DIGEST, "size": 10}],
    }
    read = oci.Manifest.from_json(docker)
    assert read.media_type == oci.DOCKER_MANIFEST
    assert read.layers[0].media_type == oci.DOCKER_LAYER_GZIP


def test_manifest_without_media_type_takes_the_descriptors() -> None:
    raw = {"schemaVersion": 2, "config": {"mediaType": oci.OCI_CONFIG, "digest": DIGEST, "size": 1}}
    with pytest.raises(StoreError, match="layers"):
        oci.Manifest.from_json(raw)
    raw["layers"] = []
    assert oci.Manifest.from_json(raw, media_type=oci.DOCKER_MANIFEST).media_type == (
        oci.DOCKER_MANIFEST
    )


@pytest.mark.parametrize("schema_version", [1, None, "2"])
def test_manifest_refuses_other_schema_versions(schema_version: object) -> None:
    raw = {"schemaVersion": schema_version, "config": {}, "layers": []}
    with pytest.raises(StoreError, match="schemaVersion"):
        oci.Manifest.from_json(raw)


def test_an_index_is_not_a_manifest() -> None:
    with pytest.raises(StoreError, match="not an image manifest"):
        oci.Manifest.from_json({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []})


def test_index_round_trips() -> None:
    entry = oci.Descriptor(oci.OCI_MANIFEST, DIGEST, 3, ((oci.ANNOTATION_REF_NAME, "a:1"),))
    index = oci.Index(manifests=(entry,))
    assert index.to_json()["mediaType"] == oci.OCI_INDEX
    assert oci.Index.from_json(index.to_json()) == index


def test_parse_json_reports_what_was_read() -> None:
    with pytest.raises(StoreError, match="reading index.json: not JSON"):
        oci.parse_json(b"{", "index.json")
    with pytest.raises(StoreError, match="expected a JSON object"):
        oci.parse_json(b"[]", "index.json")


def test_host_platform_uses_go_names() -> None:
    host = oci.host_platform()
    assert host.os == "linux"
    assert host.architecture in {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"}
