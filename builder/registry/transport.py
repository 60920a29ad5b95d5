"""HTTP for the registry client: the Transport seam, its http.client implementation, retries.

A transport sends one request and hands back the response unread; it knows
nothing of registries, auth or redirects (client.py does). The real one
opens a connection per request: a pull makes a handful of requests per
layer, and a pool would buy little next to the bytes moved.
"""

from __future__ import annotations

import http.client
import io
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol, Self

from builder.errors import RegistryError

__all__ = ["Body", "HttpTransport", "Response", "RetryPolicy", "Transport"]

Body = bytes | BinaryIO | None
# 429 and the 5xx a proxy or an overloaded registry answers with: worth another try.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Only these are safe to send twice; a POST opening an upload or a PATCH
# appending to one is not (the registry may have acted on the first).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


class Response:
    """A status, lower-cased headers and a body stream; ``close`` releases the connection.

    Use it as a context manager. ``read`` reads the body (all of it by default).
    """

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: BinaryIO | None = None,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.status = status
        self.headers = {key.lower(): value for key, value in headers.items()}
        self._body: BinaryIO = body if body is not None else io.BytesIO()
        self._on_close = on_close

    def read(self, amount: int = -1) -> bytes:
        return self._body.read(amount)

    def close(self) -> None:
        self._body.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Transport(Protocol):
    """Sends one HTTP request; raises RegistryError only when no response could be had."""

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Body = None
    ) -> Response: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: at most ``attempts`` sends, backoff doubling from ``first_delay`` up to
    ``max_delay``, and no new attempt once ``deadline`` seconds have passed."""

    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0
    deadline: float = 60.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``; a numeric Retry-After is honoured."""
        backoff = min(self.first_delay * 2.0**attempt, self.max_delay)
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after.strip()), self.max_delay)
        return backoff


class HttpTransport:
    """The real transport: http.client, TLS verified against the system CA store.

    Requests with a replayable body (none or bytes) and an idempotent method
    are retried on 429/5xx and on broken connections, within ``retry``.
    """

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._ssl_context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._sleep = sleep
        self._clock = clock

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Body = None
    ) -> Response:
        replayable = method in _IDEMPOTENT and (body is None or isinstance(body, bytes))
        started = self._clock()
        attempt = 0
        while True:
            try:
                response = self._send_once(method, url, headers, body)
            except (OSError, http.client.HTTPException) as err:
                delay = self._retry.delay(attempt, None)
                if not self._may_retry(replayable, attempt, started, delay):
                    raise RegistryError(f"{method} {_redact(url)}: {err}") from err
            else:
                if response.status not in _RETRY_STATUSES:
                    return response
                delay = self._retry.delay(attempt, response.headers.get("retry-after"))
                if not self._may_retry(replayable, attempt, started, delay):
                    return response
                response.close()
            self._sleep(delay)
            attempt += 1

    def _may_retry(self, replayable: bool, attempt: int, started: float, delay: float) -> bool:
        return (
            replayable
            and attempt + 1 < self._retry.attempts
            and self._clock() - started + delay <= self._retry.deadline
        )

    def _send_once(self, method: str, url: str, headers: Mapping[str, str], body: Body) -> Response:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None:
            raise RegistryError(f"{method} {_redact(url)}: no host in URL")
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self._timeout, context=self._ssl_context
            )
        elif parts.scheme == "http":
            connection = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=self._timeout
            )
        else:
            raise RegistryError(f"{method} {_redact(url)}: unsupported scheme {parts.scheme!r}")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            connection.request(method, target, body=body, headers=dict(headers))
            raw = connection.getresponse()
        except BaseException:
            connection.close()
            raise
        return Response(
            raw.status,
            dict(raw.getheaders()),
            raw,
            on_close=connection.close,
        )


def _redact(url: str) -> str:
    """The URL without its query: upload URLs carry opaque state, token URLs carry scopes."""
    return url.partition("?")[0]
