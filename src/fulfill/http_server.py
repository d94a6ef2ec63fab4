"""uvicorn's server as fulfill runs it, with nothing of the service: its socket, bound before the
application starts, and a server that stops as soon as it is asked to.

Kept apart from :mod:`fulfill.server` (which builds the service's app) so that a process serving
something else under uvicorn (the local Salesforce, a test's MCP target) imports only uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

_uvicorn_log = logging.getLogger("uvicorn.error")

# What a request still running after ``timeout_graceful_shutdown`` is cancelled with (uvicorn's words).
_CUT = "Task cancelled, timeout graceful shutdown exceeded"


class _CutRequestFilter(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" record, with its traceback, for a request
    the stop cut: that is the stop working, and one line already says how many were cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, asyncio.CancelledError) and exc.args == (_CUT,))


_uvicorn_log.addFilter(_CutRequestFilter())


class ProblemBody(Protocol):
    """Renders the body of a problem answer (``fulfill.api.problems.problem_body``)."""

    def __call__(self, status: int, detail: str, *, slug: str, code: str) -> bytes: ...


def bounded_http_protocol(
    max_header_bytes: int, header_timeout_seconds: float, problem_body: ProblemBody
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (httptools), with a bound on each request's head.

    uvicorn bounds neither the size of a request's head nor the time it takes to arrive: httptools
    keeps a header's value in memory until its line ends, so one connection could send a header of
    gigabytes, and a connection that sends part of a head (or nothing at all) is held for as long as
    its client likes, with or without a token, since nothing of the application runs before the
    head is whole. Here a head larger than ``max_header_bytes`` is answered 431 and one not whole
    ``header_timeout_seconds`` after the connection opened (or after the answer to its previous
    request) is answered 408; either way the connection is closed. A connection that sent nothing
    of a new request in that time is closed without an answer, as uvicorn's keep-alive closes an
    idle one. Once a head is whole, its request is the application's to bound (its body has
    ``FULFILL_REQUEST_BODY_TIMEOUT_SECONDS``). The answers' bodies are ``problem_body``'s, the
    application's own problem documents (this module imports nothing of the application).
    """

    class BoundedHttpToolsProtocol(_BoundedHead):
        max_head_bytes = max_header_bytes
        head_timeout_seconds = header_timeout_seconds

        def _problem_body(self, status: int, detail: str, *, slug: str, code: str) -> bytes:
            return problem_body(status, detail, slug=slug, code=code)

    return BoundedHttpToolsProtocol


