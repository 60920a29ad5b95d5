"""builder/image/archive.py: docker and OCI archives in, rootfs imports, and the tools agree."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.image import oci
from builder.image.archive import DEFAULT_PATH, import_rootfs, load_archive
from builder.image.config import ContainerConfig, ImageConfig
from builder.image.store import ImageStore
from tests.image.sample import layer_tar, put_sample_image, skopeo, umoci_unpack

CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

Member = bytes | tuple[str, str]  # content, or ("symlink", target)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


@pytest.fixture
def other_store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "other")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_tar(path: Path, members: Mapping[str, Member]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members.items():
            entry = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                entry.type, entry.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(entry)
            else:
                entry.size = len(content)
                tar.addfile(entry, io.BytesIO(content))
    return path


def sample_tree(root: Path) -> Path:
    """Directories, modes, a symlink, a hard link, a FIFO and a non-ASCII name."""
    (root / "etc" / "empty.d").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc" / "hostname").write_bytes(b"box\n")
    (root / "etc" / "shadow").write_bytes(b"secret\n")
    (root / "etc" / "shadow").chmod(0o600)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "usr" / "bin" / "tool").chmod(0o4755)
    os.link(root / "usr" / "bin" / "tool", root / "usr" / "bin" / "tool-alias")
    (root / "usr" / "bin" / "sh").symlink_to("/bin/busybox")
    (root / "bin").symlink_to("usr/bin")
    (root / "héllo.txt").write_bytes(b"unicode\n")
    os.mkfifo(root / "etc" / "pipe")
    for path in sorted(root.rglob("*")):
        os.utime(path, (1_000_000_000, 1_600_000_000.75), follow_symlinks=False)
    return root


def tree_listing(root: Path) -> dict[str, tuple[object, ...]]:
    """What a file tree holds: type, mode, owner, mtime, content or link target."""
    listing: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        what: object = None
        if stat.S_ISREG(info.st_mode):
            what = path.read_bytes()
        elif stat.S_ISLNK(info.st_mode):
            what = os.readlink(path)
        mtime = None if stat.S_ISDIR(info.st_mode) else int(info.st_mtime)
        listing[str(path.relative_to(root))] = (
            stat.S_IFMT(info.st_mode),
            stat.S_IMODE(info.st_mode),
            info.st_uid,
            info.st_gid,
            mtime,
            what,
        )
    return listing


def layer_members(store: ImageStore, manifest: oci.Descriptor) -> list[tarfile.TarInfo]:
    layer = store.manifest(manifest).layers[0]
    with (
        store.blobs.open(layer.digest, verify=True) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        return list(tar)


# -- import_rootfs ------------------------------------------------------------


def test_import_rootfs_from_a_directory_is_reproducible(
    tmp_path: Path, store: ImageStore, other_store: ImageStore
) -> None:
    tree = sample_tree(tmp_path / "tree")
    first = import_rootfs(tree, store, store.blobs, name="base", created=CREATED)
    os.utime(tree / "etc" / "hostname", (5, 1_600_000_000))  # atime only (mtime unchanged)
    second = import_rootfs(tree, other_store, other_store.blobs, created=CREATED)
    assert first == second
    assert store.resolve("base") == first


def test_import_rootfs_writes_deterministic_headers(tmp_path: Path, store: ImageStore) -> None:
    tree = sample_tree(tmp_path / "tree")
    manifest = import_rootfs(tree, store, store.blobs, created=CREATED)
    members = layer_members(store, manifest)
    names = [member.name for member in members]
    assert names == [
        "bin",
        "etc",
        "etc/empty.d",
        "etc/hostname",
        "etc/pipe",
        "etc/shadow",
        "héllo.txt",
        "usr",
        "usr/bin",
        "usr/bin/sh",
        "usr/bin/tool",
        "usr/bin/tool-alias",
    ]
    by_name = {member.name: member for member in members}
    assert by_name["usr/bin/tool-alias"].islnk()
    assert by_name["usr/bin/tool-alias"].linkname == "usr/bin/tool"
    assert by_name["usr/bin/sh"].linkname == "/bin/busybox"
    assert by_name["etc/pipe"].isfifo()
    assert by_name["usr/bin/tool"].mode == 0o4755
    assert by_name["etc/shadow"].mode == 0o600
    for member in members:
        assert (member.uname, member.gname) == ("", "")
        assert member.mtime == 1_600_000_000
        assert not {"atime", "ctime", "mtime"} & set(member.pax_headers)


def test_import_rootfs_config_has_host_platform_and_default_path(
    tmp_path: Path, store: ImageStore
) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_bytes(b"x")
    overrides = ContainerConfig(env=("PATH=/custom", "LANG=C"), cmd=("/bin/sh",))
    manifest = import_rootfs(
        tmp_path / "tree", store, store.blobs, config_overrides=overrides, created=CREATED
    )
    config = store.config(manifest)
    host = oci.host_platform()
    assert (config.architecture, config.os) == (host.architecture, "linux")
    assert config.created == "2024-01-02T03:04:05Z"
    assert config.config.env == ("PATH=/custom", "LANG=C")
    assert config.config.cmd == ("/bin/sh",)
    assert config.diff_ids == (store.manifest(manifest).layers[0].digest,)
    assert config.history[0].comment == "Imported from tree"
    plain = import_rootfs(tmp_path / "tree", store, store.blobs, created=CREATED)
    assert store.config(plain).config.env == (DEFAULT_PATH,)


def test_import_rootfs_from_a_compressed_tarball_normalises_headers(
    tmp_path: Path, store: ImageStore
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("./", None), ("./b", b"bee"), ("./a", b"ay")):
            entry = tarfile.TarInfo(name)
            entry.uname, entry.gname, entry.uid = "alice", "staff", 1000
            entry.mtime = 1234
            entry.pax_headers = {"atime": "99.5", "SCHILY.xattr.user.k": "v"}
            if data is None:
                entry.type = tarfile.DIRTYPE
                tar.addfile(entry)
            else:
                entry.size = len(data)
                tar.addfile(entry, io.BytesIO(data))
    (tmp_path / "rootfs.tar.gz").write_bytes(gzip.compress(buffer.getvalue()))
    manifest = import_rootfs(tmp_path / "rootfs.tar.gz", store, store.blobs, created=CREATED)
    members = layer_members(store, manifest)
    assert [member.name for member in members] == ["b", "a"]  # a tarball keeps its order
    for member in members:
        assert (member.uname, member.gname, member.uid, member.mtime) == ("", "", 1000, 1234)
        assert member.pax_headers == {"SCHILY.xattr.user.k": "v"}


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b"])
def test_import_rootfs_refuses_tarball_paths_outside_the_root(
    tmp_path: Path, store: ImageStore, bad: str
) -> None:
    write_tar(tmp_path / "bad.tar", {"ok": b"1", bad: b"2"})
    with pytest.raises(StoreError):
        import_rootfs(tmp_path / "bad.tar", store, store.blobs, name="bad")
    assert store.images() == []
    assert os.listdir(store.blobs.staging_dir) == []


@pytest.mark.root
def test_umoci_unpacks_an_imported_directory_to_the_same_files(
    tmp_path: Path, store: ImageStore
) -> None:
    tree = sample_tree(tmp_path / "tree")
    import_rootfs(tree, store, store.blobs, name="rootfs:1", created=CREATED)
    umoci_unpack(f"{store.root}:rootfs:1", tmp_path / "bundle")
    assert tree_listing(tmp_path / "bundle" / "rootfs") == tree_listing(tree)


# -- load_archive: archives written by skopeo --------------------------------


@pytest.mark.root
def test_skopeo_docker_archive_loads_with_the_same_config_digest(
    tmp_path: Path, store: ImageStore, other_store: ImageStore
) -> None:
    manifest = put_sample_image(store, {"a": b"1"}, {"b/c": b"2"})
    store.tag("app:1", manifest)
    archive = tmp_path / "app.tar"
    skopeo("copy", f"oci:{store.root}:app:1", f"docker-archive:{archive}:app:1")
    loaded = load_archive(archive, other_store, other_store.blobs)
    assert [name for name, _ in loaded] == ["app:1"]
    config_digest = store.manifest(manifest).config.digest
    assert other_store.manifest(loaded[0][1]).config.digest == config_digest
    assert other_store.config(other_store.resolve("app:1")) == store.config(manifest)
    assert other_store.manifest(loaded[0][1]).layers == store.manifest(manifest).layers


@pytest.mark.root
@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_skopeo_oci_archive_loads_with_the_same_config_digest(
    tmp_path: Path, store: ImageStore, other_store: ImageStore, compression: str | None
) -> None:
    manifest = put_sample_image(store, {"a": b"1" * 5000}, {"b/c": b"2"})
    store.tag("app", manifest)
    archive = tmp_path / "app-oci.tar"
    flags = ("--dest-compress", "--dest-compress-format", compression) if compression else ()
    skopeo("copy", *flags, f"oci:{store.root}:app:latest", f"oci-archive:{archive}:app:latest")
    if compression:
        with tarfile.open(archive) as tar:
            index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
            digest = index["manifests"][0]["digest"].removeprefix("sha256:")
            written = json.loads(tar.extractfile(f"blobs/sha256/{digest}").read())  # type: ignore[union-attr]
        assert written["layers"][0]["mediaType"] == f"{oci.OCI_LAYER}+{compression}"
    loaded = load_archive(archive, other_store, other_store.blobs)
    assert [name for name, _ in loaded] == ["app:latest"]
    assert loaded[0][1] == manifest  # uncompressed again: the very same manifest
    assert (
        other_store.manifest(loaded[0][1]).config.digest == store.manifest(manifest).config.digest
    )


# -- load_archive: hand-made archives -----------------------------------------


def docker_save_members(
    layers: list[bytes], *, repo_tags: list[str] | None, diff_ids: list[str] | None = None
) -> tuple[dict[str, Member], str]:
    """An old-style `docker save` tar: <id>/layer.tar (gzip here), <hex>.json, manifest.json."""
    config = ImageConfig(
        architecture="amd64",
        os="linux",
        diff_ids=tuple(diff_ids or [sha256(layer) for layer in layers]),
    ).to_bytes()
    config_name = f"{sha256(config)[7:]}.json"
    members: dict[str, Member] = {config_name: config}
    paths = []
    for n, layer in enumerate(layers):
        members[f"layer{n}/layer.tar"] = gzip.compress(layer, mtime=0)
        paths.append(f"layer{n}/layer.tar")
    members["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": repo_tags, "Layers": paths}]
    ).encode()
    return members, sha256(config)


def test_docker_save_with_gzip_layers_loads_uncompressed(tmp_path: Path, store: ImageStore) -> None:
    layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})]
    members, config_digest = docker_save_members(
        layers, repo_tags=["docker.io/library/app:2", "reg:5000/x/app:3"]
    )
    loaded = load_archive(write_tar(tmp_path / "save.tar", members), store, store.blobs)
    assert [name for name, _ in loaded] == ["app:2", "reg:5000/x/app:3"]
    manifest = store.manifest(store.resolve("app:2"))
    assert manifest.config.digest == config_digest
    assert [layer.digest for layer in manifest.layers] == [sha256(layer) for layer in layers]
    assert {layer.media_type for layer in manifest.layers} == {oci.OCI_LAYER}
    assert store.blobs.read_bytes(manifest.layers[1].digest) == layers[1]


def test_docker_save_follows_symlinked_layers_inside_the_archive(
    tmp_path: Path, store: ImageStore
) -> None:
    layer = layer_tar({"shared": b"1"})
    members, _ = docker_save_members([layer, layer], repo_tags=None)
    members["layer1/layer.tar"] = ("symlink", "../layer0/layer.tar")
    loaded = load_archive(write_tar(tmp_path / "save.tar", members), store, store.blobs)
    assert [name for name, _ in loaded] == [""]  # untagged, but stored
    assert store.manifest(loaded[0][1]).layers[1].digest == sha256(layer)


def test_a_layer_that_does_not_match_its_diff_id_is_refused(
    tmp_path: Path, store: ImageStore
) -> None:
    layer = layer_tar({"a": b"1"})
    members, _ = docker_save_members([layer], repo_tags=["app"], diff_ids=[sha256(b"other")])
    with pytest.raises(StoreError, match="diff_id"):
        load_archive(write_tar(tmp_path / "save.tar", members), store, store.blobs)
    assert store.images() == []
    assert not store.blobs.has(sha256(layer))
    assert os.listdir(store.blobs.staging_dir) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("/etc/passwd", b"x"),
        ("../outside", b"x"),
        ("a/../../outside", b"x"),
        ("layer0/evil", ("symlink", "../../../etc/passwd")),
    ],
)
def test_archive_paths_outside_the_archive_are_refused(
    tmp_path: Path, store: ImageStore, name: str, content: Member
) -> None:
    members, _ = docker_save_members([layer_tar({"a": b"1"})], repo_tags=["app"])
    members[name] = content
    if name == "layer0/evil":
        manifest = json.loads(members["manifest.json"])  # type: ignore[arg-type]
        manifest[0]["Layers"] = ["layer0/evil"]
        members["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(StoreError, match="absolute|contains ..|outside the archive"):
        load_archive(write_tar(tmp_path / "bad.tar", members), store, store.blobs)
    assert store.images() == []


def oci_layout_members(
    store: ImageStore, index: Mapping[str, object], digests: list[str]
) -> dict[str, Member]:
    members: dict[str, Member] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index).encode(),
    }
    for digest in digests:
        members[f"blobs/sha256/{digest[7:]}"] = store.blobs.read_bytes(digest)
    return members


def image_blobs(store: ImageStore, manifest: oci.Descriptor) -> list[str]:
    parsed = store.manifest(manifest)
    return [manifest.digest, parsed.config.digest, *(layer.digest for layer in parsed.layers)]


def test_an_oci_archive_blob_that_does_not_match_its_digest_is_refused(
    tmp_path: Path, store: ImageStore, other_store: ImageStore
) -> None:
    manifest = put_sample_image(store, {"a": b"1"})
    index = oci.Index(manifests=(manifest.with_annotations({oci.ANNOTATION_REF_NAME: "x"}),))
    members = oci_layout_members(store, index.to_json(), image_blobs(store, manifest))
    layer = store.manifest(manifest).layers[0].digest
    members[f"blobs/sha256/{layer[7:]}"] = layer_tar({"a": b"tampered"})
    with pytest.raises(StoreError, match="does not match"):
        load_archive(write_tar(tmp_path / "oci.tar", members), other_store, other_store.blobs)
    assert other_store.images() == []


def test_a_multi_platform_oci_archive_loads_this_machines_image(
    tmp_path: Path, store: ImageStore, other_store: ImageStore
) -> None:
    host = oci.host_platform()
    ours = put_sample_image(store, {"a": b"ours"})
    theirs = put_sample_image(store, {"a": b"theirs"})
    foreign = oci.Platform(
        architecture="s390x" if host.architecture != "s390x" else "amd64", os="linux"
    )
    nested = oci.Index(
        manifests=(
            oci.Descriptor(theirs.media_type, theirs.digest, theirs.size, platform=foreign),
            oci.Descriptor(ours.media_type, ours.digest, ours.size, platform=host),
        )
    )
    nested_ref = store.blobs.put_bytes(oci.canonical_json(nested.to_json()))
    top = oci.Index(
        manifests=(
            oci.Descriptor(
                oci.OCI_INDEX,
                nested_ref.digest,
                nested_ref.size,
                annotations=(
                    ("io.containerd.image.name", "docker.io/library/multi:1"),
                    (oci.ANNOTATION_REF_NAME, "1"),
                ),
            ),
        )
    )
    blobs = [nested_ref.digest, *image_blobs(store, ours), *image_blobs(store, theirs)]
    members = oci_layout_members(store, top.to_json(), blobs)
    loaded = load_archive(
        write_tar(tmp_path / "multi.tar", members), other_store, other_store.blobs
    )
    assert loaded == [("multi:1", ours)]


def test_an_archive_of_neither_kind_is_refused(tmp_path: Path, store: ImageStore) -> None:
    with pytest.raises(StoreError, match="neither"):
        load_archive(write_tar(tmp_path / "x.tar", {"hello": b"1"}), store, store.blobs)
    (tmp_path / "garbage.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(StoreError):
        load_archive(tmp_path / "garbage.tar", store, store.blobs)


def test_import_rootfs_of_a_missing_source_is_a_store_error(
    tmp_path: Path, store: ImageStore
) -> None:
    with pytest.raises(StoreError, match="importing"):
        import_rootfs(tmp_path / "absent.tar", store, store.blobs)
    assert os.listdir(store.blobs.staging_dir) == []
