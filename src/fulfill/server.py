"""Running the ASGI app under uvicorn on a socket bound before start-up.

The socket is bound (and listening) before the application starts, so that workflows DBOS
recovers at launch can already reach this process's own ``/mcp`` gateway: their connections wait
in the listen backlog until the server accepts them.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from fulfill.api.app import create_app
from fulfill.api.problems import problem_body
from fulfill.config import Settings
from fulfill.http_server import QuickStopServer, bind_socket, bounded_http_protocol
from fulfill.logging_setup import logging_configured
from fulfill.service import Service


class QuietStartupFailure:
    """Keeps a failed start-up's traceback out of the log.

    Starlette hands uvicorn the whole traceback of an exception raised while the application starts
    (a database that cannot be reached, say), and uvicorn logs it. This sends uvicorn no text
    instead; the exception stays in ``app.state.startup_error`` for ``fulfill serve`` to explain in
    one line.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}
            await send(message)

        await self.app(scope, receive, quiet_send)


def build_server(
    settings: Settings, service: Service | None = None, *, verbose_startup_errors: bool = True
) -> tuple[QuickStopServer, socket.socket, Settings]:
    """Bind the socket, then build the app with the port actually bound (port 0 picks a free one)."""
    sock = bind_socket(settings.host, settings.port)
    bound = settings.model_copy(update={"port": sock.getsockname()[1]})
    service = service or Service(bound)
    app = create_app(service)
    config = uvicorn.Config(
        app if verbose_startup_errors else QuietStartupFailure(app),
        log_level=bound.log_level.lower(),
        # Once the process's logging is set up (format, redaction), uvicorn's lines go through it.
        log_config=None if logging_configured() else LOGGING_CONFIG,
        access_log=False,
        lifespan="on",
        http=bounded_http_protocol(
            bound.max_header_bytes, bound.request_header_timeout_seconds, problem_body
        ),
        timeout_graceful_shutdown=bound.shutdown_grace_seconds,
    )
    server = QuickStopServer(config)
    server.on_shutdown = service.stopping.set
    return server, sock, bound


def startup_error(server: uvicorn.Server) -> BaseException | None:
    """The exception that stopped the application's start-up, if one did."""
    wrapper: Any = server.config.app
    app = getattr(wrapper, "app", wrapper)
    error = getattr(getattr(app, "state", None), "startup_error", None)
    return error if isinstance(error, BaseException) else None


class BackgroundServer:
    """A fulfill server in a thread of this process (the demo and the tests use it)."""

    def __init__(self, settings: Settings, service: Service | None = None) -> None:
        self.server, self._socket, self.settings = build_server(settings, service)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, name="fulfill-http", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fulfill server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.request_exit()
        self._thread.join(timeout=30)
        self._socket.close()
