"""builder/image/config.py: configs as docker and BuildKit write them, read and written back."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from builder.errors import StoreError
from builder.image.config import ContainerConfig, Healthcheck, HistoryEntry, ImageConfig

DIFF_ID = "sha256:" + "1" * 64

# What BuildKit writes (ocispec.Image, omitempty everywhere).
BUILDKIT_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-05-01T10:11:12.123456789Z",
    "config": {
        "User": "app:app",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Env": ["PATH=/usr/bin:/bin", "B=2", "A=1"],
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Volumes": {"/data": {}},
        "WorkingDir": "/srv",
        "Labels": {"z.last": "1", "a.first": "2"},
        "StopSignal": "SIGQUIT",
        "Healthcheck": {
            "Test": ["CMD-SHELL", "curl -f http://localhost/"],
            "Interval": 30_000_000_000,
            "Timeout": 5_000_000_000,
            "StartPeriod": 1_000_000_000,
            "StartInterval": 2_000_000_000,
            "Retries": 3,
        },
        "OnBuild": ["RUN echo child"],
        "Shell": ["/bin/bash", "-c"],
    },
    "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]},
    "history": [
        {
            "created": "2024-05-01T10:11:12Z",
            "created_by": "ADD rootfs.tar /",
            "comment": "buildkit.dockerfile.v0",
        },
        {"created": "2024-05-01T10:11:13Z", "created_by": "ENV A=1", "empty_layer": True},
    ],
}

# What the classic docker builder writes: every field, nulls, and keys OCI has no name for.
DOCKER_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "author": "someone",
    "container": "3c1a6e2b",
    "docker_version": "20.10.7",
    "created": "2021-06-01T00:00:00.000000000Z",
    "config": {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "Tty": False,
        "Env": ["PATH=/bin"],
        "Cmd": ["bash"],
        "Image": "sha256:" + "9" * 64,
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": {},
        "ArgsEscaped": True,
    },
    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ", 'CMD ["bash"]']},
    "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]},
    "history": [
        {"created": "2021-06-01T00:00:00Z", "created_by": "/bin/sh", "author": "x", "x-extra": 1}
    ],
}


@pytest.mark.parametrize("raw", [BUILDKIT_CONFIG, DOCKER_CONFIG], ids=["buildkit", "docker"])
def test_config_json_round_trips_exactly(raw: dict[str, Any]) -> None:
    original = copy.deepcopy(raw)
    config = ImageConfig.from_json(raw)
    assert config.to_json() == original
    assert raw == original  # reading does not change its input
    assert ImageConfig.from_json(config.to_json()) == config
    # Canonical bytes sort object keys (Labels, ExposedPorts): stable, not ordered.
    assert ImageConfig.from_bytes(config.to_bytes()).to_bytes() == config.to_bytes()


def test_buildkit_config_reads_into_typed_fields() -> None:
    config = ImageConfig.from_json(BUILDKIT_CONFIG)
    run = config.config
    assert run.env == ("PATH=/usr/bin:/bin", "B=2", "A=1")
    assert run.labels == (("z.last", "1"), ("a.first", "2"))
    assert run.exposed_ports == ("80/tcp", "53/udp")
    assert run.healthcheck == Healthcheck(
        test=("CMD-SHELL", "curl -f http://localhost/"),
        interval_ns=30_000_000_000,
        timeout_ns=5_000_000_000,
        start_period_ns=1_000_000_000,
        start_interval_ns=2_000_000_000,
        retries=3,
    )
    assert run.extra == {}
    assert config.diff_ids == (DIFF_ID,)
    assert config.history[1] == HistoryEntry(
        created="2024-05-01T10:11:13Z", created_by="ENV A=1", empty_layer=True
    )
    assert config.extra == {}


def test_unknown_keys_survive_a_change_to_known_fields() -> None:
    config = ImageConfig.from_json(DOCKER_CONFIG)
    assert config.extra["docker_version"] == "20.10.7"
    assert config.config.extra["Hostname"] == ""
    changed = dataclasses.replace(
        config,
        config=dataclasses.replace(config.config, working_dir="/app", entrypoint=("/init",)),
    )
    written = changed.to_json()
    assert written["container_config"] == DOCKER_CONFIG["container_config"]
    assert written["config"]["Image"] == DOCKER_CONFIG["config"]["Image"]
    assert written["config"]["WorkingDir"] == "/app"
    assert written["config"]["Entrypoint"] == ["/init"]
    assert written["config"]["Volumes"] is None
    assert written["history"][0]["x-extra"] == 1


def test_empty_fields_are_left_out() -> None:
    config = ImageConfig(architecture="arm64", os="linux")
    assert config.to_json() == {
        "architecture": "arm64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    assert config.to_bytes() == (
        b'{"architecture":"arm64","config":{},"os":"linux",'
        b'"rootfs":{"diff_ids":[],"type":"layers"}}'
    )


def test_a_constructed_config_round_trips() -> None:
    config = ImageConfig(
        architecture="arm",
        os="linux",
        variant="v7",
        os_version="1",
        os_features=("f",),
        author="me",
        config=ContainerConfig(
            user="1000",
            env=("A=1",),
            volumes=("/v",),
            healthcheck=Healthcheck(test=("NONE",)),
            labels=(("k", "v"),),
        ),
        diff_ids=(DIFF_ID,),
        history=(HistoryEntry(comment="c"),),
    )
    assert ImageConfig.from_bytes(config.to_bytes()) == config


def test_to_bytes_is_canonical() -> None:
    config = ImageConfig.from_json(BUILDKIT_CONFIG)
    data = config.to_bytes()
    assert (
        data
        == json.dumps(
            BUILDKIT_CONFIG, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("config", "Env"), "A=1", "Env is not a list of strings"),
        (("config", "Labels"), {"a": 1}, "Labels is not an object of strings"),
        (("config", "User"), 0, "User is not a string"),
        (("config", "Healthcheck"), {"Retries": "3"}, "Retries is not an integer"),
        (("rootfs", "type"), "other", "rootfs type"),
        (("rootfs", "diff_ids"), ["sha256:../x"], "invalid digest"),
        (("history",), {"created": "x"}, "history is not a list"),
    ],
)
def test_malformed_configs_raise_store_errors(
    path: tuple[str, ...], value: object, message: str
) -> None:
    raw = copy.deepcopy(BUILDKIT_CONFIG)
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(StoreError, match=message):
        ImageConfig.from_json(raw)


def test_from_bytes_refuses_text_that_is_not_json() -> None:
    with pytest.raises(StoreError, match="not JSON"):
        ImageConfig.from_bytes(b"\xff")
