"""Real HTTP servers on 127.0.0.1 that stand in for the network around fulfill.

* :class:`FaultyProxy` sits between the engine and its MCP gateway (or between the gateway and a
  remote MCP target) and injects what networks do: errors before forwarding, answers lost after
  forwarding (an error status, or the connection dropped), held answers, slow answers.
* :class:`HookServer` is a webhook receiver that hands each POST to a function of the test;
  :class:`WebhookSink` is one that records signed deliveries and can refuse some.
* :class:`HangingSink` is a webhook receiver that never answers (until it is closed), and counts
  the requests it holds at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from fulfill.client import default_limits
from tests.support.serving import serve_in_thread
from tests.support.waiting import wait_for  # noqa: F401  (where the tests have imported it from)


@dataclass
class Fault:
    """What the proxy does to the next matching ``tools/call``."""

    # "status_before" | "drop_before" | "status_after" | "drop_after" | "body_after"
    # | "rewrite_after" | "hold" | "hold_then_drop" | "hold_before" | "delay"
    kind: str
    status: int = 503
    seconds: float = 0.0
    # Only a tools/call whose body holds this (e.g. its intent id); None: the next one.
    match: str | None = None
    # What "body_after" answers (with ``status``) instead of the gateway's answer.
    content: bytes = b""
    # What "rewrite_after" answers: the gateway's JSON answer passed through this.
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Runs when the fault fires, before anything is answered (e.g. to flip a kill switch between
    # a failed try and its retry).
    then: Callable[[], None] | None = None


@dataclass
class ProxyState:
    faults: list[Fault] = field(default_factory=list)
    # The JSON-RPC method of every request, in arrival order, and the bearer token it carried.
    requests: list[tuple[str | None, str]] = field(default_factory=list)
    tool_calls_seen: int = 0
    tool_calls_forwarded: int = 0
    # Every tools/call is held this long before it is forwarded (a slow target).
    latency: float = 0.0
    # (arrival, answered) of every tools/call, by time.time(); and how many were open at once.
    calls: list[tuple[float, float]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    forwarded: threading.Event = field(default_factory=threading.Event)
    held_before: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultyProxy:
    def __init__(self, upstream: str = "") -> None:
        self.upstream = upstream
        self.state = ProxyState()
        # The tool calls not answered yet (their handler's id), with when each arrived.
        self._unanswered: dict[int, float] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy._handle(self, body)

            def do_GET(self) -> None:
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_DELETE(self) -> None:
                self.do_GET()

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = serve_in_thread(self._server)
        # Idle connections dropped before the upstream (a fulfill service: 5 s) drops them.
        self._client = httpx.Client(timeout=60.0, limits=default_limits())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/mcp"

    def add_faults(self, *faults: Fault) -> None:
        with self.state.lock:
            self.state.faults.extend(faults)

    def describe(self) -> str:
        """What the proxy saw, for a failing test's message: every request's method, in order,
        the tool calls seen and forwarded, and the faults not used yet."""
        with self.state.lock:
            methods = [method for method, _token in self.state.requests]
            return (
                f"proxy saw {methods}, tools/call seen {self.state.tool_calls_seen} and forwarded "
                f"{self.state.tool_calls_forwarded}, faults left {[f.kind for f in self.state.faults]}"
            )

    def close(self) -> None:
        self.state.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        fault: Fault | None = None
        try:
            method = json.loads(body).get("method")
        except (ValueError, AttributeError):
            method = None
        authorization = handler.headers.get("Authorization", "")
        with self.state.lock:
            self.state.requests.append((method, authorization.removeprefix("Bearer ")))
        if method != "tools/call":
            self._forward(handler, body, method, None)
            return
        arrived = time.time()
        with self.state.lock:
            self._unanswered[id(handler)] = arrived
            self.state.tool_calls_seen += 1
            fault = next((f for f in self.state.faults if f.match is None or f.match.encode() in body), None)
            if fault is not None:
                self.state.faults.remove(fault)
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        try:
            if self.state.latency:
                threading.Event().wait(self.state.latency)
            self._forward(handler, body, method, fault)
        finally:
            self._answered(handler)  # no answer sent (dropped, or the client went away)

    def _answered(self, handler: BaseHTTPRequestHandler) -> None:
        """The call is no longer in flight: counted right before its answer is sent, since the
        client may make its next call as soon as it has the answer, before this thread runs on."""
        with self.state.lock:
            arrived = self._unanswered.pop(id(handler), None)
            if arrived is not None:
                self.state.in_flight -= 1
                self.state.calls.append((arrived, time.time()))

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes, method: str | None, fault: Fault | None
    ) -> None:
        if fault is not None and fault.then is not None:
            fault.then()
        if fault is not None and fault.kind == "status_before":
            self._reply(handler, fault.status, b'{"error":"injected"}', "application/json")
            return
        if fault is not None and fault.kind == "hold_before":
            self.state.held_before.set()  # the request never reaches the gateway
            self.state.release.wait(timeout=120)
            self._reply(handler, 503, b'{"error":"dropped"}', "application/json")
            return
        if fault is not None and fault.kind == "drop_before":
            handler.close_connection = True  # never forwarded, and no answer: the caller cannot tell
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")}
        upstream = self._client.post(self.upstream, content=body, headers=headers)
        if method == "tools/call":
            with self.state.lock:
                self.state.tool_calls_forwarded += 1
            self.state.forwarded.set()
        if fault is not None and fault.kind == "status_after":
            self._reply(handler, fault.status, b'{"error":"injected after forwarding"}', "application/json")
            return
        if fault is not None and fault.kind == "rewrite_after" and fault.rewrite is not None:
            content = json.dumps(fault.rewrite(upstream.json())).encode()
            self._reply(handler, upstream.status_code, content, "application/json")
            return
        if fault is not None and fault.kind == "body_after":
            self._reply(handler, fault.status, fault.content, "application/json")
            return
        if fault is not None and fault.kind == "drop_after":
            handler.close_connection = True  # the upstream answered; its answer never comes back
            return
        if fault is not None and fault.kind == "hold":
            self.state.release.wait(timeout=120)
        if fault is not None and fault.kind == "hold_then_drop":
            self.state.release.wait(timeout=120)
            handler.close_connection = True  # held until released, then lost
            return
        if fault is not None and fault.kind == "delay":
            threading.Event().wait(fault.seconds)
        self._reply(handler, upstream.status_code, upstream.content, upstream.headers.get("content-type", ""))

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, content: bytes, content_type: str) -> None:
        self._answered(handler)
        try:
            handler.send_response(status)
            if content_type:
                handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:
            pass  # the client went away (a killed process): nothing to answer


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


class HookServer:
    """A webhook receiver on 127.0.0.1: each POST's headers and body go to ``answer``, and the status
    it returns is the reply (with no body). What a receiver records is up to ``answer``."""

    def __init__(self, answer: Callable[[dict[str, str], bytes], int]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(answer(dict(self.headers.items()), body))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = _Server(("127.0.0.1", 0), Handler)
        serve_in_thread(self._server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class WebhookSink(HookServer):
    """Records webhook POSTs; ``refuse`` answers the first N with 500."""

    def __init__(self, refuse: int = 0) -> None:
        self.deliveries: list[Delivery] = []
        self.refused = 0
        self._refuse = refuse
        self.received = threading.Event()
        super().__init__(self._answer)

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        if self.refused < self._refuse:
            self.refused += 1
            return 500
        self.deliveries.append(Delivery(headers, body))
        self.received.set()
        return 204


class HangingSink:
    """A webhook receiver that reads each POST and then holds it without answering until
    :meth:`close`; it counts what arrived and the most requests it held at once."""

    def __init__(self) -> None:
        self.arrived = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink._lock:
                    sink.arrived += 1
                    sink.in_flight += 1
                    sink.max_in_flight = max(sink.max_in_flight, sink.in_flight)
                sink._release.wait(timeout=120)
                with sink._lock:
                    sink.in_flight -= 1
                try:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up long ago

        self._server = _Server(("127.0.0.1", 0), Handler)
        serve_in_thread(self._server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def most_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most of ``times`` inside any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    best = 0
    end = 0
    for start, first in enumerate(ordered):
        while end < len(ordered) and ordered[end] < first + window:
            end += 1
        best = max(best, end - start)
    return best


def run_asgi(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """One request through an ASGI ``app``, with an empty body: the messages it sent back."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent
