"""builder/registry/reference.py: names to registry, repository and endpoint."""

from __future__ import annotations

import pytest

from builder.errors import RegistryError
from builder.registry.reference import RemoteReference, endpoint_url, parse_remote

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app", RemoteReference("docker.io", "library/app", tag="latest")),
        ("docker.io/library/app:1", RemoteReference("docker.io", "library/app", tag="1")),
        ("user/app:2", RemoteReference("docker.io", "user/app", tag="2")),
        ("127.0.0.1:5000/app", RemoteReference("127.0.0.1:5000", "app", tag="latest")),
        ("localhost/a/b:c", RemoteReference("localhost", "a/b", tag="c")),
        (f"ghcr.io/o/app@{DIGEST}", RemoteReference("ghcr.io", "o/app", digest=DIGEST)),
    ],
)
def test_parse_remote_normalises_like_docker(text: str, expected: RemoteReference) -> None:
    assert parse_remote(text) == expected


def test_familiar_name_is_the_store_tag() -> None:
    assert parse_remote("docker.io/library/app").familiar_name == "app:latest"
    assert parse_remote("127.0.0.1:5000/app:1").familiar_name == "127.0.0.1:5000/app:1"


def test_parse_remote_refuses_bad_names() -> None:
    with pytest.raises(RegistryError, match="parsing image name"):
        parse_remote("app:bad tag!")


def test_endpoint_is_plain_http_only_for_loopback_and_insecure_registries() -> None:
    assert endpoint_url("docker.io") == "https://registry-1.docker.io"
    assert endpoint_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert endpoint_url("localhost") == "http://localhost"
    assert endpoint_url("reg.lan:5000") == "https://reg.lan:5000"
    assert (
        endpoint_url("reg.lan:5000", insecure_registries=["reg.lan:5000"]) == "http://reg.lan:5000"
    )
    assert endpoint_url("reg.lan:5000", insecure_registries=["reg.lan"]) == "http://reg.lan:5000"
