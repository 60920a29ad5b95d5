"""Remote image references: which registry, which repository, which tag or digest, and how to reach it.

The local store keeps docker's familiar names ("app:latest", "127.0.0.1:5000/app:1");
a registry wants the full path ("library/app" on registry-1.docker.io). This
module turns one into the other, reusing the store's parser so both agree on
what a valid name is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from builder.errors import RegistryError, StoreError
from builder.image.store import parse_reference

__all__ = ["DOCKER_HUB", "RemoteReference", "endpoint_url", "parse_remote"]

DOCKER_HUB = "docker.io"
# docker.io is a name, not a host: the API lives here.
_DOCKER_HUB_API = "registry-1.docker.io"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True, slots=True)
class RemoteReference:
    """An image in a registry: ``registry`` as written (``docker.io``, ``127.0.0.1:5000``),
    the repository path the registry knows (``library/app``), and a tag or a digest."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if there is one, else the tag."""
        return self.digest or self.tag

    @property
    def familiar_name(self) -> str:
        """The name the local store tags the image with (``app:latest``)."""
        return str(parse_reference(str(self)))

    def with_reference(self, *, tag: str = "", digest: str = "") -> RemoteReference:
        return RemoteReference(self.registry, self.repository, tag=tag, digest=digest)

    def __str__(self) -> str:
        name = f"{self.registry}/{self.repository}"
        return f"{name}@{self.digest}" if self.digest else f"{name}:{self.tag}"


def parse_remote(text: str) -> RemoteReference:
    """Parse a user's image name into a remote reference; ``app`` is docker.io/library/app:latest.

    Raises RegistryError for a name the store's parser refuses.
    """
    try:
        familiar = parse_reference(text)
    except StoreError as err:
        raise RegistryError(f"parsing image name {text!r}: {err}") from err
    first, slash, rest = familiar.repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, familiar.repository
    if registry == DOCKER_HUB and "/" not in repository:
        repository = "library/" + repository
    return RemoteReference(registry, repository, tag=familiar.tag, digest=familiar.digest)


def endpoint_url(registry: str, *, insecure_registries: Iterable[str] = ()) -> str:
    """The base URL of a registry's API: plain HTTP for loopback and ``--insecure-registry``
    hosts (given as HOST or HOST:PORT), HTTPS otherwise."""
    host = _DOCKER_HUB_API if registry == DOCKER_HUB else registry
    hostname = _hostname(registry)
    insecure = set(insecure_registries)
    plain = hostname in _LOOPBACK_HOSTS or registry in insecure or hostname in insecure
    return f"{'http' if plain else 'https'}://{host}"


def _hostname(registry: str) -> str:
    if registry.startswith("["):
        return registry.partition("]")[0] + "]"
    return registry.rpartition(":")[0] if ":" in registry else registry
