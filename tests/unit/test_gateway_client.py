"""The engine's MCP client mints each call's service token from the call's trusted arguments, and
refuses, without a request, a call that lacks them or names another tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from fulfill.config import Settings
from fulfill.domain.errors import ErrorClass
from fulfill.gateway.client import McpToolGateway
from fulfill.tokens import ServiceTokens

SECRET = "unit-secret-0123456789abcdef0123456789"
ARGUMENTS = {
    "title": "t",
    "tenant_id": "t1",
    "account_id": "acc-1",
    "action_intent_id": "ai_1",
    "idempotency_key": "k" * 64,
}


class RecordingTokens(ServiceTokens):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.minted: list[str] = []

    def token_for_call(self, arguments: Any, *, timeout_seconds: float = 0.0) -> str:
        token = super().token_for_call(arguments, timeout_seconds=timeout_seconds)
        self.minted.append(token)
        return token


@pytest.fixture
def tokens() -> RecordingTokens:
    return RecordingTokens(Settings(jwt_secret=SECRET))


@pytest.fixture
def gateway(tokens: RecordingTokens) -> Iterator[McpToolGateway]:
    client = McpToolGateway("http://127.0.0.1:9/mcp", tokens)  # nothing listens there
    yield client
    client.close()


@pytest.mark.parametrize("missing", ["account_id", "action_intent_id", "idempotency_key"])
def test_a_call_without_its_trusted_arguments_is_refused_before_any_request(
    gateway: McpToolGateway, tokens: RecordingTokens, missing: str
) -> None:
    arguments = {k: v for k, v in ARGUMENTS.items() if k != missing}
    outcome = gateway.call_tool(
        tenant_id="t1", tool_name="internal.create_task", arguments=arguments, timeout_seconds=1
    )
    assert outcome.success is False
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.error_code) == (
        ErrorClass.VALIDATION,
        "TOOL_BINDING_MISSING",
    )
    assert missing in outcome.error.error_message
    assert tokens.minted == []


def test_a_call_for_another_tenant_is_refused_before_any_request(
    gateway: McpToolGateway, tokens: RecordingTokens
) -> None:
    outcome = gateway.call_tool(
        tenant_id="t2", tool_name="internal.create_task", arguments=ARGUMENTS, timeout_seconds=1
    )
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.error_code) == (
        ErrorClass.AUTH,
        "TOKEN_BINDING_MISMATCH",
    )
    assert tokens.minted == []


def test_each_call_gets_a_token_bound_to_its_arguments(
    gateway: McpToolGateway, tokens: RecordingTokens
) -> None:
    first = gateway.call_tool(
        tenant_id="t1", tool_name="internal.create_task", arguments=ARGUMENTS, timeout_seconds=1
    )
    other = {**ARGUMENTS, "idempotency_key": "j" * 64}
    gateway.call_tool(tenant_id="t1", tool_name="internal.create_task", arguments=other, timeout_seconds=1)
    assert first.error is not None
    assert first.error.error_code == "GATEWAY_UNAVAILABLE"  # it did try: the token was minted
    claims = [jwt.decode(token, options={"verify_signature": False}) for token in tokens.minted]
    assert [c["idempotency_key"] for c in claims] == ["k" * 64, "j" * 64]
    assert all(
        (c["iss"], c["tenant_id"], c["account_id"], c["action_intent_id"])
        == ("fulfill-service", "t1", "acc-1", "ai_1")
        for c in claims
    )


class StalledGateway(McpToolGateway):
    """A client whose event loop never ends the call (a process starved of CPU)."""

    async def _traced_call(self, *args: Any) -> Any:
        await asyncio.Event().wait()


@pytest.mark.parametrize(
    ("confirm", "expected"),
    [(False, (ErrorClass.TIMEOUT, "TOOL_CALL_TIMEOUT")), (True, (ErrorClass.UNKNOWN, "UNKNOWN_OUTCOME"))],
)
def test_a_call_its_event_loop_never_ends_is_answered_as_a_timeout_not_raised(
    tokens: RecordingTokens, confirm: bool, expected: tuple[ErrorClass, str]
) -> None:
    stalled = StalledGateway("http://127.0.0.1:9/mcp", tokens, confirm=lambda _tool: confirm)
    stalled._loop_grace_seconds = 0.1
    try:
        outcome = stalled.call_tool(
            tenant_id="t1", tool_name="internal.create_task", arguments=ARGUMENTS, timeout_seconds=0.1
        )
    finally:
        stalled.close()
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.error_code) == expected
