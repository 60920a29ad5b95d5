"""One repository on one registry: the distribution API's requests, with auth, redirects, errors.

Every method names what it was doing in its errors ("pulling
127.0.0.1:5000/app: manifest latest not found"). Authorization is sent
only to the registry itself, never to a host a redirect points at (blob
storage behind S3 or a CDN must not see the registry's credentials).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

from builder.errors import RegistryError
from builder.image import oci
from builder.registry.auth import Authenticator, load_credentials
from builder.registry.reference import RemoteReference, endpoint_url
from builder.registry.transport import Body, HttpTransport, Response, Transport

__all__ = [
    "MANIFEST_ACCEPT",
    "MAX_MANIFEST_SIZE",
    "RegistryOptions",
    "RepositoryClient",
    "open_repository",
]

MANIFEST_ACCEPT = ", ".join(  # noqa: FLY002 (one media type per item reads better)
    (oci.OCI_INDEX, oci.OCI_MANIFEST, oci.DOCKER_MANIFEST_LIST, oci.DOCKER_MANIFEST)
)
MAX_MANIFEST_SIZE = 4 << 20  # docker/distribution's own cap
_MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class RepositoryClient:
    """Requests against ``repository`` on the registry at ``base_url``.

    ``actions`` is the token scope asked for: "pull", or "pull,push" to push.
    """

    def __init__(
        self,
        *,
        base_url: str,
        registry: str,
        repository: str,
        transport: Transport,
        authenticator: Authenticator,
        actions: str = "pull",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.registry = registry
        self.repository = repository
        self._transport = transport
        self._auth = authenticator
        self._scope = f"repository:{repository}:{actions}"
        self._host = urllib.parse.urlsplit(self.base_url).netloc

    # -- manifests ------------------------------------------------------

    def get_manifest(self, reference: str, *, action: str) -> tuple[bytes, str]:
        """The manifest or index bytes for a tag or digest, and its media type (unverified)."""
        with self.request(
            "GET",
            f"/manifests/{reference}",
            action=action,
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"manifest {reference}",
        ) as response:
            data = response.read(MAX_MANIFEST_SIZE + 1)
            media_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if len(data) > MAX_MANIFEST_SIZE:
            raise RegistryError(f"{action}: manifest {reference} is larger than 4 MiB")
        return data, media_type

    def put_manifest(self, reference: str, data: bytes, media_type: str, *, action: str) -> None:
        with self.request(
            "PUT",
            f"/manifests/{reference}",
            action=action,
            headers={"Content-Type": media_type, "Content-Length": str(len(data))},
            body=data,
            ok=(200, 201),
            what=f"manifest {reference}",
        ):
            pass

    # -- blobs ----------------------------------------------------------

    def open_blob(self, digest: str, *, action: str) -> Response:
        """The blob's response, body unread; the caller closes it and checks the digest."""
        return self.request("GET", f"/blobs/{digest}", action=action, what=f"blob {digest}")

    def has_blob(self, digest: str, *, action: str) -> bool:
        with self.request(
            "HEAD", f"/blobs/{digest}", action=action, ok=(200, 404), what=f"blob {digest}"
        ) as response:
            return response.status == 200

    def start_upload(self, *, action: str, mount: str = "", mount_from: str = "") -> str | None:
        """Open an upload session and return its URL; None if ``mount`` was mounted
        from repository ``mount_from`` instead (nothing left to send)."""
        path = "/blobs/uploads/"
        if mount and mount_from:
            path += "?" + urllib.parse.urlencode({"mount": mount, "from": mount_from})
        with self.request(
            "POST",
            path,
            action=action,
            headers={"Content-Length": "0"},
            body=b"",
            ok=(201, 202),
            what="upload",
        ) as response:
            if response.status == 201 and mount:
                return None
            return self._location(response, action)

    def send_chunk(
        self,
        upload_url: str,
        data: bytes | BinaryIO,
        offset: int,
        *,
        action: str,
        size: int | None = None,
    ) -> str:
        """PATCH one chunk at ``offset``; returns the URL to continue the upload at.

        ``data`` is the chunk's bytes, or a stream of ``size`` bytes (read as it is sent,
        so a large chunk never sits in memory whole).
        """
        length = len(data) if isinstance(data, bytes) else size
        if length is None:
            raise TypeError("send_chunk: a stream needs its size")
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{offset}-{offset + length - 1}",
        }
        with self.request(
            "PATCH", upload_url, action=action, headers=headers, body=data, ok=(202,), what="upload"
        ) as response:
            return self._location(response, action)

    def finish_upload(
        self, upload_url: str, digest: str, body: Body, size: int, *, action: str
    ) -> None:
        """PUT ?digest=: the last bytes (or none) and the digest the registry must verify."""
        separator = "&" if "?" in upload_url else "?"
        url = upload_url + separator + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with self.request(
            "PUT", url, action=action, headers=headers, body=body, ok=(201,), what=f"blob {digest}"
        ):
            pass

    # -- the request loop -------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        action: str,
        what: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: tuple[int, ...] = (200,),
    ) -> Response:
        """Send, answering one auth challenge and following redirects; returns an ``ok``
        response (the caller closes it) or raises RegistryError naming ``what``."""
        if path_or_url.startswith("/"):
            url = f"{self.base_url}/v2/{self.repository}{path_or_url}"
        else:
            url = urllib.parse.urljoin(self.base_url + "/", path_or_url)
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        answered = False
        for _ in range(_MAX_REDIRECTS + 1):
            sent = dict(headers or {})
            same_host = urllib.parse.urlsplit(url).netloc == self._host
            authorization = self._auth.header(self._scope) if same_host else None
            if authorization:
                sent["Authorization"] = authorization
            response = self._transport.send(method, url, headers=sent, body=body)
            if response.status == 401 and same_host and not answered:
                challenge = response.headers.get("www-authenticate", "")
                response.close()
                if not challenge:
                    raise RegistryError(f"{action}: {self.registry} refused {what}: unauthorized")
                self._auth.answer(challenge, self._scope, action)
                answered = True
                if body is not None and not isinstance(body, bytes):
                    body.seek(start)
                continue
            location = response.headers.get("location")
            if response.status in _REDIRECTS and location and method in ("GET", "HEAD"):
                response.close()
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status in ok:
                return response
            self._fail(response, action, what)
        raise RegistryError(f"{action}: too many redirects fetching {what}")

    def _location(self, response: Response, action: str) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"{action}: {self.registry} gave no upload location")
        return urllib.parse.urljoin(self.base_url + "/", location)

    def _fail(self, response: Response, action: str, what: str) -> NoReturn:
        try:
            detail = _error_detail(response.read(64 << 10))
        finally:
            response.close()
        where = f"{self.repository} on {self.registry}"
        status = response.status
        if status == 401:
            message = f"{action}: {self.registry} refused the credentials for {where}"
        elif status == 403:
            message = f"{action}: access to {where} denied"
        elif status == 404:
            message = f"{action}: {what} not found in {where}"
        else:
            message = f"{action}: {self.registry} answered {status} for {what} in {where}"
        raise RegistryError(message + (f" ({detail})" if detail else ""))


