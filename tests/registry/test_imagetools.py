"""imagetools create against Debian's docker-registry on 127.0.0.1, checked with skopeo."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import RegistryError
from builder.image import oci
from builder.image.store import ImageStore
from builder.registry.client import RegistryOptions, open_repository
from builder.registry.imagetools import create_index
from builder.registry.pull import pull
from builder.registry.push import push, upload_blob
from builder.registry.reference import parse_remote
from tests.conftest import REPO
from tests.image.sample import skopeo
from tests.registry.conftest import LiveRegistry
from tests.registry.test_live import make_image, no_config

pytestmark = pytest.mark.root


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_as_arm64(store: ImageStore, name: str, remote: str, options: RegistryOptions) -> str:
    """Push ``name``'s layers under a config that says linux/arm64/v8; the manifest digest."""
    pushed = push(store, store.blobs, name, remote, options=options)
    client = open_repository(parse_remote(remote), options, actions="pull,push")
    data, _ = client.get_manifest(pushed.digest, action="test")
    manifest = json.loads(data)
    config = json.loads(store.blobs.read_bytes(manifest["config"]["digest"]))
    config.update(architecture="arm64", variant="v8")
    config_bytes = json.dumps(config).encode()
    upload_blob(client, _digest(config_bytes), len(config_bytes), io.BytesIO(config_bytes),
                action="test")
    manifest["config"] = {"mediaType": oci.OCI_CONFIG, "digest": _digest(config_bytes),
                          "size": len(config_bytes)}
    manifest_bytes = json.dumps(manifest).encode()
    client.put_manifest(parse_remote(remote).tag, manifest_bytes, oci.OCI_MANIFEST, action="test")
    return _digest(manifest_bytes)


def test_an_index_over_two_platforms_from_two_repositories(
    registry: LiveRegistry, tmp_path: Path
) -> None:
    options = no_config(tmp_path)
    store, amd_config = make_image(tmp_path, "multi:1", {"a.txt": b"one image\n"})
    amd = push(store, store.blobs, "multi:1", f"{registry.host}/multi:amd64", options=options)
    # The arm64 one lives in another repository: the index's repository gets a copy.
    arm = _push_as_arm64(store, "multi:1", f"{registry.host}/elsewhere:arm64", options)

    target = f"{registry.host}/multi:latest"
    created = create_index([f"{registry.host}/multi:amd64", f"{registry.host}/elsewhere:arm64"],
                           [target], options=options)
    assert created.targets == (target,)
    raw = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{target}")
    assert _digest(raw.encode()) == created.descriptor.digest
    index = json.loads(raw)
    assert index["mediaType"] == oci.OCI_INDEX
    assert [(m["digest"], m["platform"]) for m in index["manifests"]] == [
        (amd.digest, {"architecture": "amd64", "os": "linux"}),
        (arm, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    # skopeo picks each platform out of it, and copies all of it: every manifest
    # and blob is in the index's own repository.
    for arch in ("amd64", "arm64"):
        picked = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", arch,
                                   f"docker://{target}"))
        assert picked["Architecture"] == arch
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{target}",
           f"oci:{tmp_path / 'all'}:multi")
    # pybuild pulls either platform from it.
    fresh = ImageStore(tmp_path / "fresh")
    local = pull(target, fresh, fresh.blobs, options=options,
                 platform=oci.Platform(architecture="arm64", os="linux", variant="v8"))
    assert fresh.config(local).architecture == "arm64"
    local_amd = pull(target, fresh, fresh.blobs, options=options,
                     platform=oci.Platform(architecture="amd64", os="linux"))
    assert fresh.manifest(local_amd).config.digest == amd_config


def test_an_index_source_gives_all_its_entries_and_dry_run_writes_nothing(
    registry: LiveRegistry, tmp_path: Path
) -> None:
    options = no_config(tmp_path)
    store, _ = make_image(tmp_path, "dry:1", {"d.txt": b"dry\n"})
    push(store, store.blobs, "dry:1", f"{registry.host}/dry:amd64", options=options)
    _push_as_arm64(store, "dry:1", f"{registry.host}/dry:arm64", options)
    both = create_index([f"{registry.host}/dry:amd64", f"{registry.host}/dry:arm64"],
                        [f"{registry.host}/dry:both"], options=options)
    # An index as a source gives its entries; the same manifest twice is one entry.
    again = create_index([f"{registry.host}/dry:both", f"{registry.host}/dry:amd64"], [],
                         options=options, dry_run=True)
    assert again.data == both.data and again.targets == ()
    missing = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/dry:none"],
        capture_output=True, text=True, check=False)
    assert missing.returncode != 0


def test_bad_sources_and_targets_are_clear_errors(registry: LiveRegistry, tmp_path: Path) -> None:
    options = no_config(tmp_path)
    with pytest.raises(RegistryError, match="name at least one source"):
        create_index([], [f"{registry.host}/x:1"], options=options)
    with pytest.raises(RegistryError, match=r"nothing:1: manifest 1 not found"):
        create_index([f"{registry.host}/nothing:1"], [f"{registry.host}/x:1"], options=options)
    store, _ = make_image(tmp_path, "t:1", {"t": b"t\n"})
    push(store, store.blobs, "t:1", f"{registry.host}/t:1", options=options)
    with pytest.raises(RegistryError, match="name a tag"):
        create_index([f"{registry.host}/t:1"], [f"{registry.host}/t@sha256:{'0' * 64}"],
                     options=options)


def test_the_cli_creates_and_prints_the_index(registry: LiveRegistry, tmp_path: Path) -> None:
    options = no_config(tmp_path)
    store, _ = make_image(tmp_path, "cli:1", {"c": b"cli\n"})
    push(store, store.blobs, "cli:1", f"{registry.host}/cli:amd64", options=options)

    def pybuild(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "builder", "imagetools", *args], capture_output=True,
            text=True, cwd=REPO, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})

    dry = pybuild("create", "--dry-run", f"{registry.host}/cli:amd64")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["manifests"][0]["platform"]["architecture"] == "amd64"
    made = pybuild("create", "-t", f"{registry.host}/cli:all", f"{registry.host}/cli:amd64")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"{registry.host}/cli:all: sha256:")
    none = pybuild("create", "-t", f"{registry.host}/cli:all")
    assert none.returncode != 0 and "SOURCE" in none.stderr
    assert "Traceback" not in none.stderr
