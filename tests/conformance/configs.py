"""An image config → the settings a Dockerfile controls, in one comparable shape.

pybuild's config is the OCI config in its store; buildah's is the Docker
config ``buildah inspect`` shows (buildah keeps Healthcheck, OnBuild and
Shell only in the docker format). The two spell "nothing" differently
(absent, ``null``, ``[]``, ``{}``, ``""``), which a runtime reads alike, so
every empty value becomes None before comparing; anything else is compared
as it is.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SETTINGS", "normalise_config"]

SETTINGS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
)


def _healthcheck(value: dict[str, Any]) -> dict[str, Any] | None:
    # Zero durations and retries mean "the default" in both formats; a zero
    # written out is the same as one left out.
    kept = {key: item for key, item in value.items() if item not in (None, 0, [], "")}
    return kept or None


def normalise_config(config: dict[str, Any]) -> dict[str, Any]:
    """The Dockerfile-controlled settings of ``config`` with empties as None.

    Sets of keys (ExposedPorts, Volumes) become sorted lists, since their
    values are always the empty object. A label's empty value is a value.
    """
    settings: dict[str, Any] = {}
    for key in SETTINGS:
        value = config.get(key)
        if value in (None, "", [], {}):
            value = None
        elif key in ("ExposedPorts", "Volumes"):
            value = sorted(value)
        elif key == "Healthcheck":
            value = _healthcheck(value)
        settings[key] = value
    return settings
