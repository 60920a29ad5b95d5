"""The OCI image config as frozen values, read and written with docker's key names.

Key names are the image-spec's (which are docker's: "Env", "WorkingDir",
"Healthcheck" {"Test", "Interval", ...}). Empty fields are left out when
writing, as Go's ``omitempty`` does in BuildKit. Whatever a foreign config
holds that these types do not model (docker's "Hostname", "Image",
"container_config", an explicit ``"Cmd": null``) is kept in ``extra`` and
written back, so reading then writing a config changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from builder.errors import StoreError
from builder.image.oci import (
    canonical_json,
    parse_json,
    read_int,
    read_object,
    read_str,
    read_string_map,
    read_strings,
)
from cache.blobs import validate_digest

__all__ = ["ContainerConfig", "Healthcheck", "HistoryEntry", "ImageConfig"]

Extra = Mapping[str, Any]


def _no_extra() -> Extra:
    return MappingProxyType({})


def _leftover(raw: Mapping[str, Any], written: Mapping[str, Any]) -> Extra:
    """The keys of ``raw`` that writing the modelled fields would not reproduce."""
    return MappingProxyType({key: value for key, value in raw.items() if key not in written})


def _set_keys(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """ExposedPorts and Volumes are JSON objects whose values are always {}."""
    return {value: {} for value in values}


def _read_set_keys(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise StoreError(f"reading {what}: {key} is not an object")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Healthcheck:
    """HEALTHCHECK as the config stores it: durations in nanoseconds, 0 meaning unset."""

    test: tuple[str, ...] = ()
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0
    extra: Extra = field(default_factory=_no_extra, hash=False)

    def _modelled_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.test:
            out["Test"] = list(self.test)
        for key, value in (
            ("Interval", self.interval_ns),
            ("Timeout", self.timeout_ns),
            ("StartPeriod", self.start_period_ns),
            ("StartInterval", self.start_interval_ns),
            ("Retries", self.retries),
        ):
            if value:
                out[key] = value
        return out

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, **self._modelled_json()}

    @classmethod
    def from_json(cls, value: object) -> Healthcheck:
        what = "image config Healthcheck"
        obj = read_object(value, what)
        parsed = cls(
            test=read_strings(obj, "Test", what),
            interval_ns=read_int(obj, "Interval", what),
            timeout_ns=read_int(obj, "Timeout", what),
            start_period_ns=read_int(obj, "StartPeriod", what),
            start_interval_ns=read_int(obj, "StartInterval", what),
            retries=read_int(obj, "Retries", what),
        )
        return replace(parsed, extra=_leftover(obj, parsed._modelled_json()))


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """How a container of the image runs: the config's "config" object.

    ``env`` keeps "K=V" strings and ``labels`` keeps pairs, both in the order
    they were set (BuildKit's KeyValuePair keeps ENV and LABEL order too).
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()
    extra: Extra = field(default_factory=_no_extra, hash=False)

    def _modelled_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = _set_keys(self.exposed_ports)
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = _set_keys(self.volumes)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_json()
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.shell:
            out["Shell"] = list(self.shell)
        return out

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, **self._modelled_json()}

    @classmethod
    def from_json(cls, value: object) -> ContainerConfig:
        what = "image config"
        obj = read_object(value, what)
        healthcheck = obj.get("Healthcheck")
        parsed = cls(
            user=read_str(obj, "User", what),
            exposed_ports=_read_set_keys(obj, "ExposedPorts", what),
            env=read_strings(obj, "Env", what),
            entrypoint=read_strings(obj, "Entrypoint", what),
            cmd=read_strings(obj, "Cmd", what),
            volumes=_read_set_keys(obj, "Volumes", what),
            working_dir=read_str(obj, "WorkingDir", what),
            labels=read_string_map(obj, "Labels", what),
            stop_signal=read_str(obj, "StopSignal", what),
            healthcheck=None if healthcheck is None else Healthcheck.from_json(healthcheck),
            on_build=read_strings(obj, "OnBuild", what),
            shell=read_strings(obj, "Shell", what),
        )
        return replace(parsed, extra=_leftover(obj, parsed._modelled_json()))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of `docker history`: which instruction made a layer (or no layer)."""

    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False
    extra: Extra = field(default_factory=_no_extra, hash=False)

    def _modelled_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (
            ("created", self.created),
            ("created_by", self.created_by),
            ("author", self.author),
            ("comment", self.comment),
        ):
            if value:
                out[key] = value
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, **self._modelled_json()}

    @classmethod
    def from_json(cls, value: object) -> HistoryEntry:
        what = "image history"
        obj = read_object(value, what)
        empty_layer = obj.get("empty_layer", False)
        if not isinstance(empty_layer, bool):
            raise StoreError(f"reading {what}: empty_layer is not a boolean")
        parsed = cls(
            created=read_str(obj, "created", what),
            created_by=read_str(obj, "created_by", what),
            author=read_str(obj, "author", what),
            comment=read_str(obj, "comment", what),
            empty_layer=empty_layer,
        )
        return replace(parsed, extra=_leftover(obj, parsed._modelled_json()))


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The image config blob: platform, run config, layer diff_ids and history.

    ``diff_ids`` are the sha256 digests of the uncompressed layer tars, in
    order (the config's rootfs.diff_ids). ``created`` is an RFC 3339 string,
    kept as written so a foreign config round-trips byte for byte.
    """

    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    created: str = ""
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    extra: Extra = field(default_factory=_no_extra, hash=False)

    def _modelled_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        for key, value in (
            ("variant", self.variant),
            ("os.version", self.os_version),
            ("created", self.created),
            ("author", self.author),
        ):
            if value:
                out[key] = value
        if self.os_features:
            out["os.features"] = list(self.os_features)
        # Go never omits a struct, so BuildKit and docker always write "config".
        out["config"] = self.config.to_json()
        out["rootfs"] = {"type": "layers", "diff_ids": list(self.diff_ids)}
        if self.history:
            out["history"] = [entry.to_json() for entry in self.history]
        return out

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, **self._modelled_json()}

    def to_bytes(self) -> bytes:
        """The config blob: canonical JSON, so equal configs have equal digests."""
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, value: object) -> ImageConfig:
        what = "image config"
        obj = read_object(value, what)
        rootfs = read_object(obj.get("rootfs"), "image config rootfs")
        if rootfs.get("type") != "layers":
            raise StoreError("reading image config: rootfs type is not layers")
        diff_ids = read_strings(rootfs, "diff_ids", "image config rootfs")
        for diff_id in diff_ids:
            validate_digest(diff_id)
        history = obj.get("history")
        if history is not None and not isinstance(history, list):
            raise StoreError("reading image config: history is not a list")
        container = obj.get("config")
        parsed = cls(
            architecture=read_str(obj, "architecture", what),
            os=read_str(obj, "os", what),
            variant=read_str(obj, "variant", what),
            os_version=read_str(obj, "os.version", what),
            os_features=read_strings(obj, "os.features", what),
            created=read_str(obj, "created", what),
            author=read_str(obj, "author", what),
            config=ContainerConfig() if container is None else ContainerConfig.from_json(container),
            diff_ids=diff_ids,
            history=tuple(HistoryEntry.from_json(entry) for entry in history or ()),
        )
        return replace(parsed, extra=_leftover(obj, parsed._modelled_json()))

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageConfig:
        return cls.from_json(parse_json(data, "image config"))
