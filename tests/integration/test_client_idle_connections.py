"""The API client drops an idle connection before the service's HTTP server would (uvicorn closes
one idle for 5 s), so that no call goes out on a connection the server is closing at that moment:
such a call failed with "connection reset by peer". A stand-in server on 127.0.0.1 that never
closes a connection counts the connections the client opens."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fulfill.cli.remote import Service
from fulfill.client import IDLE_CONNECTION_SECONDS, ApiError, AsyncFulfillClient, FulfillClient
from fulfill.config import Settings
from fulfill.server import build_server
from tests.support.harness import TEST_SECRET
from tests.support.serving import serve_in_thread

pytestmark = pytest.mark.backend_free


class _Counting(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    lock = threading.Lock()
    hold_seconds = 0.0  # how long each answer waits (so that calls overlap)
    # Set: each answer waits until this many requests are in flight, so that they certainly overlap.
    together: threading.Barrier | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connection stays open for the next request
    server: _Counting

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self) -> None:
        if self.server.together is not None:
            self.server.together.wait()
        time.sleep(self.server.hold_seconds)
        # Whatever is asked: the problem a service answers for an unknown intent.
        body = json.dumps({"type": "about:blank", "title": "Not Found", "status": 404}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Counting]:
    running = _Counting(("127.0.0.1", 0), _Handler)
    serve_in_thread(running)
    yield running
    running.shutdown()
    running.server_close()


def _url(server: _Counting) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_the_idle_time_is_below_the_servers(tmp_path: Path) -> None:
    # Port 0: the default 8080 may be held by another test (this file runs in both passes, side
    # by side), and the bind would fail.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'fulfill.db'}", jwt_secret=TEST_SECRET, port=0)
    server, sock, _ = build_server(settings)  # as `fulfill serve` builds it, not started
    sock.close()
    assert server.config.timeout_keep_alive - 1 > IDLE_CONNECTION_SECONDS  # a second to spare, at least


def test_a_connection_is_reused_while_fresh_and_dropped_once_idle(server: _Counting) -> None:
    with FulfillClient(_url(server), "token") as api:
        for _ in range(2):
            with pytest.raises(ApiError):
                api.get_intent("ai_unknown")
        assert server.connections == 1  # the second call went out on the first one's connection
        time.sleep(IDLE_CONNECTION_SECONDS + 0.5)
        with pytest.raises(ApiError):
            api.get_intent("ai_unknown")
    assert server.connections == 2  # idle past the client's limit: a new connection


def test_the_client_keeps_httpx_default_bounds_of_connections_kept_idle(server: _Counting) -> None:
    """25 calls at once open 25 connections; 20 are kept for the next calls (httpx's default),
    so 25 more at once open 5 new ones. The server answers none of a round until all 25 are in
    flight: with a fixed pause instead, a busy machine could start a round's calls so far apart
    that no more than 20 overlapped, and they all went out on kept connections."""
    server.together = threading.Barrier(25, timeout=30)

    def call(api: FulfillClient) -> None:
        with pytest.raises(ApiError):
            api.get_intent("ai_unknown")

    with FulfillClient(_url(server), "token") as api, ThreadPoolExecutor(25) as pool:
        list(pool.map(lambda _: call(api), range(25)))
        assert server.connections == 25
        list(pool.map(lambda _: call(api), range(25)))
    assert server.connections == 30


def test_the_async_client_drops_idle_connections_too(server: _Counting) -> None:
    async def call(api: AsyncFulfillClient) -> None:
        with pytest.raises(ApiError):
            await api.get_intent("ai_unknown")

    async def calls() -> None:
        async with AsyncFulfillClient(_url(server), "token") as api:
            await call(api)
            await call(api)
            assert server.connections == 1
            await asyncio.sleep(IDLE_CONNECTION_SECONDS + 0.5)
            await call(api)

    asyncio.run(calls())
    assert server.connections == 2


def test_the_command_lines_client_drops_idle_connections_too(server: _Counting) -> None:
    service = Service(_url(server))  # what `fulfill … --url` talks to the service through
    try:
        for pause in (0.0, 0.0, IDLE_CONNECTION_SECONDS + 0.5):
            time.sleep(pause)
            with pytest.raises(ApiError):
                service.client("token").get_intent("ai_unknown")
            if pause == 0.0:
                assert server.connections == 1
    finally:
        service.close()
    assert server.connections == 2
