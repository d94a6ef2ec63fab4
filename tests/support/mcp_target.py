"""A remote MCP server for the tests, built with the ``mcp`` SDK, in its own process.

``python -m tests.support.mcp_target --port P [--dedupe] [--undo] [--token T] [--oauth ID:SECRET]
[--stateful] [--sse] [--hostile]`` serves an ``MCPServer`` over Streamable HTTP at ``/mcp`` under uvicorn:
stateless with JSON answers, or with ``--stateful`` as a server of the handshake era that keeps
a session per client (it does not know ``server/discover``; ``initialize`` gives a session id in
``Mcp-Session-Id``; ``DELETE`` ends it), or with ``--sse`` answering as SSE streams.

* ``create_ticket(title, priority="normal")``: writes a ticket (an "effect") and answers with
  ``external_object_refs``. With ``--dedupe`` it deduplicates on the request's ``_meta``
  ``io.fulfill/idempotency-key``: a repeated key answers the first ticket and writes nothing.
* ``add_comment(ticket_id, text)``: answers plain text (no refs, no JSON).
* ``log_note(summary, account_id)``: declares ``account_id``, so it receives it; answers ``{"id"}``.
* with ``--undo``, ``delete_ticket(object_id)``: deletes a ticket (a compensation tool). With
  ``--dedupe`` it deduplicates like any write of a deduplicating server: a key it has seen on
  *any* call (``create_ticket``'s included) answers that call's cached answer and does nothing.

With ``--lookup``, ``lookup_by_key(idempotency_key)``: the ticket ``create_ticket`` wrote under the
key (``external_object_refs``), or ``isError`` ``NOT_FOUND``. ``POST /control/lookup {"mode",
"seconds"?}`` makes its next answers misbehave: ``error`` (``isError`` ``UNAVAILABLE``), ``garbage``
(a success of another shape), ``huge`` (5 MB of text), ``slow`` (answers after ``seconds``).

With ``--hostile``, four more tools:

* ``big_answer(title, size)``: writes an effect, then answers ``size`` bytes of plain text.
* ``fail_with(title, code, message, code_repeat=1)``: answers ``isError`` with the JSON text
  ``{"error_code": code * code_repeat, "error_message": message}``.
* ``close_ticket(ticket_id)``: a ``-> str`` tool returning ``json.dumps({"external_object_refs":
  [...]})``, the obvious way: the SDK answers the JSON as text and as structured content
  ``{"result": "<the JSON>"}``.
* ``reopen_ticket(ticket_id)``: the refs in the JSON text only, no structured content.

The stats list the tickets that exist (``tickets``), the ones deleted (``deleted``), every
idempotency key each tool received (``keys``), the process's id (``pid``) and the variables
``FULFILL_TARGET_*`` of its environment (``environment``).

It counts every call it receives, and the sessions it opened and the ones a client ended with
``DELETE`` (``sessions_opened``, ``sessions_deleted``). ``/control/…`` lets a test read the counts
and arguments (``GET /control/stats``), add a tool at runtime (``POST /control/tools {"name",
"description"?}``, with ``"input_schema"`` to list that schema verbatim), and make the
next ``create_ticket`` answer late after writing (``POST /control/slow {"seconds"}``), or the next
``tools/call`` be answered with a body that is not JSON-RPC (``POST /control/garbage {"body",
"content_type"}``). With
``--token``, ``/mcp`` needs that bearer token; with ``--oauth``, ``/oauth/token`` issues tokens
for the client credentials ``ID:SECRET`` (HTTP Basic) and ``/mcp`` accepts them; with
``--token-padding N`` each token answer carries N more bytes.

:class:`McpTarget` starts and stops such a process. The processes are forked from one server per
test process that has imported this module and the SDK once (``multiprocessing``'s forkserver):
a target's start then costs a fork and uvicorn's start, not the 1.1 s of CPU of importing the
SDK again, and each test still gets a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fulfill_tools.launch import free_port
from tests.support.waiting import wait_for

IDEMPOTENCY_META_KEY = "io.fulfill/idempotency-key"
UVICORN_STARTUP_FAILED = 3
ROOT = Path(__file__).resolve().parents[2]


class McpTarget:
    """The server above, started in a process of its own on 127.0.0.1."""

    def __init__(self, *args: str, log: Path | None = None) -> None:
        self.log = log
        # free_port() keeps the port from other tests' choices until uvicorn binds it; should the
        # bind fail all the same, uvicorn exits with 3 (startup failed), and the target starts
        # again on another port, twice at most.
        for tries_left in (2, 1, 0):
            self.port = free_port()
            arguments = ["--port", str(self.port), *args]
            self.process = _FORKS.Process(
                target=_run_forked, args=(arguments, str(log) if log else None, dict(os.environ)), daemon=True
            )
            self.process.start()
            try:
                wait_for(self._up, timeout=30)
                return
            except AssertionError:
                if tries_left == 0 or self.process.exitcode != UVICORN_STARTUP_FAILED:
                    raise

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def _up(self) -> bool:
        if self.process.exitcode is not None:
            raise AssertionError(f"the MCP target exited with {self.process.exitcode}")
        # Another test's target may hold the port this one chose (both chose it before either
        # bound it): up means this process answers, not merely something on the port.
        try:
            response = httpx.get(f"{self.base}/control/stats", timeout=2)
            return response.status_code == 200 and response.json().get("pid") == self.process.pid
        except (httpx.HTTPError, ValueError):
            return False

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.base}/control/stats", timeout=5).json())

    def calls(self, tool: str = "create_ticket") -> int:
        return int(self.stats()["calls"].get(tool, 0))

    def add_tool(
        self, name: str, input_schema: dict[str, Any] | None = None, description: str | None = None
    ) -> None:
        """Add a tool; with ``input_schema``, ``tools/list`` shows that schema verbatim."""
        body: dict[str, Any] = {"name": name, "description": description}
        if input_schema is not None:
            body["input_schema"] = input_schema
        assert httpx.post(f"{self.base}/control/tools", json=body, timeout=5).status_code == 200

    def garbage(self, body: str, content_type: str = "application/json") -> None:
        """The next ``tools/call`` is answered HTTP 200 with ``body`` (it never reaches a tool)."""
        answer = {"body": body, "content_type": content_type}
        assert httpx.post(f"{self.base}/control/garbage", json=answer, timeout=5).status_code == 200

    def slow(self, seconds: float) -> None:
        assert (
            httpx.post(f"{self.base}/control/slow", json={"seconds": seconds}, timeout=5).status_code == 200
        )

    def lookup_mode(self, mode: str, seconds: float = 0.0) -> None:
        """How ``lookup_by_key`` answers from now on (``--lookup``): normal, error, garbage, huge, slow."""
        body = {"mode": mode, "seconds": seconds}
        assert httpx.post(f"{self.base}/control/lookup", json=body, timeout=5).status_code == 200

    def stop(self) -> None:
        if self.process.exitcode is None:
            self.process.terminate()
            self.process.join(timeout=10)
            if self.process.exitcode is None:
                self.process.kill()
                self.process.join(timeout=10)


def _run_forked(arguments: list[str], log: str | None, environment: dict[str, str]) -> None:
    """A target's process, forked from the forkserver: what ``python -m tests.support.mcp_target``
    would be, started with the test's environment and its output in ``log`` (or nowhere)."""
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(ROOT)
    out = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    main(arguments)


