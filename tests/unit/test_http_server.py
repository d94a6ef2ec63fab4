"""fulfill's uvicorn server (``fulfill.http_server.QuickStopServer``) on 127.0.0.1: a stop still
answers what is in flight, runs the application's shutdown after it, cancels what outlives the
graceful timeout, and does not wait for idle keep-alive connections; SIGTERM stops it the same way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from fulfill.http_server import QuickStopServer, bind_socket
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


class _App:
    """Records its lifespan and its requests in order; ``/held`` answers once released."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        self.events.append(f"arrived {path}")
        if path == "/held":
            try:
                while not self.release.is_set():
                    await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                self.events.append("cancelled /held")
                raise
        body = f"answered {path}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.events.append(f"answered {path}")


class _Running:
    def __init__(self, app: _App, **config: Any) -> None:
        self.socket = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = QuickStopServer(uvicorn.Config(app, log_level="warning", lifespan="on", **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started)

    def stopped(self) -> bool:
        self.thread.join(timeout=30)
        return not self.thread.is_alive()


@pytest.fixture
def app() -> Iterator[_App]:
    made = _App()
    yield made
    made.release.set()


def test_a_request_in_flight_is_answered_before_the_application_shuts_down(app: _App) -> None:
    running = _Running(app)
    answers: list[httpx.Response] = []
    client = threading.Thread(target=lambda: answers.append(httpx.get(f"{running.url}/held", timeout=30)))
    client.start()
    wait_for(lambda: "arrived /held" in app.events)

    running.server.request_exit()
    # The request is released only once the server has begun to stop (its listener is closed).
    wait_for(lambda: not running.server.servers[0].is_serving())
    assert "shutdown" not in app.events
    app.release.set()
    client.join(timeout=30)

    assert running.stopped()
    assert [answer.text for answer in answers] == ["answered /held"]
    assert app.events == ["startup", "arrived /held", "answered /held", "shutdown"]


def test_an_idle_keep_alive_connection_does_not_hold_the_stop(app: _App) -> None:
    running = _Running(app)
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert client.get("/first").text == "answered /first"  # its connection stays open, idle

        running.server.request_exit()

        assert running.stopped()
        assert app.events == ["startup", "arrived /first", "answered /first", "shutdown"]
        with pytest.raises(httpx.TransportError):
            client.get("/after")


def test_a_request_that_outlives_the_graceful_timeout_is_cancelled_then_the_application_shuts_down(
    app: _App,
) -> None:
    running = _Running(app, timeout_graceful_shutdown=1)
    outcomes: list[object] = []

    def call() -> None:
        try:
            outcomes.append(httpx.get(f"{running.url}/held", timeout=30))
        except Exception as exc:
            outcomes.append(exc)

    client = threading.Thread(target=call)
    client.start()
    wait_for(lambda: "arrived /held" in app.events)

    running.server.request_exit()  # /held is never released

    assert running.stopped()
    client.join(timeout=30)
    assert app.events == ["startup", "arrived /held", "cancelled /held", "shutdown"]
    assert len(outcomes) == 1
    # uvicorn answers a request whose task it cancelled before any response with its own 500.
    assert isinstance(outcomes[0], httpx.Response), outcomes
    assert outcomes[0].status_code == 500


def test_sigterm_stops_it_after_the_application_shuts_down(tmp_path: Path) -> None:
    marker = tmp_path / "events"
    script = textwrap.dedent(
        f"""
        import uvicorn
        from fulfill.http_server import QuickStopServer, bind_socket

        async def app(scope, receive, send):
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[1]
                with open({str(marker)!r}, "a") as events:
                    events.write(kind + "\\n")
                await send({{"type": message["type"] + ".complete"}})
                if kind == "shutdown":
                    return

        sock = bind_socket("127.0.0.1", 0)
        server = QuickStopServer(uvicorn.Config(app, log_level="warning", lifespan="on"))
        server.run(sockets=[sock])
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        wait_for(lambda: marker.exists() and marker.read_text() == "startup\n")
        process.send_signal(signal.SIGTERM)
        # uvicorn raises the signal again once it has stopped: the process ends as SIGTERM ends it.
        assert process.wait(timeout=30) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    assert marker.read_text() == "startup\nshutdown\n"


def test_only_the_traceback_of_a_request_the_stop_cut_is_left_out_of_the_log() -> None:
    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "uvicorn.error",
            logging.ERROR,
            __file__,
            1,
            "Exception in ASGI application\n",
            None,
            (type(exc), exc, None),
        )

    uvicorn_log = logging.getLogger("uvicorn.error")
    assert not uvicorn_log.filter(
        record(asyncio.CancelledError("Task cancelled, timeout graceful shutdown exceeded"))
    )
    # Anything else the application raises is still logged with its traceback.
    assert uvicorn_log.filter(record(asyncio.CancelledError()))
    assert uvicorn_log.filter(record(RuntimeError("Task cancelled, timeout graceful shutdown exceeded")))
    assert uvicorn_log.filter(
        logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started", None, None)
    )


def test_the_end_of_a_head_is_found_where_the_reads_split_it() -> None:
    from fulfill.http_server import _head_end

    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _head_end(b"", head + b"body") == len(head)
    assert _head_end(b"", head[:-1]) is None
    for split in range(1, 5):  # the empty line straddles the two reads
        first, second = head[:-split], head[-split:]
        assert _head_end(b"", first) is None
        assert _head_end(first[-3:], second + b"body") == split
    assert _head_end(b"x\r\n", b"\r\nbody") == 2
    assert _head_end(b"abc", b"") is None
