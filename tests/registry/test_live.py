"""Pull and push against Debian's docker-registry on 127.0.0.1, checked with skopeo."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from builder.errors import RegistryError
from builder.export.options import Compression
from builder.image import oci
from builder.image.archive import import_rootfs
from builder.image.store import ImageStore
from builder.registry.auth import save_credentials
from builder.registry.client import RegistryOptions
from builder.registry.pull import pull
from builder.registry.push import push
from builder.registry.transport import Body, HttpTransport, Response, Transport
from tests.image.sample import skopeo
from tests.registry.conftest import USER, LiveRegistry

pytestmark = pytest.mark.root


class CountingTransport:
    """The real transport, with every request recorded."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.requests: list[tuple[str, str]] = []

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Body = None
    ) -> Response:
        self.requests.append((method, url.partition("?")[0]))
        return self.inner.send(method, url, headers=headers, body=body)


def make_image(tmp_path: Path, name: str, files: Mapping[str, bytes]) -> tuple[ImageStore, str]:
    """A store holding one imported image; returns it and the image's config digest."""
    tree = tmp_path / f"tree-{len(list(tmp_path.iterdir()))}"
    tree.mkdir()
    for relative, content in files.items():
        (tree / relative).write_bytes(content)
    store = ImageStore(tmp_path / "store")
    manifest = import_rootfs(
        tree, store, store.blobs, name=name, created=datetime(2024, 1, 2, tzinfo=UTC)
    )
    return store, store.manifest(manifest).config.digest


def no_config(tmp_path: Path) -> RegistryOptions:
    return RegistryOptions(config_path=tmp_path / "docker" / "config.json")


def test_push_is_what_skopeo_reads(registry: LiveRegistry, tmp_path: Path) -> None:
    store, config_digest = make_image(tmp_path, "app:1", {"hello.txt": b"hello\n"})
    remote = f"{registry.host}/app"
    pushed = push(store, store.blobs, "app:1", remote, options=no_config(tmp_path))
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{remote}"))
    assert raw["config"]["digest"] == config_digest
    assert raw["layers"][0]["mediaType"] == oci.OCI_LAYER_GZIP
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{remote}"))
    assert inspected["Digest"] == pushed.digest
    layout = tmp_path / "copied"
    skopeo("copy", "--src-tls-verify=false", f"docker://{remote}", f"oci:{layout}:app")
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == pushed.digest


@pytest.mark.parametrize(
    ("compression", "oci_types", "manifest_type", "layer_type"),
    [
        (Compression("zstd", 3), True, oci.OCI_MANIFEST, oci.OCI_LAYER_ZSTD),
        (Compression("uncompressed", 0), True, oci.OCI_MANIFEST, oci.OCI_LAYER),
        (Compression("gzip", 6), False, oci.DOCKER_MANIFEST, oci.DOCKER_LAYER_GZIP),
    ],
)
def test_push_compressed_as_asked_is_what_skopeo_reads(
    registry: LiveRegistry, tmp_path: Path, compression: Compression, oci_types: bool,
    manifest_type: str, layer_type: str,
) -> None:
    store, config_digest = make_image(tmp_path, "asked:1", {"a.txt": b"as asked\n" * 100})
    remote = f"{registry.host}/asked-{compression.algorithm}"
    pushed = push(store, store.blobs, "asked:1", remote, options=no_config(tmp_path),
                  compression=compression, oci_media_types=oci_types)
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{remote}"))
    assert raw["mediaType"] == manifest_type == pushed.media_type
    assert [layer["mediaType"] for layer in raw["layers"]] == [layer_type]
    assert raw["config"]["digest"] == config_digest
    assert raw["config"]["mediaType"] == (oci.OCI_CONFIG if oci_types else oci.DOCKER_CONFIG)
    # skopeo reads the layers back (it decompresses zstd itself), and pybuild pulls
    # them into a fresh store with the same diff_ids.
    layout = tmp_path / "copied"
    skopeo("copy", "--src-tls-verify=false", f"docker://{remote}", f"oci:{layout}:asked")
    fresh = ImageStore(tmp_path / "fresh")
    local = pull(remote, fresh, fresh.blobs, options=no_config(tmp_path))
    assert fresh.config(local).diff_ids == store.config(store.resolve("asked:1")).diff_ids


def test_push_again_uploads_nothing(registry: LiveRegistry, tmp_path: Path) -> None:
    store, _ = make_image(tmp_path, "again:1", {"a": b"again\n"})
    push(store, store.blobs, "again:1", f"{registry.host}/again", options=no_config(tmp_path))
    counting = CountingTransport(HttpTransport())
    options = RegistryOptions(transport=counting, config_path=tmp_path / "none.json")
    push(store, store.blobs, "again:1", f"{registry.host}/again:2", options=options)
    methods = [method for method, _ in counting.requests]
    assert "POST" not in methods and "PATCH" not in methods
    assert methods.count("PUT") == 1  # the manifest only


