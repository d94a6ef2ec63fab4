"""The engine reaches its own process's gateway in memory; only the transport differs from HTTP.

Each call is made twice, once over Streamable HTTP to ``/mcp`` and once in memory, with the same
token: the outcomes are the same (the same token check, the same guard, the same tool), and what
the HTTP endpoint refuses is refused in memory too, before a tool sees it.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import jwt
import pytest
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from fulfill.config import Settings
from fulfill.connectors.internal import InternalConnector
from fulfill.domain.errors import ErrorClass
from fulfill.domain.ports import ToolCallOutcome
from fulfill.gateway.client import McpToolGateway
from fulfill.gateway.inprocess import InProcessToolGateway
from fulfill.gateway.server import GatewayTokenVerifier
from fulfill.store.tables import internal_tasks
from fulfill.tokens import ServiceTokens, mint_token
from tests.support.harness import ALL_SCOPES, Harness, make_settings


class FixedToken(ServiceTokens):
    """Hands out a chosen token instead of minting the call's own (None: mint as the engine does)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.token: str | None = None

    def token_for_call(self, arguments: Any, *, timeout_seconds: float = 0.0) -> str:
        return self.token or super().token_for_call(arguments, timeout_seconds=timeout_seconds)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(make_settings(tmp_path_factory.mktemp("inprocess"))).start()
    yield running
    running.stop()


@pytest.fixture
def gateways(shared: Harness) -> Iterator[tuple[FixedToken, McpToolGateway, InProcessToolGateway]]:
    tokens = FixedToken(shared.settings)
    service = shared.service
    over_http = McpToolGateway(f"{shared.url}/mcp", tokens)
    in_memory = InProcessToolGateway(
        service.gateway_server, GatewayTokenVerifier(service.token_verifier), tokens
    )
    yield tokens, over_http, in_memory
    over_http.close()
    in_memory.close()


def _args(intent: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": "in memory",
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": intent,
        "idempotency_key": secrets.token_hex(32),
        **extra,
    }


def _both(
    gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway],
    arguments: dict[str, Any],
    tool: str = "internal.create_task",
) -> tuple[ToolCallOutcome, ToolCallOutcome]:
    _, over_http, in_memory = gateways
    calls = [
        gateway.call_tool(tenant_id="t1", tool_name=tool, arguments=arguments, timeout_seconds=5)
        for gateway in (over_http, in_memory)
    ]
    return calls[0], calls[1]


def _service_token(shared: Harness, arguments: dict[str, Any], **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "sub": "fulfill-engine",
        "scope": "gateway:invoke",
        "iss": "fulfill-service",
        "aud": shared.settings.jwt_audience,
        "iat": now,
        "exp": now + 60,
        **{
            name: arguments[name]
            for name in ("tenant_id", "account_id", "action_intent_id", "idempotency_key")
        },
        **claims,
    }
    key = shared.settings.service_token_secret or shared.settings.jwt_secret
    return jwt.encode(payload, key, algorithm="HS256")


def test_the_default_service_calls_its_gateway_in_memory(shared: Harness) -> None:
    assert type(shared.service.tool_gateway) is InProcessToolGateway


def test_the_engine_uses_http_when_a_gateway_url_is_configured(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, gateway_url="http://127.0.0.1:9/mcp")
    from fulfill.service import Service

    service = Service(settings)
    try:
        assert type(service.tool_gateway) is McpToolGateway
    finally:
        service.tool_gateway.close()
        service.db.dispose()


def test_a_valid_call_writes_once_whichever_the_transport(
    shared: Harness, gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway]
) -> None:
    arguments = _args("ai_inproc_ok")
    over_http, in_memory = _both(gateways, arguments)
    assert over_http.success
    assert in_memory.success
    assert in_memory.external_object_refs == over_http.external_object_refs
    assert shared.count(internal_tasks, action_intent_id="ai_inproc_ok") == 1


