"""A TCP relay on 127.0.0.1 in front of a server (the test PostgreSQL server), that a test can cut
and restore: a network outage between one service and its database, without stopping the server
that every other test of the pass shares.

Cut, every open connection is dropped at once and each new one is closed as soon as it arrives
(the client sees "server closed the connection unexpectedly", as when a database fails over);
restored, it relays again.

With ``forget_idle_after``, it is also a NAT (or a stateful firewall) that forgets a connection
nothing has crossed for that long: what the client sends on it later is dropped, unrelayed and
unanswered, and the connection is left open, so the client learns nothing until its own timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class _Flow:
    """One relayed connection: when a byte last crossed it, and whether it is forgotten."""

    last: float = field(default_factory=time.monotonic)
    forgotten: bool = False


class TcpProxy:
    def __init__(self, host: str, port: int, *, forget_idle_after: float | None = None) -> None:
        self._upstream = (host, port)
        self.forget_idle_after = forget_idle_after  # may change while it runs
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0  # connections relayed so far
        self.dropped: list[bytes] = []  # what was sent on forgotten connections, unrelayed
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    @property
    def dropped_sends(self) -> int:
        return len(self.dropped)

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            sockets = list(self._open)
            self._open.clear()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
                self.accepted += 1
            flow = _Flow()
            for source, target, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, target, flow, outbound), daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, flow: _Flow, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    now = time.monotonic()
                    idle = now - flow.last
                    forget = self.forget_idle_after
                    if outbound and forget is not None and idle > forget:
                        flow.forgotten = True
                    if flow.forgotten:
                        self.dropped.append(data)
                        continue
                    flow.last = now
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