def test_push_in_chunks_and_pull_back(registry: LiveRegistry, tmp_path: Path) -> None:
    big = bytes(range(256)) * 4096 + b"tail"  # compresses to well over 1 KiB
    store, config_digest = make_image(tmp_path, "big:1", {"big.bin": big})
    counting = CountingTransport(HttpTransport())
    options = RegistryOptions(transport=counting, config_path=tmp_path / "none.json")
    push(store, store.blobs, "big:1", f"{registry.host}/big:1", options=options, chunk_size=1024)
    assert sum(1 for method, _ in counting.requests if method == "PATCH") > 1
    fresh = ImageStore(tmp_path / "fresh")
    local = pull(f"{registry.host}/big:1", fresh, fresh.blobs, options=no_config(tmp_path))
    assert fresh.manifest(local).config.digest == config_digest
    assert fresh.manifest(local).layers == store.manifest(store.resolve("big:1")).layers


def test_push_mounts_a_blob_from_another_repository(registry: LiveRegistry, tmp_path: Path) -> None:
    store, _ = make_image(tmp_path, "base:1", {"shared": b"shared layer\n"})
    push(store, store.blobs, "base:1", f"{registry.host}/base:1", options=no_config(tmp_path))
    counting = CountingTransport(HttpTransport())
    options = RegistryOptions(transport=counting, config_path=tmp_path / "none.json")
    push(
        store,
        store.blobs,
        "base:1",
        f"{registry.host}/derived:1",
        options=options,
        mount_from=("base",),
    )
    assert not any(method in ("PATCH",) for method, _ in counting.requests)
    assert not any(
        method == "PUT" and "/blobs/uploads/" in url for method, url in counting.requests
    )
    skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/derived:1")


def test_pull_what_skopeo_pushed(registry: LiveRegistry, tmp_path: Path) -> None:
    source, config_digest = make_image(tmp_path, "src:1", {"x.txt": b"from skopeo\n"})
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-compress-format=zstd",
        f"oci:{source.root}:src:1",
        f"docker://{registry.host}/other:latest",
    )
    fresh = ImageStore(tmp_path / "fresh")
    local = pull(f"{registry.host}/other", fresh, fresh.blobs, options=no_config(tmp_path))
    assert fresh.manifest(local).config.digest == config_digest
    assert fresh.resolve(f"{registry.host}/other:latest") == local
    assert [layer.digest for layer in fresh.manifest(local).layers] == list(
        fresh.config(local).diff_ids
    )


def test_basic_auth_without_credentials_names_the_registry(
    basic_registry: LiveRegistry, tmp_path: Path
) -> None:
    store, _ = make_image(tmp_path, "app:1", {"a": b"a\n"})
    with pytest.raises(RegistryError, match=f"{basic_registry.host} requires authentication"):
        push(store, store.blobs, "app:1", f"{basic_registry.host}/app", options=no_config(tmp_path))
    fresh = ImageStore(tmp_path / "fresh")
    with pytest.raises(RegistryError, match=f"pybuild login {basic_registry.host}"):
        pull(f"{basic_registry.host}/app", fresh, fresh.blobs, options=no_config(tmp_path))


def test_basic_auth_with_config_json(basic_registry: LiveRegistry, tmp_path: Path) -> None:
    options = no_config(tmp_path)
    assert options.config_path is not None
    save_credentials(basic_registry.host, USER, config_path=options.config_path)
    store, config_digest = make_image(tmp_path, "app:1", {"a": b"authenticated\n"})
    push(store, store.blobs, "app:1", f"{basic_registry.host}/app:1", options=options)
    fresh = ImageStore(tmp_path / "fresh")
    local = pull(f"{basic_registry.host}/app:1", fresh, fresh.blobs, options=options)
    assert fresh.manifest(local).config.digest == config_digest


def test_basic_auth_with_a_wrong_password(basic_registry: LiveRegistry, tmp_path: Path) -> None:
    options = no_config(tmp_path)
    assert options.config_path is not None
    save_credentials(
        basic_registry.host, type(USER)(USER.username, "wrong"), config_path=options.config_path
    )
    fresh = ImageStore(tmp_path / "fresh")
    with pytest.raises(RegistryError, match=f"{basic_registry.host} refused the credentials"):
        pull(f"{basic_registry.host}/app:1", fresh, fresh.blobs, options=options)
