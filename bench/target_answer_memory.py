"""Memory of the service when a gateway target answers a huge ``tools/call``.

A minimal MCP server of the handshake era (an ASGI app on 127.0.0.1, in this process) lists one
tool, ``big``, and answers its call with a JSON-RPC result whose text is ``--megabytes`` MB,
generated while it streams (the server itself never holds it). ``fulfill serve`` runs in its own
process on a temporary SQLite database; the benchmark registers the server as a target, maps an
action type to ``big``, runs one intent, and reports its recorded status and error code, and the
service's resident memory before the call and at its peak (``VmHWM``).

    python -m bench.target_answer_memory --megabytes 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from fulfill.client import FulfillClient
from fulfill.config import Settings
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES, Scope
from fulfill.tokens import mint_token
from fulfill_tools.launch import ServiceGroup, free_port

SECRET = "bench-secret-0123456789abcdef0123456789"
SCOPES = [*INTENT_CLIENT_SCOPES, Scope.PLATFORM_ADMIN]
_CHUNK = b"x" * (1024 * 1024)


class HugeAnswerTarget:
    """Just enough MCP (2025-06-18, JSON answers) to be listed and called."""

    def __init__(self, megabytes: int) -> None:
        self.megabytes = megabytes
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = "startup" if message["type"] == "lifespan.startup" else "shutdown"
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["method"] != "POST":
            await _send(send, 405, b"")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        method, request_id = request.get("method"), request.get("id")
        if request_id is None:
            await _send(send, 202, b"")
        elif method == "initialize":
            await _json(send, request_id, _INITIALIZED)
        elif method == "tools/list":
            await _json(send, request_id, {"tools": [_TOOL]})
        elif method == "tools/call":
            self.calls += 1
            await self._huge(send, request_id)
        else:
            error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "not found"}}
            await _send(send, 200, json.dumps(error).encode())

    async def _huge(self, send: Any, request_id: Any) -> None:
        head = json.dumps({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text"}]}})
        opening = head[: head.rindex('"}]}}')] + '", "text": "'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        try:
            await send({"type": "http.response.body", "body": opening.encode(), "more_body": True})
            for _ in range(self.megabytes):
                await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": b'"}], "isError": false}}'})
        except OSError:
            pass  # the client stopped reading


_INITIALIZED = {
    "protocolVersion": "2025-06-18",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "huge-answers", "version": "1"},
}
_TOOL = {
    "name": "big",
    "description": "Answers a huge text.",
    "inputSchema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
}


async def _json(send: Any, request_id: Any, result: dict[str, Any]) -> None:
    await _send(send, 200, json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode())


async def _send(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def run(megabytes: int, max_response_bytes: int | None) -> dict[str, Any]:
    target = HugeAnswerTarget(megabytes)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(target, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    extra = {
        "FULFILL_GATEWAY_EGRESS_ALLOW": "127.0.0.1",
        "FULFILL_GATEWAY_CALL_TIMEOUT_SECONDS": "240",
    }
    if max_response_bytes is not None:
        extra["FULFILL_GATEWAY_MAX_RESPONSE_BYTES"] = str(max_response_bytes)
    with tempfile.TemporaryDirectory() as directory:
        group = ServiceGroup(
            database_url=f"sqlite:///{directory}/fulfill.db",
            workers=0,
            secret=SECRET,
            directory=Path(directory),
            extra_env=extra,
        ).start()
        try:
            pid = group.pids()["all"]
            token = mint_token(Settings(jwt_secret=SECRET), tenant_id="bench", scopes=SCOPES)
            with FulfillClient(group.api_url, token, timeout=60) as api:
                api.add_target({"name": "huge", "url": f"http://127.0.0.1:{port}/mcp"})
                api.register_version(
                    {
                        "action_type": "HUGE_ANSWER",
                        "tool_name": "huge.big",
                        "parameter_mapping": {"title": {"toolParam": "title", "required": True}},
                    }
                )
                before = _memory_kib(pid, "VmRSS")
                intent = api.create_intent(
                    {"action_type": "HUGE_ANSWER", "account_id": "a1", "parameters": {"title": "x"}}
                )
                intent_id = intent.value.action_intent_id
                approver = mint_token(
                    Settings(jwt_secret=SECRET), tenant_id="bench", scopes=SCOPES, subject="bench-approver"
                )
                with FulfillClient(group.api_url, approver, timeout=60) as reviewer:
                    reviewer.approve(intent_id)  # nobody approves their own proposal
                status: dict[str, Any] = {}
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    view = api.execution_status(intent_id)
                    status = view.model_dump(mode="json", exclude_none=True)
                    if view.status in ("SUCCEEDED", "FAILED") and view.attempt_count is not None:
                        break
                    time.sleep(0.2)
                peak = _memory_kib(pid, "VmHWM")
        finally:
            group.stop()
            server.should_exit = True
    return {
        "answer_megabytes": megabytes,
        "max_response_bytes": max_response_bytes,
        "status": status.get("status"),
        "error_code": status.get("error_code"),
        "tool_calls": target.calls,
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=300)
    parser.add_argument("--max-response-bytes", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.megabytes, args.max_response_bytes), indent=2))


if __name__ == "__main__":
    main()