def _error_detail(body: bytes) -> str:
    """The registry's own words: {"errors": [{"code": …, "message": …}]}."""
    try:
        errors = json.loads(body).get("errors")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(errors, list):
        return ""
    words = [
        str(error.get("message") or error.get("code"))
        for error in errors
        if isinstance(error, dict) and (error.get("message") or error.get("code"))
    ]
    return "; ".join(words)


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to reach registries: the transport (HttpTransport if None), the hosts to speak
    plain HTTP to (``--insecure-registry``), and the docker config.json holding credentials
    (``~/.docker/config.json`` if None)."""

    transport: Transport | None = None
    insecure_registries: tuple[str, ...] = ()
    config_path: Path | None = None


def open_repository(
    reference: RemoteReference, options: RegistryOptions, *, actions: str = "pull"
) -> RepositoryClient:
    """A client for the reference's repository, with the credentials config.json holds for
    its registry (anonymous if none)."""
    transport = options.transport if options.transport is not None else HttpTransport()
    credentials = load_credentials(reference.registry, config_path=options.config_path)
    return RepositoryClient(
        base_url=endpoint_url(reference.registry, insecure_registries=options.insecure_registries),
        registry=reference.registry,
        repository=reference.repository,
        transport=transport,
        authenticator=Authenticator(reference.registry, transport, credentials),
        actions=actions,
    )