class _BoundedHead(HttpToolsProtocol):
    # Set by :func:`bounded_http_protocol` on the class it makes.
    max_head_bytes: int
    head_timeout_seconds: float

    # Whether the next bytes on the connection belong to a request's head; how many of them have
    # arrived, with the last three (a head ends at the first empty line, which a read can split).
    _in_head = True
    _head_bytes = 0
    _head_tail = b""
    _head_deadline: asyncio.TimerHandle | None = None

    def _problem_body(self, status: int, detail: str, *, slug: str, code: str) -> bytes:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # Counted before the parser sees the bytes: it would hold a long header whole. A read
            # that ends the head and goes on with a body counts up to the head's end only.
            end = _head_end(self._head_tail, data)
            self._head_bytes += len(data) if end is None else end
            self._head_tail = (self._head_tail + data)[-3:] if len(data) < 3 else data[-3:]
            if self._head_bytes > self.max_head_bytes:
                self._refuse(
                    431,
                    "headers-too-large",
                    "HEADERS_TOO_LARGE",
                    f"the request's line and headers are larger than {self.max_head_bytes} bytes "
                    "(FULFILL_MAX_HEADER_BYTES)",
                )
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What follows is the next request's head, bounded from the moment this one is answered
        # (a pipelined head that arrives in the same read as this request's end is not counted).
        self._in_head, self._head_bytes, self._head_tail = True, 0, b""
        if self.cycle is not None and self.cycle.response_complete:
            self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_head and not self.transport.is_closing():
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout_seconds, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # nothing of a request: closed as an idle connection is
            self.transport.close()
            return
        self._refuse(
            408,
            "header-timeout",
            "HEADER_TIMEOUT",
            f"the request's line and headers did not arrive whole within {self.head_timeout_seconds:g} s "
            "(FULFILL_REQUEST_HEADER_TIMEOUT_SECONDS)",
        )

    def _refuse(self, status: int, slug: str, code: str, detail: str) -> None:
        """Answer a problem document and close: the application never saw this request."""
        self._disarm_head_deadline()
        self._in_head = False
        body = self._problem_body(status, detail, slug=slug, code=code)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/problem+json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _head_end(tail: bytes, data: bytes) -> int | None:
    """How many bytes of ``data`` belong to the head, if its empty line ends in ``data``;
    ``tail`` is the head's last three bytes before it (the line can straddle two reads). The data
    is searched where it lies, not copied: a read can hold a large body after a small head."""
    if tail:
        joint = (tail + data[:3]).find(b"\r\n\r\n")
        if joint >= 0:
            return joint + 4 - len(tail)
    end = data.find(b"\r\n\r\n")
    return None if end < 0 else end + 4


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class QuickStopServer(uvicorn.Server):
    """uvicorn's server, which stops as soon as it is asked to and its connections are closed.

    uvicorn looks at ``should_exit`` once every 0.1 s, and once it stops it sleeps another 0.1 s
    after asking its connections to close before it waits for them, even when none is open: a
    stop took at least 0.2 s of sleeping before the application's own shutdown began. Here a stop
    (:meth:`request_exit` from any thread, or SIGTERM/SIGINT) wakes the main loop at once, and the
    shutdown waits for the connections themselves, looking every 10 ms. Everything else is
    uvicorn's: the new connections refused first, the open ones asked to finish their response,
    ``timeout_graceful_shutdown`` cancelling what is still running, then the lifespan's shutdown.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _tick_ends: asyncio.Future[None] | None = None
    # Called as the shutdown begins, before the requests in flight are waited for: the application
    # ends the waits it can end (fulfill's agent calls waiting for an outcome).
    on_shutdown: Callable[[], None] | None = None

    def request_exit(self) -> None:
        """Ask the server to stop (from any thread); :meth:`run` returns once it has."""
        self.should_exit = True
        self._wake()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._wake()

    def _wake(self) -> None:
        loop, tick_ends = self._loop, self._tick_ends
        if loop is not None and tick_ends is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed: nothing to wake
                loop.call_soon_threadsafe(_settle, tick_ends)

    async def main_loop(self) -> None:
        # uvicorn's loop (its tick keeps the Date header current and decides when to exit), with
        # the sleep between ticks cut short by a stop.
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            await self._between_ticks(self._loop)
            should_exit = await self.on_tick(counter)

    async def _between_ticks(self, loop: asyncio.AbstractEventLoop) -> None:
        """0.1 s, or less if a stop wakes it: a future settled by a timer, as ``asyncio.sleep``
        is, so an idle server costs what uvicorn's own costs (``asyncio.wait_for`` on an event
        would start a task every tick, and cost twice the CPU)."""
        self._tick_ends = tick_ends = loop.create_future()
        timer = loop.call_later(0.1, _settle, tick_ends)
        try:
            await tick_ends
        finally:
            timer.cancel()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        _uvicorn_log.info("Shutting down")
        if self.on_shutdown is not None:
            self.on_shutdown()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._drained(), timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:
            _uvicorn_log.error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded", len(self.server_state.tasks)
            )
            for task in self.server_state.tasks:
                task.cancel(msg=_CUT)
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _drained(self) -> None:
        """Until every connection has closed and every request's task has ended (or a second
        SIGINT forces the exit)."""
        while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:
            await asyncio.sleep(0.01)
        for server in self.servers:
            await server.wait_closed()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
