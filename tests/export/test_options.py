"""builder.export.options: buildx's -o syntax."""

from __future__ import annotations

import pytest

from builder.errors import UsageError
from builder.export.options import Compression, OutputSpec, parse_output


def test_full_oci_spec_parses_every_key() -> None:
    spec = parse_output(
        "type=oci,dest=out.tar,compression=zstd,compression-level=3,"
        "force-compression=true,oci-mediatypes=true"
    )
    assert spec == OutputSpec(
        type="oci",
        dest="out.tar",
        compression=Compression(algorithm="zstd", level=3, force=True),
        oci_media_types=True,
    )


def test_bare_directory_is_local_output() -> None:
    assert parse_output("out/dir") == OutputSpec(type="local", dest="out/dir")


def test_dash_alone_is_tar_to_stdout() -> None:
    assert parse_output("-") == OutputSpec(type="tar", dest="-")


def test_defaults_are_gzip_and_media_types_follow_the_type() -> None:
    oci_spec = parse_output("type=oci,dest=a.tar")
    docker_spec = parse_output("type=docker,dest=a.tar")
    assert oci_spec.compression == Compression("gzip", 6) and oci_spec.oci_media_types
    assert not docker_spec.oci_media_types


def test_zstd_forces_oci_media_types_for_docker() -> None:
    assert parse_output("type=docker,dest=a.tar,compression=zstd").oci_media_types


def test_quoted_name_list_becomes_names() -> None:
    spec = parse_output('type=oci,dest=a.tar,"name=app:1,app:2"')
    assert spec.names == ("app:1", "app:2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=oci,dest=a.tar,colour=red", "unknown key 'colour'"),
        ("type=local,dest=d,compression=gzip", "unknown key 'compression'"),
        ("type=oci,dest=a.tar,compression=lz4", "compression=lz4"),
        ("type=oci,dest=a.tar,compression-level=x", "compression-level=x"),
        ("type=oci,dest=a.tar,compression=gzip,compression-level=12", "0 to 9"),
        ("type=oci,dest=a.tar,compression=uncompressed,compression-level=1", "uncompressed"),
        ("type=oci,dest=a.tar,force-compression=maybe", "force-compression=maybe"),
        ("type=oci", "dest is required"),
        ("dest=a.tar", "type is required"),
        ("type=registry,dest=x", "unknown key"),
        ("type=cacheonly", "not supported"),
        ("type=zip,dest=x", "unknown type"),
        ("type=oci,dest=a,dest=b", "given twice"),
        ("type=oci,dest", "not key=value"),
    ],
)
def test_bad_output_raises_usage_error_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_output(text)


def test_registry_and_image_outputs_mean_push_or_local_store() -> None:
    from builder.export.options import parse_output

    assert parse_output("type=registry,name=h:5000/a:1").type == "registry"
    assert parse_output("type=registry,name=h:5000/a:1").names == ("h:5000/a:1",)
    assert parse_output("type=image,push=true").type == "registry"
    assert parse_output("type=image").type == "image"


def test_registry_outputs_take_buildx_compression_keys() -> None:
    spec = parse_output("type=registry,compression=zstd,compression-level=5,"
                        "force-compression=true,oci-mediatypes=false")
    assert (spec.type, spec.compression) == ("registry", Compression("zstd", 5, True))
    assert spec.oci_media_types  # zstd has only OCI media types
    docker = parse_output("type=image,push=true,oci-mediatypes=false")
    assert (docker.type, docker.compression, docker.oci_media_types) == (
        "registry", Compression("gzip", 6), False)
    assert parse_output("type=registry").oci_media_types  # BuildKit's default
    with pytest.raises(UsageError, match="compression-level=30"):
        parse_output("type=registry,compression=gzip,compression-level=30")
