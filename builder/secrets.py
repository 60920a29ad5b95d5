"""What ``pybuild build --secret`` and ``--ssh`` hand to RUN --mount=type=secret|ssh.

``--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`` as docker buildx reads it:
``source``/``src`` names a file, ``env`` a variable of pybuild's own
environment; ``type=env`` with only ``src`` takes src as the variable's name;
with neither, the variable named ID is used when it is set, else a file
named ID. A file must be there when the flag is read (buildx stats it
then too), though no step may use it.  ``--ssh ID[=SOCKET]`` forwards an ssh-agent socket (default:
$SSH_AUTH_SOCK) under ID ("default" when the RUN does not name one).

Only the source is recorded here; a value is read when a step that mounts
it runs, handed to the sandbox through a pipe, and never written anywhere.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from builder.errors import UsageError

__all__ = ["SecretSource", "SshSource", "parse_secret_flag", "parse_ssh_flag", "read_secret"]

# BuildKit refuses secrets over 500 KiB (session/secrets: MaxSecretSize).
MAX_SECRET_BYTES = 500 * 1024


@dataclass(frozen=True, slots=True)
class SecretSource:
    """One --secret: its id and where its value comes from (a file or a variable)."""

    id: str
    kind: str  # "file" or "env"
    name: str  # the file's path, or the variable's name


@dataclass(frozen=True, slots=True)
class SshSource:
    """One --ssh: an id and the agent socket it forwards."""

    id: str
    socket: str


def parse_secret_flag(text: str) -> SecretSource:
    """One --secret value; UsageError naming the flag when it is wrong."""
    kind = ""
    secret_id = path = variable = ""
    for field in text.split(","):
        key, has_value, value = field.partition("=")
        key = key.strip().lower()
        if not has_value:
            raise UsageError(f"--secret {text!r}: invalid field {field!r} must be a "
                             "key=value pair")
        if key == "type":
            if value not in ("file", "env"):
                raise UsageError(f"--secret {text!r}: unsupported secret type {value!r}")
            kind = value
        elif key == "id":
            secret_id = value
        elif key in ("source", "src"):
            path = value
        elif key == "env":
            variable = value
        else:
            raise UsageError(f"--secret {text!r}: unexpected key {key!r}")
    if not secret_id:
        raise UsageError(f"--secret {text!r}: id= is required")
    if kind == "env" and not variable:
        variable, path = path or secret_id, ""
    if kind == "file" and not path:
        path = secret_id
    if path and variable:
        raise UsageError(f"--secret {text!r}: give src= or env=, not both")
    if variable:
        return SecretSource(secret_id, "env", variable)
    if not path and secret_id in os.environ:
        return SecretSource(secret_id, "env", secret_id)
    return _file_source(text, secret_id, os.path.abspath(path or secret_id))


def _file_source(text: str, secret_id: str, path: str) -> SecretSource:
    """A file secret, checked now as buildx checks it: there, and no bigger than BuildKit takes."""
    try:
        size = os.stat(path).st_size
    except OSError as err:
        raise UsageError(f"--secret {text}: {path}: {err.strerror}") from err
    if size > MAX_SECRET_BYTES:
        raise UsageError(f"--secret {text}: {path} is larger than {MAX_SECRET_BYTES} bytes")
    return SecretSource(secret_id, "file", path)


def parse_ssh_flag(text: str) -> SshSource:
    """One --ssh value: ``ID`` or ``ID=SOCKET``; the socket must be there now."""
    ssh_id, has_path, socket = text.partition("=")
    if not ssh_id or "," in ssh_id:
        raise UsageError(f"--ssh {text!r}: expected ID[=SOCKET]")
    if not has_path:
        socket = os.environ.get("SSH_AUTH_SOCK", "")
        if not socket:
            raise UsageError(f"--ssh {text}: no socket given and SSH_AUTH_SOCK is not set")
    if "," in socket:
        raise UsageError(f"--ssh {text!r}: only one agent socket per id is supported")
    try:
        mode = os.stat(socket).st_mode
    except OSError as err:
        raise UsageError(f"--ssh {text}: {socket}: {err.strerror}") from err
    if not stat.S_ISSOCK(mode):
        raise UsageError(f"--ssh {text}: {socket} is not an agent socket (key files are not "
                         "supported; load them into an ssh-agent)")
    return SshSource(ssh_id, os.path.abspath(socket))


def read_secret(source: SecretSource) -> bytes | None:
    """The secret's value now; None when its variable is unset or its file is missing."""
    if source.kind == "env":
        value = os.environ.get(source.name)
        return None if value is None else os.fsencode(value)
    try:
        with Path(source.name).open("rb") as file:
            data = file.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UsageError(f"--secret id={source.id}: reading {source.name}: "
                         f"{err.strerror}") from err
    if len(data) > MAX_SECRET_BYTES:
        raise UsageError(f"--secret id={source.id}: {source.name} is larger than "
                         f"{MAX_SECRET_BYTES} bytes")
    return data
