"""The engine reaches its own process's gateway in memory; only the transport differs from HTTP.

Each call is made twice, once over Streamable HTTP to ``/mcp`` and once in memory, with the same
token: the outcomes are the same (the same token check, the same guard, the same tool), and what
the HTTP endpoint refuses is refused in memory too, before a tool sees it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import jwt
import pytest

from fulfill.config import Settings
from fulfill.domain.errors import ErrorClass
from fulfill.domain.ports import ToolCallOutcome
from fulfill.gateway.client import InProcessToolGateway, McpToolGateway
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


def test_in_memory_calls_reuse_the_gateways_worker_threads(
    shared: Harness,
    gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tool and the schema check run on the gateway's worker threads; one kept from an
    earlier call is reused, not a thread started (and stopped) for every call."""
    _, _, in_memory = gateways

    def call(intent: str) -> ToolCallOutcome:
        return in_memory.call_tool(
            tenant_id="t1", tool_name="internal.create_task", arguments=_args(intent), timeout_seconds=5
        )

    assert call("ai_inproc_threads_0").success
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    outcomes = [call(f"ai_inproc_threads_{index}") for index in range(1, 4)]
    assert all(outcome.success for outcome in outcomes)
    assert started == []
    for index in range(4):
        assert shared.count(internal_tasks, action_intent_id=f"ai_inproc_threads_{index}") == 1


def test_closing_the_in_memory_gateway_ends_its_event_loop(shared: Harness) -> None:
    service = shared.service
    gateway = InProcessToolGateway(
        service.gateway_server, GatewayTokenVerifier(service.token_verifier), ServiceTokens(shared.settings)
    )
    assert gateway.call_tool(
        tenant_id="t1",
        tool_name="internal.create_task",
        arguments=_args("ai_inproc_close"),
        timeout_seconds=5,
    ).success
    gateway.close()
    assert not gateway._thread.is_alive()
    assert gateway._loop.is_closed() or not gateway._loop.is_running()


def test_an_in_process_tools_arguments_are_checked_without_a_thread_switch(
    gateways: tuple[FixedToken, McpToolGateway, InProcessToolGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the tool itself runs on a worker thread; the check of its arguments against its own
    schema runs on the loop (and still refuses what does not fit: see the guard's tests above)."""
    _, _, in_memory = gateways
    sent: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def recorded(func: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(func, "func", func))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recorded)
    outcome = in_memory.call_tool(
        tenant_id="t1",
        tool_name="internal.create_task",
        arguments=_args("ai_inproc_one_switch"),
        timeout_seconds=5,
    )
    assert outcome.success
    assert [getattr(func, "__name__", None) for func in sent] == ["create_task"]