@pytest.mark.parametrize("token_kind", ["garbage", "user-token", "expired", "unbound", "no-gateway-scope"])
def test_tokens_the_http_endpoint_refuses_are_refused_in_memory(
    shared: Harness, gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway], token_kind: str
) -> None:
    tokens = gateways[0]
    intent = f"ai_inproc_{token_kind.replace('-', '_')}"
    arguments = _args(intent)
    tokens.token = {
        "garbage": lambda: "not-a-jwt",
        "user-token": lambda: mint_token(
            shared.settings, tenant_id="t1", scopes=[*ALL_SCOPES, "gateway:invoke"], account_ids=["acc-1"]
        ),
        "expired": lambda: _service_token(shared, arguments, exp=int(time.time()) - 600),
        "unbound": lambda: _service_token(shared, {**arguments, "idempotency_key": None}),
        "no-gateway-scope": lambda: _service_token(shared, arguments, scope="executions:read"),
    }[token_kind]()
    over_http, in_memory = _both(gateways, arguments)
    assert not over_http.success
    assert not in_memory.success
    assert in_memory.error == over_http.error
    assert in_memory.error is not None
    assert in_memory.error.error_class is ErrorClass.AUTH
    assert shared.count(internal_tasks, action_intent_id=intent) == 0


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"account_id": "acc-2"}, "TOKEN_BINDING_MISMATCH"),
        ({"idempotency_key": "f" * 64}, "TOKEN_BINDING_MISMATCH"),
        ({"title": 7}, "INVALID_TOOL_ARGUMENTS"),
    ],
)
def test_the_guard_runs_in_memory_exactly_as_over_http(
    shared: Harness,
    gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway],
    change: dict[str, Any],
    code: str,
) -> None:
    tokens = gateways[0]
    bound = _args("ai_inproc_guard")
    tokens.token = _service_token(shared, bound)
    over_http, in_memory = _both(gateways, {**bound, **change})
    assert in_memory.error == over_http.error
    assert in_memory.error is not None
    assert in_memory.error.error_code == code
    assert shared.count(internal_tasks, action_intent_id="ai_inproc_guard") == 0


def test_an_unknown_tool_is_the_same_error(
    gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway],
) -> None:
    over_http, in_memory = _both(gateways, _args("ai_inproc_unknown"), tool="internal.nope")
    assert in_memory.error == over_http.error
    assert in_memory.error is not None
    assert in_memory.error.error_code == "TOOL_NOT_FOUND"


