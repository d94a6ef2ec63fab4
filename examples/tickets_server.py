"""A complete MCP server that fulfill can act on: a small ticket system, built on the ``mcp`` SDK.

    TICKETS_TOKEN=tickets-dev-token .venv/bin/python examples/tickets_server.py --port 8901

serves MCP over Streamable HTTP at ``http://127.0.0.1:8901/mcp`` (every request must carry
``Authorization: Bearer $TICKETS_TOKEN`` when that variable is set) and the tickets as JSON at
``GET /tickets``, to see what fulfill wrote and undid. Everything is kept in memory.

Two tools, written the way fulfill expects of a target (README, "Act on any MCP server"):

* ``create_ticket(title, priority="normal")`` writes a ticket and answers
  ``{"external_object_refs": [{"object_type": "Ticket", "object_id": "T-1"}]}``, which fulfill
  records as the execution's refs (``system`` becomes ``MCP:tickets``). It deduplicates on the
  idempotency key fulfill sends in the request's ``_meta`` (``io.fulfill/idempotency-key``): a
  repeated key answers the first ticket and writes nothing, so it is registered with
  ``"deduplicates": true``.
* ``close_ticket(object_id)`` undoes a create: the compensation tool fulfill calls, once per ref
  the write returned, when an intent is cancelled after its write (the registry's
  ``compensation_strategy: AUTOMATIC`` and ``compensation_tool_name: tickets.close_ticket``). Its
  calls carry their own idempotency key; it deduplicates on that too.
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

IDEMPOTENCY_META_KEY = "io.fulfill/idempotency-key"


class Tickets:
    """The ticket store: every ticket, and the first answer given to each idempotency key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tickets: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, dict[str, Any]] = {}

    def create(self, key: str, title: str, priority: str) -> dict[str, Any]:
        with self.lock:
            if key in self.answers:
                return self.answers[key]  # a retry of a write that happened: the same ticket
            ticket_id = f"T-{len(self.tickets) + 1}"
            self.tickets[ticket_id] = {"id": ticket_id, "title": title, "priority": priority, "state": "open"}
            answer = {"external_object_refs": [{"object_type": "Ticket", "object_id": ticket_id}]}
            if key:
                self.answers[key] = answer
            return answer

    def close(self, key: str, object_id: str) -> dict[str, Any]:
        with self.lock:
            if key in self.answers:
                return self.answers[key]
            ticket = self.tickets.get(object_id)
            closed = ticket is not None and ticket["state"] == "open"
            if ticket is not None:
                ticket["state"] = "closed"
            answer = {"id": object_id, "closed": closed}
            if key:
                self.answers[key] = answer
            return answer


def idempotency_key(ctx: Context) -> str:
    meta = ctx.request_context.meta
    return str((meta or {}).get(IDEMPOTENCY_META_KEY, ""))


def build_app(token: str | None) -> ASGIApp:
    store = Tickets()
    server = MCPServer("tickets")

    @server.tool(description="Create a ticket. Answers its ref in external_object_refs.")
    def create_ticket(title: str, ctx: Context, priority: str = "normal") -> dict[str, Any]:
        return store.create(idempotency_key(ctx), title, priority)

    @server.tool(description="Close a ticket: undoes create_ticket (fulfill's compensation call).")
    def close_ticket(object_id: str, ctx: Context) -> dict[str, Any]:
        return store.close(idempotency_key(ctx), object_id)

    mcp_app = server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        # A local example on 127.0.0.1: fulfill connects by IP address, not by a host name.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def list_tickets(_request: Request) -> JSONResponse:
        with store.lock:
            return JSONResponse(list(store.tickets.values()))

    mcp_app.router.routes.append(Route("/tickets", list_tickets))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if token and scope["type"] == "http" and path.startswith("/mcp"):
            headers = dict(scope.get("headers", []))
            if headers.get(b"authorization", b"").decode() != f"Bearer {token}":
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        await mcp_app(scope, receive, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8901)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    app = build_app(os.environ.get("TICKETS_TOKEN") or None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
