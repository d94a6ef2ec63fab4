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

import uvicorn

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
