"""The gateway remembers the protocol version a target adopted and stops probing it before every
call; a deduplicating target that refuses the remembered version is probed again within the same
call, any other refusal of it stands and forgets it, and a target that only speaks the
``initialize`` handshake keeps it for every exchange.

The target is a real MCP server over HTTP on 127.0.0.1 (the SDK's ``MCPServer``, stateless, JSON
answers) behind a small ASGI wrapper that records each JSON-RPC method it receives and, when told
to, answers like a target that changed: the pinned version refused (``-32022``), a bare HTTP 400,
or no ``server/discover`` at all (a handshake-era server).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import mcp_types as types
import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import LATEST_MODERN_VERSION

from fulfill.domain.egress import EgressAllowList
from fulfill.domain.targets import TargetAuthType, TargetAuthView
from fulfill.gateway.remote import RemoteTargets, TargetEndpoint
from fulfill_tools.launch import free_port


class RecordingTarget:
    """A stateless MCP target with one tool, ``create``, that counts the calls it ran."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.ran: list[str] = []
        # What the next tools/call gets instead of reaching the server: "refuse-version", "400".
        self.refuse_next_call: str | None = None
        # A handshake-era server: server/discover is not a method it knows.
        self.no_discover = False
        # Registered as a target that deduplicates on the idempotency key.
        self.deduplicates = False
        # With OAuth client credentials: /oauth/token issues tokens, /mcp accepts only the last.
        self.oauth = False
        self.tokens_issued = 0
        server = MCPServer("recording-target", log_level="WARNING")

        @server.tool(name="create", description="Creates a record once per call it runs.")
        async def create(title: str) -> dict[str, list[dict[str, str]]]:
            self.ran.append(title)
            return {"external_object_refs": [{"object_type": "Record", "object_id": title}]}

        app = server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

        async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["method"] != "POST":
                await app(scope, receive, send)
                return
            if scope["path"] == "/oauth/token":
                self.tokens_issued += 1
                await _json(send, 200, {"access_token": f"token-{self.tokens_issued}", "expires_in": 600})
                return
            if self.oauth:
                authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
                if authorization != f"Bearer token-{self.tokens_issued}":
                    self.methods.append("401")
                    await _json(send, 401, {"error": "invalid_token"})
                    return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            request = json.loads(body)
            method = request.get("method", "")
            self.methods.append(method)
            if method == "server/discover" and self.no_discover:
                await _json_rpc_error(send, request, types.METHOD_NOT_FOUND, "Method not found", status=200)
                return
            if method == "tools/call" and self.refuse_next_call is not None:
                refusal, self.refuse_next_call = self.refuse_next_call, None
                if refusal == "refuse-version":
                    await _json_rpc_error(
                        send,
                        request,
                        types.UNSUPPORTED_PROTOCOL_VERSION,
                        "Unsupported protocol version",
                        status=400,
                        data={"supported": [LATEST_MODERN_VERSION], "requested": "x"},
                    )
                else:
                    await _json_rpc_error(send, request, types.INVALID_REQUEST, "Bad Request", status=400)
                return

            sent = False

            async def replay() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)

        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(recording, host="127.0.0.1", port=self.port, log_level="warning")
        )
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def endpoint(self) -> TargetEndpoint:
        if not self.oauth:
            return TargetEndpoint(
                name="records",
                url=f"http://127.0.0.1:{self.port}/mcp",
                auth=TargetAuthView(),
                deduplicates=self.deduplicates,
            )
        return TargetEndpoint(
            name="records",
            url=f"http://127.0.0.1:{self.port}/mcp",
            auth=TargetAuthView(
                type=TargetAuthType.OAUTH_CLIENT_CREDENTIALS,
                token_url=f"http://127.0.0.1:{self.port}/oauth/token",
                client_id="svc",
            ),
            secret={"client_secret": "svc-secret"},
            deduplicates=self.deduplicates,
        )

    def stop(self) -> None:
        self._server.should_exit = True


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _json_rpc_error(
    send: Any, request: dict[str, Any], code: int, message: str, *, status: int, data: Any = None
) -> None:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    await _json(send, status, {"jsonrpc": "2.0", "id": request.get("id"), "error": error})


@pytest.fixture
def target() -> Iterator[RecordingTarget]:
    server = RecordingTarget()
    yield server
    server.stop()


def _call(remote: RemoteTargets, target: RecordingTarget, title: str) -> types.CallToolResult:
    return asyncio.run(
        remote.call(target.endpoint, "create", {"title": title}, idempotency_key=f"key-{title}", timeout=10)
    )


