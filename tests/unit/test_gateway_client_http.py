"""The engine's MCP client over HTTP against a scripted gateway: what each request carries, and
the answers a real gateway seldom gives (a header mismatch, an answer that is not JSON-RPC)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from fulfill.config import Settings
from fulfill.connectors.base import ToolSuccess
from fulfill.domain.errors import ErrorClass
from fulfill.gateway.client import PROTOCOL_VERSION, McpToolGateway
from fulfill.tokens import ServiceTokens

SECRET = "unit-secret-0123456789abcdef0123456789"
TOOL = "slow.ticket"
ARGUMENTS = {
    "region": "eu",
    "tenant_id": "t1",
    "account_id": "acc-1",
    "action_intent_id": "ai_1",
    "idempotency_key": "k" * 64,
}
INPUT_SCHEMA = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
}
SUCCESS = {
    "content": [{"type": "text", "text": "{}"}],
    "isError": False,
    "resultType": "complete",
    "structuredContent": {
        "external_object_refs": [{"system": "MCP:slow", "object_type": "T", "object_id": "1"}]
    },
}

Handler = Callable[[httpx2.Request, dict[str, Any]], httpx2.Response]


def _answer(request_id: Any, result: dict[str, Any]) -> httpx2.Response:
    return httpx2.Response(200, json={"jsonrpc": "2.0", "id": request_id, "result": result})


def _listing(schema: dict[str, Any]) -> dict[str, Any]:
    tool = {"name": TOOL, "inputSchema": schema, "outputSchema": ToolSuccess.model_json_schema()}
    return {"tools": [tool], "resultType": "complete", "cacheScope": "private", "ttlMs": 0}


class ScriptedGateway:
    """Answers each request with the handler; keeps every request it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.seen: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.seen.append((body["method"], dict(request.headers), body))
        return self.handler(request, body)


@pytest.fixture
def tokens() -> ServiceTokens:
    return ServiceTokens(Settings(jwt_secret=SECRET))


def _client(tokens: ServiceTokens, gateway: ScriptedGateway) -> McpToolGateway:
    client = McpToolGateway("http://gateway.test/mcp", tokens)
    client._http = httpx2.AsyncClient(transport=httpx2.MockTransport(gateway))
    return client


@pytest.fixture
def close_after() -> Iterator[list[McpToolGateway]]:
    made: list[McpToolGateway] = []
    yield made
    for client in made:
        client.close()


def test_a_call_is_one_request_that_carries_the_protocol_and_the_listed_param_headers(
    tokens: ServiceTokens, close_after: list[McpToolGateway]
) -> None:
    def handler(_request: httpx2.Request, body: dict[str, Any]) -> httpx2.Response:
        if body["method"] == "tools/list":
            return _answer(body["id"], _listing(INPUT_SCHEMA))
        return _answer(body["id"], SUCCESS)

    gateway = ScriptedGateway(handler)
    client = _client(tokens, gateway)
    close_after.append(client)
    outcomes = [
        client.call_tool(tenant_id="t1", tool_name=TOOL, arguments=ARGUMENTS, timeout_seconds=5)
        for _ in range(2)
    ]
    assert [outcome.error for outcome in outcomes] == [None, None]
    assert [method for method, _, _ in gateway.seen] == ["tools/list", "tools/call", "tools/call"]
    _, headers, body = gateway.seen[-1]
    assert headers["mcp-protocol-version"] == PROTOCOL_VERSION
    assert headers["mcp-method"] == "tools/call"
    assert headers["mcp-name"] == TOOL
    assert headers["mcp-param-region"] == "eu"
    assert headers["authorization"].startswith("Bearer ey")
    assert body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == PROTOCOL_VERSION
    assert body["params"]["_meta"]["io.fulfill/idempotency-key"] == "k" * 64


def test_a_call_refused_for_a_header_mismatch_is_listed_again_and_sent_once_more(
    tokens: ServiceTokens, close_after: list[McpToolGateway]
) -> None:
    """The tool's input schema asks for a header the list fetched before did not: the gateway
    refuses the call before it runs (400, HEADER_MISMATCH); the list is fetched again and the
    call sent once more, with the header."""
    schemas = [{"type": "object", "properties": {"region": {"type": "string"}}}, INPUT_SCHEMA]

    def handler(request: httpx2.Request, body: dict[str, Any]) -> httpx2.Response:
        if body["method"] == "tools/list":
            return _answer(body["id"], _listing(schemas.pop(0)))
        if "mcp-param-region" not in request.headers:
            error = {"code": -32020, "message": "Mcp-Param-Region header is missing"}
            return httpx2.Response(400, json={"jsonrpc": "2.0", "id": body["id"], "error": error})
        return _answer(body["id"], SUCCESS)

    gateway = ScriptedGateway(handler)
    client = _client(tokens, gateway)
    close_after.append(client)
    outcome = client.call_tool(tenant_id="t1", tool_name=TOOL, arguments=ARGUMENTS, timeout_seconds=5)
    assert outcome.error is None
    assert [method for method, _, _ in gateway.seen] == [
        "tools/list",
        "tools/call",
        "tools/list",
        "tools/call",
    ]


