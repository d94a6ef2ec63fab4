"""Who may read ``/metrics``, and the separate listener that can serve it.

``/metrics`` names no tenant by default, but it does tell whoever reads it how busy the service
is, which connectors fail and whether a kill switch is on. Two optional protections:

* ``FULFILL_METRICS_TOKEN``: ``/metrics`` answers only ``Authorization: Bearer <token>``
  (compared in constant time); Prometheus sends it with ``authorization: {credentials: …}``.
* ``FULFILL_METRICS_PORT``: ``/metrics`` moves to a listener of its own
  (``FULFILL_METRICS_HOST``, loopback by default) that serves nothing else, and the API's
  listener answers 404 for it, so a load balancer in front of the API never exposes it.

Both together: the separate listener also wants the token.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
CHALLENGE = 'Bearer realm="metrics"'
TOKEN_REQUIRED = "METRICS_TOKEN_REQUIRED"  # noqa: S105 - an error code, not a secret
TOKEN_REQUIRED_DETAIL = "/metrics needs the metrics bearer token (FULFILL_METRICS_TOKEN)"  # noqa: S105 - a message

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def bearer_matches(expected: str, authorization: str | None) -> bool:
    """True when ``authorization`` is ``Bearer <expected>``. The comparison takes the same time
    wherever the first difference is, so the token cannot be guessed a character at a time."""
    if not expected:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def token_problem() -> dict[str, Any]:
    """The body of the 401 (problem details, as every error of the service)."""
    return {
        "type": "/problems/metrics-token",
        "title": "Unauthorized",
        "status": 401,
        "detail": TOKEN_REQUIRED_DETAIL,
        "code": TOKEN_REQUIRED,
        "error": "Unauthorized",
    }


def metrics_wsgi_app(token: str) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI application that serves ``/metrics`` and nothing else."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if environ.get("PATH_INFO") != METRICS_PATH:
            return _answer(
                start_response, "404 Not Found", _problem(404, "Not Found", "NOT_FOUND", "Not found")
            )
        if method not in ("GET", "HEAD"):
            return _answer(
                start_response,
                "405 Method Not Allowed",
                _problem(405, "Method Not Allowed", "METHOD_NOT_ALLOWED", "use GET or HEAD"),
                [("Allow", "GET, HEAD")],
            )
        if not bearer_matches(token, environ.get("HTTP_AUTHORIZATION")):
            body = json.dumps(token_problem()).encode()
            return _answer(start_response, "401 Unauthorized", body, [("WWW-Authenticate", CHALLENGE)])
        output = generate_latest()
        start_response(
            "200 OK",
            [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(output)))],
        )
        return [b"" if method == "HEAD" else output]

    return app


def _problem(status: int, title: str, code: str, detail: str) -> bytes:
    return json.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            "error": title,
        }
    ).encode()


def _answer(
    start_response: StartResponse, status: str, body: bytes, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    start_response(
        status,
        [("Content-Type", "application/problem+json"), ("Content-Length", str(len(body))), *(headers or [])],
    )
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape still being answered never holds up a shutdown

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection cut short (its time ran out, the client left) is the client's doing: one
        debug line. Anything else is logged with its traceback, through logging, never printed."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("metrics listener: a connection from %s ended early: %r", client_address, error)
        else:
            log.exception("metrics listener: a request from %s failed", client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _shut(connection: socket.socket) -> None:
    """Ends a connection whose request's head ran out of time: its blocked read returns."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log (the API's listener writes none either)."""


class MetricsListener:
    """``/metrics`` on a port of its own, served from a thread of this process."""

    def __init__(self, host: str, port: int, token: str, read_timeout_seconds: float) -> None:
        server_class = _Server6 if ":" in host else _Server

        class _Handler(_QuietHandler):
            # A request's line and headers must arrive whole within this time, and no read waits
            # longer: a client that stops sending, or trickles, does not hold its thread (one per
            # connection) for good.
            timeout = read_timeout_seconds
            _cut: threading.Timer | None = None

            def handle(self) -> None:
                self._cut = threading.Timer(read_timeout_seconds, _shut, (self.connection,))
                self._cut.daemon = True
                self._cut.start()
                try:
                    super().handle()
                finally:
                    self._cut.cancel()

            def parse_request(self) -> bool:
                try:
                    return super().parse_request()  # reads the headers
                finally:
                    if self._cut is not None:  # the head is in (or refused): the answer is not timed
                        self._cut.cancel()

        self._server = make_server(
            host, port, metrics_wsgi_app(token), server_class=server_class, handler_class=_Handler
        )
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="fulfill-metrics",
            daemon=True,
        )

    def start(self) -> MetricsListener:
        self._thread.start()
        log.info("/metrics is served on %s:%d only", self.host, self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
