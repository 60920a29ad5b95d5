"""RUN --mount=type=ssh: a socket of the step's own that relays to an ssh-agent.

BuildKit never shows a step the client's agent socket itself: it makes a new
socket, owned and moded as the mount asks (0600 root by default), and relays
every connection to the agent.  ``AgentRelay`` does the same on the host: a
listening socket in a private directory (the sandbox binds it at the mount's
target) and one thread per connection copying bytes both ways until either
side closes.  Closing the relay lets each connection pass on what the step
wrote last, then ends every connection it still carries.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from builder.errors import StepFailed

__all__ = ["AgentRelay", "agent_relay"]

_CHUNK = 1 << 16
# How long closing waits for connections to pass on what the step wrote last.
_DRAIN_SECONDS = 2.0


class AgentRelay:
    """A listening socket at ``path`` whose connections are relayed to ``upstream``."""

    def __init__(self, upstream: str, directory: Path, *, mode: int, uid: int, gid: int) -> None:
        self.upstream = upstream
        self.path = directory / "agent.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._listener.bind(os.fspath(self.path))
        os.chown(self.path, uid, gid)
        os.chmod(self.path, mode)
        self._listener.listen(16)
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept_loop, name="ssh-relay",
                                          daemon=True)
        self._acceptor.start()

    def close(self) -> None:
        """Stop listening and end every relayed connection; waits for the threads.

        The step is over when this runs, so its ends of the connections are
        closed, but what it wrote last may still wait in a socket buffer: each
        connection gets a moment to pass that on and see the agent close its
        end, and only what is still open then is cut.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._stop_write, b"x")
        self._acceptor.join()
        deadline = time.monotonic() + _DRAIN_SECONDS
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join()
        self._listener.close()
        os.close(self._stop_read)
        os.close(self._stop_write)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._stop_read, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._stop_read in ready:
                    break
                try:
                    client, _ = self._listener.accept()
                except OSError:
                    continue
                self._relay_in_thread(client)
        # Connections the step made just before it ended still wait in the backlog:
        # relay them too, or what they carry is lost.
        self._listener.setblocking(False)
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setblocking(True)
            self._relay_in_thread(client)

    def _relay_in_thread(self, client: socket.socket) -> None:
        try:
            agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            agent.connect(self.upstream)
        except OSError:
            client.close()  # the agent is gone: the step sees its connection closed
            return
        # Only the acceptor gets here, and close() cuts connections only after it
        # has ended: every relay started is one close() sees.
        with self._lock:
            self._connections += [client, agent]
            thread = threading.Thread(target=self._pump, args=(client, agent),
                                      name="ssh-relay-conn", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _pump(self, client: socket.socket, agent: socket.socket) -> None:
        peers = {client: agent, agent: client}
        open_ends = 2
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(client, selectors.EVENT_READ)
                selector.register(agent, selectors.EVENT_READ)
                while open_ends:
                    for key, _ in selector.select():
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        try:
                            data = source.recv(_CHUNK)
                        except OSError:
                            data = b""
                        if not data:
                            selector.unregister(source)
                            open_ends -= 1
                            with contextlib.suppress(OSError):
                                peers[source].shutdown(socket.SHUT_WR)
                            continue
                        try:
                            peers[source].sendall(data)
                        except OSError:
                            return
        finally:
            with self._lock:
                for end in (client, agent):
                    with contextlib.suppress(ValueError):
                        self._connections.remove(end)
            client.close()
            agent.close()


@contextlib.contextmanager
def agent_relay(
    upstream: str, staging: Path, *, mode: int, uid: int, gid: int
) -> Iterator[Path]:
    """A relay to ``upstream`` for the block; yields its socket's host path."""
    staging.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="ssh-", dir=staging))
    try:
        try:
            relay = AgentRelay(upstream, directory, mode=mode, uid=uid, gid=gid)
        except OSError as err:
            raise StepFailed(f"forwarding the ssh agent {upstream}: {err.strerror}") from err
        try:
            yield relay.path
        finally:
            relay.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
