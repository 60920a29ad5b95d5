"""Downloads for ``ADD http(s)://…``: streamed to a file, hashed on the way.

The body never sits in memory: it is read in 1 MiB chunks into a file in
the directory the caller names (under ROOT/tmp), through sha256 (and the
``--checksum`` algorithm, when that is another).  TLS uses the system's CA
store (OpenSSL's default paths); proxies come from the usual environment
variables, as BuildKit's HTTP client takes them.  A request may carry the
ETag of an earlier download; the server's ``304 Not Modified`` then comes
back as :class:`NotModified` and nothing is transferred.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import os
import ssl
import urllib.error
import urllib.request
import urllib.response
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from builder.errors import RemoteSourceError
from builder.sources.urls import redact

__all__ = ["Download", "NotModified", "fetch", "last_modified_seconds"]

_CHUNK = 1 << 20
_TIMEOUT = 60.0  # seconds without a byte before the transfer is given up


@dataclass(frozen=True, slots=True)
class Download:
    """A finished download: the file, its sha256 digest (``sha256:<hex>``), the digest of
    the ``--checksum`` algorithm when one was asked, and the headers we keep."""

    path: Path
    digest: str
    checked_digest: str
    last_modified: str
    etag: str
    disposition_name: str


@dataclass(frozen=True, slots=True)
class NotModified:
    """The server confirmed the ETag we sent: the earlier download still stands."""


def _user_agent() -> str:
    from builder import __version__

    return f"pybuild/{__version__}"


def fetch(
    url: str,
    directory: Path,
    *,
    checksum_algorithm: str = "sha256",
    etag: str = "",
    timeout: float = _TIMEOUT,
) -> Download | NotModified:
    """GET ``url`` into a new file in ``directory``; with ``etag``, a conditional GET.

    Raises RemoteSourceError for a refused connection, a TLS failure, a
    status outside 2xx, or a transfer cut short.
    """
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    if etag:
        request.add_header("If-None-Match", etag)
    shown = redact(url)
    opener = _opener()
    try:
        with opener.open(request, timeout=timeout) as response:
            headers: Message = response.headers
            path, digest, checked = _stream(response, directory, checksum_algorithm, shown)
    except urllib.error.HTTPError as err:
        if err.code == 304 and etag:
            return NotModified()
        raise RemoteSourceError(f"fetching {shown}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise RemoteSourceError(f"fetching {shown}: {_reason(err.reason)}") from err
    except (OSError, http.client.HTTPException) as err:  # TimeoutError included
        raise RemoteSourceError(f"fetching {shown}: {_reason(err)}") from err
    return Download(
        path=path,
        digest=digest,
        checked_digest=checked,
        last_modified=headers.get("Last-Modified", ""),
        etag=headers.get("ETag", "").removeprefix("W/"),
        disposition_name=_disposition_name(headers),
    )


def _opener() -> urllib.request.OpenerDirector:
    """http and https only (redirects included: urllib's default opener would also follow
    one to ftp://), TLS verified against the system's CA store."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _stream(
    response: urllib.response.addinfourl, directory: Path, algorithm: str, shown: str
) -> tuple[Path, str, str]:
    """The body into a new file; (path, sha256 digest, digest in ``algorithm``)."""
    sha256 = hashlib.sha256()
    other = hashlib.new(algorithm) if algorithm != "sha256" else None
    expected = response.headers.get("Content-Length")
    fd, name = _new_file(directory)
    path = Path(name)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                sha256.update(chunk)
                if other is not None:
                    other.update(chunk)
                received += len(chunk)
        if expected is not None and expected.isdigit() and int(expected) != received:
            raise RemoteSourceError(
                f"fetching {shown}: transfer cut short ({received} of {expected} bytes)"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    digest = "sha256:" + sha256.hexdigest()
    checked = f"{algorithm}:{other.hexdigest()}" if other is not None else digest
    return path, digest, checked


def _new_file(directory: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix="download-", dir=directory)


def _reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({reason.verify_message})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _disposition_name(headers: Message) -> str:
    """The file name of a ``Content-Disposition`` header, reduced to its last element."""
    if "Content-Disposition" not in headers:
        return ""
    name = headers.get_filename() or ""
    base = name.replace("\\", "/").rstrip("/").rpartition("/")[2]
    return "" if base in ("", ".", "..") or "\0" in base else base


def last_modified_seconds(header: str) -> int:
    """A Last-Modified header as Unix seconds; 0 when absent or unreadable (BuildKit
    gives a download without one the mtime of the epoch)."""
    if not header:
        return 0
    try:
        moment = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return 0
    return int(moment.timestamp())