def test_after_the_first_call_each_call_is_one_request(target: RecordingTarget) -> None:
    remote = RemoteTargets(EgressAllowList.parse(["127.0.0.1"]))
    assert remote.pinned_version(target.endpoint) is None
    for title in ("a", "b", "c"):
        assert not _call(remote, target, title).is_error
    assert target.methods == ["server/discover", "tools/call", "tools/call", "tools/call"]
    assert target.ran == ["a", "b", "c"]
    assert remote.pinned_version(target.endpoint) == LATEST_MODERN_VERSION


def test_discovery_always_probes_and_the_calls_after_it_do_not(target: RecordingTarget) -> None:
    remote = RemoteTargets(EgressAllowList.parse(["127.0.0.1"]))
    discovered = asyncio.run(remote.discover(target.endpoint, timeout=10))
    assert [tool.remote_name for tool in discovered.tools] == ["create"]
    assert not _call(remote, target, "a").is_error
    asyncio.run(remote.discover(target.endpoint, timeout=10))
    assert target.methods == ["server/discover", "tools/list", "tools/call", "server/discover", "tools/list"]


def test_a_deduplicating_target_that_refuses_the_remembered_version_is_probed_again_in_the_same_call(
    target: RecordingTarget,
) -> None:
    target.deduplicates = True
    remote = RemoteTargets(EgressAllowList.parse(["127.0.0.1"]))
    assert not _call(remote, target, "a").is_error
    target.refuse_next_call = "refuse-version"
    answer = _call(remote, target, "b")
    assert not answer.is_error
    assert target.methods == ["server/discover", "tools/call", "tools/call", "server/discover", "tools/call"]
    # The refused request was not run; the call ran once, after the probe.
    assert target.ran == ["a", "b"]
    assert remote.pinned_version(target.endpoint) == LATEST_MODERN_VERSION


def test_a_bare_400_to_a_remembered_version_stays_a_refusal_and_the_next_call_probes(
    target: RecordingTarget,
) -> None:
    remote = RemoteTargets(EgressAllowList.parse(["127.0.0.1"]))
    assert not _call(remote, target, "a").is_error
    target.refuse_next_call = "400"
    refused = _call(remote, target, "b")
    assert refused.is_error
    text = refused.content[0]
    assert isinstance(text, types.TextContent)
    assert json.loads(text.text)["error_code"] == "TARGET_HTTP_400"
    # Not sent again (the target does not deduplicate, and a 400 is its answer), and forgotten.
    assert remote.pinned_version(target.endpoint) is None
    assert not _call(remote, target, "c").is_error
    assert target.methods == ["server/discover", "tools/call", "tools/call", "server/discover", "tools/call"]
    assert target.ran == ["a", "c"]


def test_a_handshake_era_target_keeps_its_handshake_on_every_exchange(target: RecordingTarget) -> None:
    target.no_discover = True
    remote = RemoteTargets(EgressAllowList.parse(["127.0.0.1"]))
    for title in ("a", "b"):
        assert not _call(remote, target, title).is_error
    assert remote.pinned_version(target.endpoint) is None
    assert target.methods.count("server/discover") == 2
    assert target.methods.count("initialize") == 2
    assert target.methods.count("tools/call") == 2
    assert target.ran == ["a", "b"]


def test_a_version_refusal_from_a_target_that_does_not_deduplicate_is_not_sent_again(
    target: RecordingTarget,
) -> None:
    """Its answer stands, as it would have without a remembered version: a target that ran the
    call and then answered -32022 is not sent it twice. The next call probes."""
    remote = RemoteTargets(EgressAllowList.parse(["127.0.0.1"]))
    assert not _call(remote, target, "a").is_error
    target.refuse_next_call = "refuse-version"
    assert _call(remote, target, "b").is_error
    assert remote.pinned_version(target.endpoint) is None
    assert not _call(remote, target, "c").is_error
    assert target.methods == ["server/discover", "tools/call", "tools/call", "server/discover", "tools/call"]
    assert target.ran == ["a", "c"]


def test_a_cached_oauth_token_is_tried_by_the_probe_and_a_refused_one_replaced_before_the_call(
    target: RecordingTarget,
) -> None:
    """Only a call made with a token just fetched adopts the remembered version: with a cached
    one the exchange probes, so that a token the target no longer accepts is refused on the probe
    and replaced before anything is called."""
    target.oauth = True
    remote = RemoteTargets(EgressAllowList.parse(["127.0.0.1"]))
    assert not _call(remote, target, "a").is_error  # a token fetched, the target probed
    assert not _call(remote, target, "b").is_error  # the cached token: probed again
    target.tokens_issued += 1  # the target now accepts only a token it has not issued yet
    assert not _call(remote, target, "c").is_error
    assert target.methods == [
        "server/discover",
        "tools/call",
        "server/discover",
        "tools/call",
        "401",  # the probe, with the cached token...
        "401",  # ...and the SDK's fallback handshake
        "tools/call",  # with a token just fetched, the remembered version
    ]
    assert target.tokens_issued == 3
    assert target.ran == ["a", "b", "c"]