# One forkserver per test process, started by the first target: it imports this module (with the
# SDK, Starlette and uvicorn) once, and every target is forked from it, single-threaded.
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["uvicorn", "fulfill.http_server", "tests.support.mcp_target"])


# --- the server (runs in the target's process) ---------------------------------------------------


def build_app(
    *,
    dedupe: bool,
    token: str | None,
    oauth: str | None,
    token_lifetime: int,
    undo: bool = False,
    stateful: bool = False,
    sse: bool = False,
    hostile: bool = False,
    token_padding: int = 0,
    lookup: bool = False,
) -> Any:
    lock = threading.Lock()
    calls: Counter[str] = Counter()
    state: dict[str, Any] = {
        "effects": 0,
        "tickets": {},
        "arguments": {},
        "meta": {},
        "slow": 0.0,
        "token_requests": 0,
        "unauthorized": 0,
        "issued": set(),
        "answers": {},  # key -> the first answer given to it (with --dedupe)
        "live": [],  # the tickets that exist
        "deleted": [],  # the tickets delete_ticket deleted, in order
        "keys": {},  # tool -> every idempotency key it received
        "sessions_opened": 0,
        "sessions_deleted": 0,
        "lookup_mode": "normal",
        "lookup_seconds": 0.0,
    }
    server = MCPServer("tickets-test")

    def seen(tool: str, arguments: dict[str, Any], ctx: Context) -> str:
        meta = dict(ctx.request_context.meta or {})
        with lock:
            calls[tool] += 1
            state["arguments"][tool] = arguments
            state["meta"][tool] = {
                k: v for k, v in meta.items() if not k.startswith("io.modelcontextprotocol/")
            }
            state["keys"].setdefault(tool, []).append(meta.get(IDEMPOTENCY_META_KEY))
        return str(meta.get(IDEMPOTENCY_META_KEY, ""))

    @server.tool(name="create_ticket", description="Create a ticket in the test ticket system.")
    async def create_ticket(title: str, ctx: Context, priority: str = "normal") -> dict[str, Any]:
        key = seen("create_ticket", {"title": title, "priority": priority}, ctx)
        with lock:
            ticket = state["tickets"].get(key) if dedupe and key else None
            if ticket is None:
                state["effects"] += 1
                ticket = f"T-{state['effects']}"
                if key:
                    state["tickets"][key] = ticket
                state["live"].append(ticket)
            slow, state["slow"] = state["slow"], 0.0
            answer = {
                "external_object_refs": [{"system": "TICKETS", "object_type": "Ticket", "object_id": ticket}]
            }
            if dedupe and key:
                state["answers"].setdefault(key, answer)
        if slow:
            await asyncio.sleep(slow)  # written already; the answer comes late
        return answer

    if undo:

        @server.tool(name="delete_ticket", description="Delete a ticket (undoes create_ticket).")
        def delete_ticket(object_id: str, ctx: Context) -> dict[str, Any]:
            key = seen("delete_ticket", {"object_id": object_id}, ctx)
            with lock:
                cached = state["answers"].get(key) if dedupe and key else None
                if cached is not None:
                    return dict(cached)  # a key it has seen: the first answer, nothing done
                deleted = object_id in state["live"]
                if deleted:
                    state["live"].remove(object_id)
                    state["deleted"].append(object_id)
                answer = {"id": object_id, "deleted": deleted}
                if dedupe and key:
                    state["answers"][key] = answer
            return answer

    if lookup:

        @server.tool(name="lookup_by_key", description="Find the ticket written under an idempotency key.")
        async def lookup_by_key(idempotency_key: str, ctx: Context) -> CallToolResult:
            seen("lookup_by_key", {"idempotency_key": idempotency_key}, ctx)
            with lock:
                mode, seconds = state["lookup_mode"], state["lookup_seconds"]
                ticket = state["tickets"].get(idempotency_key)
            if mode == "slow":
                await asyncio.sleep(seconds)
            if mode == "error":
                text = json.dumps({"error_code": "UNAVAILABLE", "error_message": "the index is rebuilding"})
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
            if mode == "garbage":
                text = json.dumps({"found": "maybe", "tickets": "several"})
                return CallToolResult(content=[TextContent(type="text", text=text)])
            if mode == "huge":
                return CallToolResult(content=[TextContent(type="text", text="x" * (5 * 1024 * 1024))])
            if ticket is None:
                text = json.dumps({"error_code": "NOT_FOUND", "error_message": "no ticket has this key"})
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
            refs = [{"system": "TICKETS", "object_type": "Ticket", "object_id": ticket}]
            payload = {"external_object_refs": refs}
            return CallToolResult(
                content=[TextContent(type="text", text=json.dumps(payload))], structured_content=payload
            )

    @server.tool(name="add_comment", description="Comment on a ticket.")
    def add_comment(ticket_id: str, text: str, ctx: Context) -> str:
        seen("add_comment", {"ticket_id": ticket_id, "text": text}, ctx)
        return "comment added"

    @server.tool(name="log_note", description="Log a note on an account.")
    def log_note(summary: str, account_id: str, ctx: Context) -> dict[str, Any]:
        seen("log_note", {"summary": summary, "account_id": account_id}, ctx)
        return {"id": f"N-{calls['log_note']}"}

    def big_answer(title: str, size: int, ctx: Context) -> str:
        seen("big_answer", {"title": title, "size": size}, ctx)
        with lock:
            state["effects"] += 1
        return "x" * size

    def fail_with(title: str, code: str, message: str, ctx: Context, code_repeat: int = 1) -> CallToolResult:
        seen("fail_with", {"title": title, "code": code[:100]}, ctx)
        text = json.dumps({"error_code": code * code_repeat, "error_message": message})
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)

    def close_ticket(ticket_id: str, ctx: Context) -> str:
        # The obvious way to answer refs from a ``-> str`` tool: the SDK sends the JSON as text
        # and as structured content ``{"result": "<that JSON>"}``.
        seen("close_ticket", {"ticket_id": ticket_id}, ctx)
        ref = {
            "object_type": "Ticket",
            "object_id": ticket_id,
            "object_url": f"https://tickets.test/{ticket_id}",
        }
        return json.dumps({"external_object_refs": [ref]})

    def reopen_ticket(ticket_id: str, ctx: Context) -> CallToolResult:
        # Refs only in the JSON text, no structured content at all.
        seen("reopen_ticket", {"ticket_id": ticket_id}, ctx)
        text = json.dumps({"external_object_refs": [{"object_type": "Ticket", "object_id": ticket_id}]})
        return CallToolResult(content=[TextContent(type="text", text=text)])

    if hostile:
        server.add_tool(close_ticket, name="close_ticket", description="Close a ticket (refs as JSON text).")
        server.add_tool(
            reopen_ticket, name="reopen_ticket", description="Reopen a ticket (refs in text only)."
        )
        server.add_tool(big_answer, name="big_answer", description="Write, then answer a large plain text.")
        server.add_tool(fail_with, name="fail_with", description="Answer a tool error with the given code.")

    app = server.streamable_http_app(
        stateless_http=not stateful,
        json_response=not sse,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def stats(_request: Request) -> JSONResponse:
        with lock:
            return JSONResponse(
                {
                    "calls": dict(calls),
                    "effects": state["effects"],
                    "arguments": state["arguments"],
                    "meta": state["meta"],
                    "token_requests": state["token_requests"],
                    "unauthorized": state["unauthorized"],
                    "tickets": list(state["live"]),
                    "deleted": list(state["deleted"]),
                    "keys": state["keys"],
                    "sessions_opened": state["sessions_opened"],
                    "sessions_deleted": state["sessions_deleted"],
                    "pid": os.getpid(),
                    # What the test's environment gave it (the tests' own probe variables only).
                    "environment": {k: v for k, v in os.environ.items() if k.startswith("FULFILL_TARGET_")},
                }
            )

    async def add_tool(request: Request) -> JSONResponse:
        body = await request.json()
        name = str(body["name"])

        def added(ticket_id: str, ctx: Context) -> dict[str, Any]:
            seen(name, {"ticket_id": ticket_id}, ctx)
            return {"id": ticket_id}

        server.add_tool(added, name=name, description=body.get("description") or f"{name} (added at runtime)")
        if isinstance(body.get("input_schema"), dict):
            # Listed as given, whatever it says: a target's schema is not fulfill's to trust.
            tool = server._tool_manager.get_tool(name)
            assert tool is not None
            tool.parameters = body["input_schema"]
        return JSONResponse({"added": name})

    async def garbage(request: Request) -> JSONResponse:
        body = await request.json()
        with lock:
            state["garbage"] = (str(body["content_type"]), str(body["body"]))
        return JSONResponse({"garbage": True})

    async def lookup_mode(request: Request) -> JSONResponse:
        body = await request.json()
        with lock:
            state["lookup_mode"] = str(body["mode"])
            state["lookup_seconds"] = float(body.get("seconds", 0.0))
        return JSONResponse({"mode": state["lookup_mode"]})

    async def slow(request: Request) -> JSONResponse:
        with lock:
            state["slow"] = float((await request.json())["seconds"])
        return JSONResponse({"slow": state["slow"]})

    async def issue_token(request: Request) -> JSONResponse:
        with lock:
            state["token_requests"] += 1
            number = state["token_requests"]
        form = await request.form()
        expected = "Basic " + base64.b64encode((oauth or "").encode()).decode()
        if not oauth or request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        issued = f"oauth-access-{number}"
        with lock:
            state["issued"].add(issued)
        answer = {"access_token": issued, "token_type": "Bearer", "expires_in": token_lifetime}
        return JSONResponse({**answer, **({"padding": "p" * token_padding} if token_padding else {})})

    app.router.routes.extend(
        [
            Route("/control/stats", stats, methods=["GET"]),
            Route("/control/tools", add_tool, methods=["POST"]),
            Route("/control/slow", slow, methods=["POST"]),
            Route("/control/lookup", lookup_mode, methods=["POST"]),
            Route("/control/garbage", garbage, methods=["POST"]),
            Route("/oauth/token", issue_token, methods=["POST"]),
        ]
    )

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/mcp") and (token or oauth):
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            presented = headers.get("authorization", "").removeprefix("Bearer ")
            with lock:
                valid = presented == token or presented in state["issued"]
                if not valid:
                    state["unauthorized"] += 1
            if not valid:
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        if scope["type"] != "http" or not scope["path"].startswith("/mcp"):
            await app(scope, receive, send)
            return
        deleting = scope["method"] == "DELETE"
        if state.get("garbage") and scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            if b'"tools/call"' in body:
                with lock:
                    calls["garbage"] += 1
                    content_type, text = state.pop("garbage")
                headers = [(b"content-type", content_type.encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": text.encode()})
                return
            replayed_once = False

            async def replay_once() -> Any:
                nonlocal replayed_once
                if not replayed_once:
                    replayed_once = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            receive = replay_once
        if stateful and scope["method"] == "POST":
            # A stateful server of the handshake era (as most deployed ones are): it does not know
            # ``server/discover``, so clients fall back to ``initialize`` and get a session.
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            if b'"server/discover"' in body:
                request_id = json.loads(body).get("id")
                error = {"code": -32601, "message": "Method not found"}
                await JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error})(scope, receive, send)
                return
            replayed = False

            async def replay() -> Any:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            receive = replay

        async def counting(message: Any) -> None:
            # A session is opened when an answer names a new session id, ended by a DELETE's 200.
            if message["type"] == "http.response.start":
                headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
                with lock:
                    if deleting and message["status"] == 200:
                        state["sessions_deleted"] += 1
                    elif not deleting and "mcp-session-id" in headers:
                        sessions = state.setdefault("session_ids", set())
                        if headers["mcp-session-id"] not in sessions:
                            sessions.add(headers["mcp-session-id"])
                            state["sessions_opened"] += 1
            await send(message)

        await app(scope, receive, counting)

    return guarded


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from fulfill.http_server import QuickStopServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dedupe", action="store_true")
    parser.add_argument("--undo", action="store_true")
    parser.add_argument("--token")
    parser.add_argument("--oauth")
    parser.add_argument("--token-lifetime", type=int, default=3600)
    parser.add_argument("--stateful", action="store_true")
    parser.add_argument("--sse", action="store_true")
    parser.add_argument("--hostile", action="store_true")
    parser.add_argument("--token-padding", type=int, default=0)
    parser.add_argument("--lookup", action="store_true")
    args = parser.parse_args(argv)
    app = build_app(
        dedupe=args.dedupe,
        token=args.token,
        oauth=args.oauth,
        token_lifetime=args.token_lifetime,
        undo=args.undo,
        stateful=args.stateful,
        sse=args.sse,
        hostile=args.hostile,
        token_padding=args.token_padding,
        lookup=args.lookup,
    )
    # fulfill's uvicorn server: a SIGTERM from McpTarget.stop ends it without uvicorn's 0.2 s of sleeps.
    server = QuickStopServer(
        uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")
    )
    server.run()
    if not server.started:
        sys.exit(UVICORN_STARTUP_FAILED)  # as uvicorn.run exits: McpTarget tries another port


if __name__ == "__main__":
    main()
