"""The image settings a stage carries from step to step (ENV, WORKDIR, USER, CMD ...).

Config-only instructions never depend on what a RUN did, so the planner
computes every step's settings up front, from the base image's config and
the instructions; the solver only ever builds layers.  One small function per
config instruction, as each instruction has its own rule in the reference.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace

from builder.errors import InvalidPort
from builder.frontend import commands
from builder.plan.ports import exposed_ports

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_SHELL",
    "HealthSettings",
    "ImageSettings",
    "apply_config_instruction",
    "env_lookup",
    "normalize_workdir",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True, slots=True)
class HealthSettings:
    test: tuple[str, ...]
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class ImageSettings:
    """The runtime config of an image, as the Dockerfile shapes it.

    ``env`` keeps ENV order (later ENVs of the same name replace the value in
    place, as docker does); ``labels`` likewise.  ``shell`` is the SHELL for
    shell-form RUN/CMD/ENTRYPOINT.
    """

    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""
    user: str = ""
    shell: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    healthcheck: HealthSettings | None = None
    onbuild: tuple[str, ...] = ()
    # Whether this stage set CMD itself: an ENTRYPOINT after it keeps it.
    cmd_set: bool = False

    def effective_shell(self) -> tuple[str, ...]:
        return self.shell or DEFAULT_SHELL

    def effective_workdir(self) -> str:
        return self.workdir or "/"

    def with_env(self, key: str, value: str) -> ImageSettings:
        return replace(self, env=_set_pair(self.env, key, value))


def env_lookup(settings: ImageSettings) -> dict[str, str]:
    return dict(settings.env)


def _set_pair(
    pairs: tuple[tuple[str, str], ...], key: str, value: str
) -> tuple[tuple[str, str], ...]:
    if any(existing == key for existing, _ in pairs):
        return tuple((existing, value if existing == key else old) for existing, old in pairs)
    return (*pairs, (key, value))


def normalize_workdir(current: str, path: str) -> str:
    """WORKDIR semantics: relative to the previous WORKDIR, cleaned like Go's path.Clean."""
    if not posixpath.isabs(path):
        path = posixpath.join(current or "/", path)
    cleaned = posixpath.normpath(path)
    # posixpath keeps a leading "//"; Go's path.Clean does not.
    return "/" + cleaned.lstrip("/")


def _command_form(
    settings: ImageSettings, command: tuple[str, ...], prepends_shell: bool
) -> tuple[str, ...]:
    if prepends_shell:
        return (*settings.effective_shell(), *command)
    return command


def apply_config_instruction(
    settings: ImageSettings, instruction: commands.Instruction
) -> ImageSettings:
    """The settings after one (already expanded) config-changing instruction."""
    match instruction:
        case commands.Env(pairs=pairs):
            for pair in pairs:
                settings = settings.with_env(pair.key, pair.value)
            return settings
        case commands.Label(pairs=pairs):
            labels = settings.labels
            for pair in pairs:
                labels = _set_pair(labels, pair.key, pair.value)
            return replace(settings, labels=labels)
        case commands.Workdir(path=path):
            return replace(settings, workdir=normalize_workdir(settings.workdir, path))
        case commands.User(user=user):
            return replace(settings, user=user)
        case commands.Shell(shell=shell):
            return replace(settings, shell=shell)
        case commands.Cmd(command=command, prepends_shell=shell_form):
            return replace(
                settings, cmd=_command_form(settings, command, shell_form), cmd_set=True
            )
        case commands.Entrypoint(command=command, prepends_shell=shell_form):
            # An ENTRYPOINT resets a CMD inherited from the base image, but not
            # one this stage set before it (BuildKit's dispatchEntrypoint).
            return replace(
                settings,
                entrypoint=_command_form(settings, command, shell_form),
                cmd=settings.cmd if settings.cmd_set else None,
            )
        case commands.Expose(ports=ports):
            try:
                added = exposed_ports(ports)
            except InvalidPort as err:
                raise err.with_location(instruction.location) from None
            exposed = list(settings.exposed_ports)
            exposed.extend(port for port in added if port not in exposed)
            return replace(settings, exposed_ports=tuple(exposed))
        case commands.Volume(volumes=volumes):
            known = list(settings.volumes)
            known.extend(volume for volume in volumes if volume not in known)
            return replace(settings, volumes=tuple(known))
        case commands.StopSignal(signal=signal):
            return replace(settings, stop_signal=signal)
        case commands.Healthcheck() as check:
            return replace(
                settings,
                healthcheck=HealthSettings(
                    test=check.test,
                    interval_ns=check.interval_ns,
                    timeout_ns=check.timeout_ns,
                    start_period_ns=check.start_period_ns,
                    start_interval_ns=check.start_interval_ns,
                    retries=check.retries,
                ),
            )
        case commands.Onbuild(expression=expression):
            return replace(settings, onbuild=(*settings.onbuild, expression))
        case commands.Maintainer():
            return settings  # recorded in the image's author field by the exporter
    return settings