def _tool_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads the internal connector's tool runs on, from now on."""
    threads: list[int] = []
    create = InternalConnector._create

    def recorded(self: InternalConnector, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return create(self, *args, **kwargs)

    monkeypatch.setattr(InternalConnector, "_create", recorded)
    return threads


def _started_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Threads started meanwhile, but not DBOS's own: its queue manager starts a worker thread
    whenever it finds a queue an earlier test created, on its own schedule."""
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        target = getattr(thread, "_target", None)
        if not getattr(target, "__module__", "").startswith("dbos."):
            started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    return started


def _call(gateway: McpToolGateway, intent: str, **extra: Any) -> ToolCallOutcome:
    return gateway.call_tool(
        tenant_id="t1",
        tool_name="internal.create_task",
        arguments=_args(intent, **extra),
        timeout_seconds=5,
    )


def test_an_in_memory_call_runs_in_the_calling_thread_from_the_token_check_to_the_tool(
    shared: Harness,
    gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, in_memory = gateways
    assert _call(in_memory, "ai_inproc_caller_0").success
    tool_threads = _tool_threads(monkeypatch)
    started = _started_threads(monkeypatch)
    handed: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def recorded(func: Any, *args: Any, **kwargs: Any) -> Any:
        handed.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recorded)
    outcomes = [_call(in_memory, f"ai_inproc_caller_{index}") for index in (1, 2)]
    assert all(outcome.success for outcome in outcomes)
    assert tool_threads == [threading.get_ident()] * 2
    assert handed == []
    assert started == []
    for index in range(3):
        assert shared.count(internal_tasks, action_intent_id=f"ai_inproc_caller_{index}") == 1


def test_the_guard_still_refuses_on_the_calling_threads_loop(
    shared: Harness,
    gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The arguments' schema check and the token binding run on the caller's own loop too, and
    what they refuse never reaches the tool."""
    tokens, _, in_memory = gateways
    tool_threads = _tool_threads(monkeypatch)
    wrong_type = _call(in_memory, "ai_inproc_caller_bad", title=7)
    assert wrong_type.error is not None
    assert wrong_type.error.error_code == "INVALID_TOOL_ARGUMENTS"
    bound = _args("ai_inproc_caller_bad")
    tokens.token = _service_token(shared, bound)
    other_account = in_memory.call_tool(
        tenant_id="t1",
        tool_name="internal.create_task",
        arguments={**bound, "account_id": "acc-2"},
        timeout_seconds=5,
    )
    assert other_account.error is not None
    assert other_account.error.error_code == "TOKEN_BINDING_MISMATCH"
    assert tool_threads == []
    assert shared.count(internal_tasks, action_intent_id="ai_inproc_caller_bad") == 0


def test_a_call_from_a_thread_running_an_event_loop_goes_to_the_shared_loop_and_reuses_its_threads(
    shared: Harness,
    gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Such a thread cannot run another loop: the call goes to the client's loop thread, and the
    tool to a gateway worker thread, one kept from an earlier call rather than one started for
    each call."""
    _, _, in_memory = gateways

    async def from_a_loop(intent: str) -> ToolCallOutcome:
        return _call(in_memory, intent)

    assert asyncio.run(from_a_loop("ai_inproc_threads_0")).success
    tool_threads = _tool_threads(monkeypatch)
    started = _started_threads(monkeypatch)
    outcomes = [asyncio.run(from_a_loop(f"ai_inproc_threads_{index}")) for index in range(1, 4)]
    assert all(outcome.success for outcome in outcomes)
    assert started == []
    assert len(tool_threads) == 3
    assert threading.get_ident() not in tool_threads
    for index in range(4):
        assert shared.count(internal_tasks, action_intent_id=f"ai_inproc_threads_{index}") == 1


def test_closing_the_in_memory_gateway_ends_its_sessions_and_loops(shared: Harness) -> None:
    service = shared.service
    gateway = InProcessToolGateway(
        service.gateway_server, GatewayTokenVerifier(service.token_verifier), ServiceTokens(shared.settings)
    )
    assert _call(gateway, "ai_inproc_close").success
    callers_loop = gateway._own.loop
    gateway.close()
    assert not gateway._thread.is_alive()
    assert callers_loop.is_closed()
    assert gateway._sessions == {}


def test_calls_from_many_threads_share_one_tool_listing_and_one_validator(shared: Harness) -> None:
    """Each calling thread has a session of its own, but the process lists the gateway's tools
    once (counted at the gateway server) and compiles the tool's output-schema validator once."""
    service = shared.service
    listed: list[str] = []

    async def counted(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/list":
            listed.append(ctx.method)
        return await call_next(ctx)

    service.gateway_server.middleware.insert(0, counted)
    gateway = InProcessToolGateway(
        service.gateway_server, GatewayTokenVerifier(service.token_verifier), ServiceTokens(shared.settings)
    )
    start = threading.Barrier(8)

    def call(index: int) -> ToolCallOutcome:
        start.wait(timeout=20)
        return _call(gateway, f"ai_inproc_shared_{index}")

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(call, range(8)))
        sessions = len(gateway._sessions)
        compiled = gateway._shared_listing.validators.compiled
    finally:
        gateway.close()
        service.gateway_server.middleware.remove(counted)
    assert [outcome.error for outcome in outcomes] == [None] * 8
    assert sessions == 8
    assert listed == ["tools/list"]
    assert compiled == 1
    for index in range(8):
        assert shared.count(internal_tasks, action_intent_id=f"ai_inproc_shared_{index}") == 1
