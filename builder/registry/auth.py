"""Registry credentials and authentication: docker's config.json, Basic, and Bearer tokens.

Credentials live where docker keeps them, ``~/.docker/config.json`` under
"auths" (base64 "user:password" in "auth"), so `docker login` and
`pybuild login` share them. Credential helpers ("credsStore") are not read.
The file is rewritten whole (temp file, fsync, rename) with mode 0600, and
keys we do not know are kept.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import RegistryError
from builder.registry.reference import DOCKER_HUB
from builder.registry.transport import Transport
from cache import files

__all__ = [
    "Authenticator",
    "Challenge",
    "Credentials",
    "default_config_path",
    "load_credentials",
    "parse_challenge",
    "remove_credentials",
    "save_credentials",
]

# docker stores Docker Hub under its v1 index URL, for history's sake.
_DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and a password (or an access token used as one)."""

    username: str
    password: str

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def default_config_path() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json (docker's own rule)."""
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def load_credentials(registry: str, *, config_path: Path | None = None) -> Credentials | None:
    """The credentials config.json holds for ``registry``, or None."""
    auths = _read_config(config_path or default_config_path()).get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _registry_of_key(key) != registry or not isinstance(entry, dict):
            continue
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                username, colon, password = base64.b64decode(encoded).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as err:
                raise RegistryError(f"reading credentials for {registry}: bad auth: {err}") from err
            if colon:
                return Credentials(username, password)
        user, secret = entry.get("username"), entry.get("password")
        if isinstance(user, str) and isinstance(secret, str) and user:
            return Credentials(user, secret)
    return None


def save_credentials(
    registry: str, credentials: Credentials, *, config_path: Path | None = None
) -> None:
    """`pybuild login`: store ``credentials`` for ``registry``, replacing any it had."""
    path = config_path or default_config_path()
    config = _read_config(path)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    auths = {key: value for key, value in auths.items() if _registry_of_key(key) != registry}
    token = f"{credentials.username}:{credentials.password}".encode()
    auths[_key_of_registry(registry)] = {"auth": base64.b64encode(token).decode("ascii")}
    config["auths"] = auths
    _write_config(path, config)


def remove_credentials(registry: str, *, config_path: Path | None = None) -> bool:
    """`pybuild logout`: forget ``registry``'s credentials; False if there were none."""
    path = config_path or default_config_path()
    config = _read_config(path)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return False
    kept = {key: value for key, value in auths.items() if _registry_of_key(key) != registry}
    if len(kept) == len(auths):
        return False
    config["auths"] = kept
    _write_config(path, config)
    return True


def _registry_of_key(key: str) -> str:
    """An "auths" key as a registry name: docker writes URLs as well as bare hosts."""
    if key == _DOCKER_HUB_KEY or "://" in key:
        host = urllib.parse.urlsplit(key).netloc
    else:
        host = key.partition("/")[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


def _key_of_registry(registry: str) -> str:
    return _DOCKER_HUB_KEY if registry == DOCKER_HUB else registry


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise RegistryError(f"reading {path}: {err}") from err
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RegistryError(f"reading {path}: not JSON: {err}") from err
    if not isinstance(config, dict):
        raise RegistryError(f"reading {path}: expected a JSON object")
    return config


def _write_config(path: Path, config: Mapping[str, Any]) -> None:
    data = (json.dumps(config, indent="\t", sort_keys=True) + "\n").encode()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # 0600 before a byte of secret is written.
    files.write_atomically(path, data, mode=0o600)


# -- challenges and tokens -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """One WWW-Authenticate challenge: a scheme ("basic", "bearer") and its parameters."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str:
        return dict(self.params).get(name, "")


def parse_challenge(header: str) -> Challenge:
    """Parse ``Bearer realm="…",service="…",scope="…"`` (RFC 7235, one challenge)."""
    scheme, _, rest = header.strip().partition(" ")
    params = []
    for match in _CHALLENGE_PARAM.finditer(rest):
        quoted, bare = match[2], match[3]
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        params.append((match[1].lower(), value))
    return Challenge(scheme.lower(), tuple(params))


class Authenticator:
    """Answers a registry's 401: which Authorization header to send from now on.

    Holds one registry's credentials (or none: anonymous) and the tokens got
    so far, one per scope. Thread-safe: layers are fetched in parallel.
    """

    def __init__(
        self, registry: str, transport: Transport, credentials: Credentials | None = None
    ) -> None:
        self.registry = registry
        self._transport = transport
        self._credentials = credentials
        self._lock = threading.Lock()
        self._basic = False
        self._tokens: dict[str, str] = {}

    def header(self, scope: str) -> str | None:
        """The Authorization header known to work for ``scope``, if any."""
        with self._lock:
            if self._basic and self._credentials is not None:
                return self._credentials.basic_header()
            token = self._tokens.get(scope)
        return f"Bearer {token}" if token else None

    def answer(self, header: str, scope: str, action: str) -> str:
        """Meet a challenge (the 401's WWW-Authenticate) for ``scope``; returns the header to
        retry with. Raises RegistryError when it cannot be met, naming the registry."""
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise RegistryError(
                    f"{action}: {self.registry} requires authentication "
                    f"(no credentials; run pybuild login {self.registry})"
                )
            with self._lock:
                self._basic = True
            return self._credentials.basic_header()
        if challenge.scheme == "bearer":
            token = self._fetch_token(challenge, scope, action)
            with self._lock:
                self._tokens[scope] = token
            return f"Bearer {token}"
        raise RegistryError(f"{action}: {self.registry} asks for {challenge.scheme!r} auth")

    def _fetch_token(self, challenge: Challenge, scope: str, action: str) -> str:
        realm = challenge.param("realm")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{action}: {self.registry} gave no usable token realm")
        query = []
        if challenge.param("service"):
            query.append(("service", challenge.param("service")))
        scopes = {scope, challenge.param("scope")} - {""}
        query.extend(("scope", item) for item in sorted(scopes))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.basic_header()
        with self._transport.send("GET", url, headers=headers) as response:
            body = response.read()
            status = response.status
        if status in (401, 403):
            why = "credentials refused" if self._credentials else "anonymous access refused"
            raise RegistryError(f"{action}: token server for {self.registry}: {why}")
        if status != 200:
            raise RegistryError(f"{action}: token server for {self.registry} answered {status}")
        try:
            answer = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RegistryError(f"{action}: token server for {self.registry}: not JSON") from err
        token = (
            answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else ""
        )
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{action}: token server for {self.registry} gave no token")
        return token
