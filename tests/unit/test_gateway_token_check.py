"""The gateway's check of a request's service token over HTTP: the refusal check in front of the
MCP app verifies it once, and the MCP SDK's own check further down the same request takes that
verification for that exact token only; any other token, and the same token in another request,
is verified on its own."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt

from fulfill.config import Settings
from fulfill.gateway.server import ExplainedRefusals, GatewayTokenVerifier
from fulfill.tokens import Principal, ServiceTokens, TokenVerifier
from tests.support.http_doubles import run_asgi

SECRET = "unit-secret-0123456789abcdef0123456789"
ARGUMENTS = {
    "tenant_id": "t1",
    "account_id": "acc-1",
    "action_intent_id": "ai_1",
    "idempotency_key": "k" * 64,
}


class CountingVerifier(TokenVerifier):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.verified: list[str] = []

    def verify_service(self, token: str) -> Principal:
        self.verified.append(token)
        return super().verify_service(token)


def _request(token: str) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]}


def test_a_requests_token_is_verified_once_and_its_verification_serves_only_that_token() -> None:
    settings = Settings(jwt_secret=SECRET)
    verifier = CountingVerifier(settings)
    gateway = GatewayTokenVerifier(verifier)
    tokens = ServiceTokens(settings)
    token = tokens.token_for_call(ARGUMENTS)
    other = tokens.token_for_call({**ARGUMENTS, "action_intent_id": "ai_2"})
    forged = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False})}, "x" * 40, algorithm="HS256"
    )
    seen: dict[str, Any] = {}

    async def mcp_app(scope: Any, receive: Any, send: Any) -> None:
        # What the MCP SDK's bearer check does with the same request's header, then with others.
        seen["own"] = await gateway.verify_token(token)
        seen["forged"] = await gateway.verify_token(forged)
        seen["other"] = await gateway.verify_token(other)

    run_asgi(ExplainedRefusals(mcp_app, gateway), _request(token))
    assert seen["own"] is not None
    assert seen["own"].claims["action_intent_id"] == "ai_1"
    assert seen["other"] is not None
    assert seen["other"].claims["action_intent_id"] == "ai_2"
    assert seen["forged"] is None  # same claims, another signature: refused, not taken as verified
    # The request's own token once (the refusal check); the others each on their own.
    assert verifier.verified == [token, forged, other]
    # Outside that request, the same token is verified again.
    assert asyncio.run(gateway.verify_token(token)) is not None
    assert verifier.verified == [token, forged, other, token]


def test_a_refused_token_never_reaches_the_mcp_app() -> None:
    settings = Settings(jwt_secret=SECRET)
    gateway = GatewayTokenVerifier(CountingVerifier(settings))
    token = ServiceTokens(settings).token_for_call(ARGUMENTS)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    reached: list[bool] = []

    async def mcp_app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    sent = run_asgi(ExplainedRefusals(mcp_app, gateway), _request(forged))
    assert reached == []
    assert sent[0]["status"] == 401
    assert b"TOKEN_SIGNATURE_INVALID" in sent[1]["body"]
