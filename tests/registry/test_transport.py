"""builder/registry/transport.py: retries with backoff, bounded, against a loopback server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from builder.errors import RegistryError
from builder.registry.transport import HttpTransport, RetryPolicy


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next status of ``statuses`` (then 200)."""

    statuses: ClassVar[list[int]] = []
    seen: ClassVar[list[str]] = []

    def _handle(self) -> None:
        self.seen.append(self.command)
        status = self.statuses.pop(0) if self.statuses else 200
        body = b"ok" if status == 200 else b"busy"
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"statuses": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def transport(clock: FakeClock, **policy: float) -> HttpTransport:
    return HttpTransport(
        retry=RetryPolicy(**policy),  # type: ignore[arg-type]
        sleep=clock.sleep,
        clock=clock,
    )


def test_get_is_retried_on_5xx_and_429_with_backoff(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.statuses = [503, 502, 429]
    clock = FakeClock()
    with transport(clock).send("GET", url, headers={}) as response:
        assert (response.status, response.read()) == (200, b"ok")
    assert clock.sleeps == [0.5, 1.0, 1.0]  # doubling, then Retry-After: 1


def test_retries_stop_after_the_attempt_limit(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.statuses = [503] * 10
    clock = FakeClock()
    with transport(clock, attempts=3).send("GET", url, headers={}) as response:
        assert response.status == 503
    assert len(handler.seen) == 3


def test_retries_stop_at_the_deadline(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.statuses = [503] * 10
    clock = FakeClock()
    with transport(clock, attempts=10, deadline=2.0).send("GET", url, headers={}) as response:
        assert response.status == 503
    assert sum(clock.sleeps) <= 2.0


def test_post_is_not_retried(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.statuses = [503]
    with transport(FakeClock()).send("POST", url, headers={}, body=b"") as response:
        assert response.status == 503
    assert handler.seen == ["POST"]


def test_a_refused_connection_is_retried_then_reported() -> None:
    clock = FakeClock()
    with pytest.raises(RegistryError, match=r"GET http://127.0.0.1:1/v2/: "):
        transport(clock, attempts=3).send("GET", "http://127.0.0.1:1/v2/?secret=1", headers={})
    assert len(clock.sleeps) == 2