def test_a_second_header_mismatch_is_the_calls_failure(
    tokens: ServiceTokens, close_after: list[McpToolGateway]
) -> None:
    def handler(_request: httpx2.Request, body: dict[str, Any]) -> httpx2.Response:
        if body["method"] == "tools/list":
            return _answer(body["id"], _listing(INPUT_SCHEMA))
        error = {"code": -32020, "message": "Mcp-Param-Region header does not match"}
        return httpx2.Response(400, json={"jsonrpc": "2.0", "id": body["id"], "error": error})

    gateway = ScriptedGateway(handler)
    client = _client(tokens, gateway)
    close_after.append(client)
    outcome = client.call_tool(tenant_id="t1", tool_name=TOOL, arguments=ARGUMENTS, timeout_seconds=5)
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.error_code) == (
        ErrorClass.VALIDATION,
        "GATEWAY_HTTP_400",
    )
    assert [method for method, _, _ in gateway.seen].count("tools/call") == 2


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx2.Response(202), (ErrorClass.UNKNOWN, "MCP_PROTOCOL_ERROR")),
        (
            httpx2.Response(200, content=b"data: {}\n\n", headers={"content-type": "text/event-stream"}),
            (ErrorClass.UNKNOWN, "MCP_PROTOCOL_ERROR"),
        ),
        (
            httpx2.Response(200, json={"jsonrpc": "2.0", "id": 1}),
            (ErrorClass.VALIDATION, "MCP_PROTOCOL_ERROR"),
        ),
        (httpx2.Response(503, text="busy"), (ErrorClass.DOWNSTREAM, "GATEWAY_HTTP_503")),
        (httpx2.Response(429, json={"error": "slow down"}), (ErrorClass.RATE_LIMIT, "GATEWAY_HTTP_429")),
    ],
)
def test_an_answer_that_is_not_a_json_rpc_answer_is_classified(
    tokens: ServiceTokens,
    close_after: list[McpToolGateway],
    response: httpx2.Response,
    expected: tuple[ErrorClass, str],
) -> None:
    def handler(_request: httpx2.Request, body: dict[str, Any]) -> httpx2.Response:
        if body["method"] == "tools/list":
            return _answer(body["id"], _listing(INPUT_SCHEMA))
        return response

    client = _client(tokens, ScriptedGateway(handler))
    close_after.append(client)
    outcome = client.call_tool(tenant_id="t1", tool_name=TOOL, arguments=ARGUMENTS, timeout_seconds=5)
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.error_code) == expected


def test_the_connections_are_split_into_small_pools_and_each_request_goes_to_the_least_busy() -> None:
    import asyncio

    from fulfill.gateway.client import POOL_CONNECTIONS, ConnectionPools

    # The worker's slots, split into pools of at most POOL_CONNECTIONS (httpcore looks at every
    # connection of a pool at each request), never fewer connections than slots in all.
    assert POOL_CONNECTIONS == 8
    assert ConnectionPools(64).sizes == [8] * 8
    assert ConnectionPools(72).sizes == [8] * 9
    assert ConnectionPools(20).sizes == [7, 7, 6]
    assert ConnectionPools(1).sizes == [1]

    async def hold_twenty() -> None:
        pools = ConnectionPools(20)
        release = asyncio.Event()

        async def held(_request: httpx2.Request) -> httpx2.Response:
            await release.wait()
            return httpx2.Response(200)

        for client in pools._clients:
            await client.aclose()
        pools._clients = [httpx2.AsyncClient(transport=httpx2.MockTransport(held)) for _ in pools.sizes]
        calls = [asyncio.create_task(pools.post("http://gateway.test/mcp")) for _ in range(20)]
        await asyncio.sleep(0)  # every call has picked its pool and is held
        # As many in flight in each pool as it has connections: none waits while one is free.
        assert pools.busy == pools.sizes
        release.set()
        assert [response.status_code for response in await asyncio.gather(*calls)] == [200] * 20
        assert pools.busy == [0, 0, 0]
        await pools.aclose()

    asyncio.run(hold_twenty())
