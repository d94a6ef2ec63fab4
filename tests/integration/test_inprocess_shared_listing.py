"""The in-memory gateway's sessions share one tool listing and one set of compiled output-schema
validators per process (``gateway/session_share.py``), and are never checked against a stale
output schema for it.

Each calling thread has its own event loop and MCP session. A gateway server of its own here (the
real gateway server, guard and MCP client, in memory) serves one tool whose output schema the test
changes by registering the tool again. A server middleware puts the call's own ``payload``
argument in the answer as it goes back (its structured content), so each call chooses what the
client checks. The server counts the ``tools/list`` requests it is sent; the compiles are counted
where the MCP client compiles.

This is the in-memory gateway only: what it lists and checks comes from this process's own
gateway server (a target's tools are listed with the gateway's own success schema).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pytest
from mcp import Client
from mcp.client.session import ClientSession
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from fulfill.connectors.base import ConnectorTool
from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import ExternalObjectRef
from fulfill.domain.ports import ToolCallOutcome
from fulfill.gateway.inprocess import InProcessToolGateway
from fulfill.gateway.server import (
    TOOL_LISTING_TTL_SECONDS,
    GatewayServer,
    GatewayTokenVerifier,
    ToolCallGuard,
    build_gateway,
    off_the_loop,
)
from fulfill.gateway.session_share import SharedToolListing, SharedValidators, share_validators
from fulfill.tokens import ServiceTokens, TokenVerifier
from tests.support.harness import make_settings

TOOL = "test.answer"
REFS = [{"system": "INTERNAL", "object_type": "Thing", "object_id": "1"}]
OLD_ONLY = {"external_object_refs": REFS, "n": 1}  # fits the first output schema only
NEW_ONLY = {"external_object_refs": REFS, "s": "one"}  # fits the second only


class FirstAnswer(BaseModel):
    external_object_refs: list[ExternalObjectRef] = Field(min_length=1)
    n: int


class SecondAnswer(BaseModel):
    external_object_refs: list[ExternalObjectRef] = Field(min_length=1)
    s: str


def _answer(payload: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(payload))], structured_content=payload
    )


def first_answer(payload: str) -> Annotated[CallToolResult, FirstAnswer]:
    return _answer(OLD_ONLY)


def second_answer(payload: str) -> Annotated[CallToolResult, SecondAnswer]:
    return _answer(NEW_ONLY)


@dataclass
class Listings:
    """Server middleware: counts the ``tools/list`` requests the gateway server is sent."""

    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/list":
            with self.lock:
                self.count += 1
        return await call_next(ctx)


async def answer_the_payload(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: the tool's answer (checked by the server against the tool's own schema)
    replaced by the call's ``payload`` as it goes back, so the MCP client's check decides."""
    result = await call_next(ctx)
    if ctx.method == "tools/call" and isinstance(result, dict) and not result.get("isError"):
        payload = json.loads(ctx.params["arguments"]["payload"])  # type: ignore[index]
        result = {**result, "structuredContent": payload}
    return result


@dataclass
class Rig:
    server: GatewayServer
    gateway: InProcessToolGateway
    listing: SharedToolListing
    listings: Listings
    compiles: list[str]
    clock: list[float]

    def call(self, payload: dict[str, Any]) -> ToolCallOutcome:
        arguments = {
            "payload": json.dumps(payload),
            "tenant_id": "t1",
            "account_id": "acc-1",
            "action_intent_id": f"ai_{secrets.token_hex(6)}",
            "idempotency_key": secrets.token_hex(32),
        }
        return self.gateway.call_tool(tenant_id="t1", tool_name=TOOL, arguments=arguments, timeout_seconds=10)

    def register(self, fn: Callable[..., Any]) -> None:
        """The tool registered again (its output schema from ``fn``'s annotation)."""
        self.server.remove_tool(TOOL)
        self.server.add_tool(off_the_loop(fn), name=TOOL, description="answers", structured_output=True)


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    settings = make_settings(tmp_path)
    verifier = TokenVerifier(settings)
    server = build_gateway(
        verifier, [ConnectorTool(TOOL, "answers", first_answer)], public_url="http://127.0.0.1:1/mcp"
    )
    listings = Listings()
    server.middleware.insert(0, listings)
    server.middleware.insert(1, answer_the_payload)
    compiles: list[str] = []
    compile_ = ClientSession._output_schema_validator

    def counted(self: ClientSession, name: str, output_schema: dict[str, Any]) -> Any:
        if name not in self._tool_output_validators:  # the client compiles (it keeps none)
            compiles.append(json.dumps(output_schema, sort_keys=True))
        return compile_(self, name, output_schema)

    monkeypatch.setattr(ClientSession, "_output_schema_validator", counted)
    clock = [1_000_000.0]
    listing = SharedToolListing(clock=lambda: clock[0])
    gateway = InProcessToolGateway(
        server, GatewayTokenVerifier(verifier), ServiceTokens(settings), listing=listing
    )
    yield Rig(server, gateway, listing, listings, compiles, clock)
    gateway.close()


def _in_threads(rig: Rig, payloads: list[dict[str, Any]]) -> list[ToolCallOutcome]:
    """One call per new thread (each its own event loop and session), all started together."""
    start = threading.Barrier(len(payloads))

    def call(payload: dict[str, Any]) -> ToolCallOutcome:
        start.wait(timeout=20)
        return rig.call(payload)

    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        return list(pool.map(call, payloads))


def _in_a_new_thread(rig: Rig, payload: dict[str, Any]) -> ToolCallOutcome:
    return _in_threads(rig, [payload])[0]


def _refused_as_misfit(outcome: ToolCallOutcome) -> bool:
    return outcome.error is not None and (outcome.error.error_class, outcome.error.error_code) == (
        ErrorClass.UNKNOWN,
        "GATEWAY_ERROR",
    )


def test_calls_from_many_threads_list_the_tools_and_compile_the_validator_once_in_all(rig: Rig) -> None:
    first = _in_threads(rig, [OLD_ONLY] * 12)
    again = _in_threads(rig, [OLD_ONLY] * 12)
    assert [outcome.error for outcome in first + again] == [None] * 24
    assert len(rig.gateway._sessions) >= 12  # each thread had a session of its own
    assert rig.listings.count == 1
    assert len(rig.compiles) == 1
    assert rig.listing.validators.compiled == 1


def test_sessions_opened_after_the_listing_expired_list_once_again(rig: Rig) -> None:
    assert rig.call(OLD_ONLY).error is None
    rig.clock[0] += 61
    outcomes = _in_threads(rig, [OLD_ONLY] * 6)
    assert [outcome.error for outcome in outcomes] == [None] * 6
    assert rig.listings.count == 2
    assert rig.listing.validators.compiled == 1  # the schema did not change


def test_a_changed_output_schema_is_the_one_that_decides(rig: Rig) -> None:
    """A session that took the listing before the tool changed is checked against the new schema:
    an answer that does not fit the one it holds is checked again against a listing fetched then.
    Another session then takes that listing: an answer only the old schema accepts is refused."""
    assert rig.call(OLD_ONLY).error is None
    assert _in_a_new_thread(rig, OLD_ONLY).error is None
    assert rig.listings.count == 1
    rig.register(second_answer)
    assert rig.call(NEW_ONLY).error is None  # this thread's session held the first schema
    assert rig.listings.count == 2
    assert rig.listing.validators.compiled == 2
    assert _refused_as_misfit(rig.call(OLD_ONLY))
    other = _in_threads(rig, [OLD_ONLY, NEW_ONLY])
    assert _refused_as_misfit(other[0])
    assert other[1].error is None


def test_an_answer_that_violates_the_schema_is_refused_on_a_session_that_never_listed(rig: Rig) -> None:
    """The second thread's session is served the first one's listing and validator; an answer
    that does not fit is still refused there, after one listing fetched to check it again."""
    assert rig.call(OLD_ONLY).error is None
    assert rig.listings.count == 1
    refused = _in_a_new_thread(rig, {"external_object_refs": REFS, "n": "one"})
    assert _refused_as_misfit(refused)
    assert rig.listings.count == 2  # the check again, not the session's own first listing
    assert rig.listing.validators.compiled == 1


def test_a_tool_the_shared_listing_does_not_hold_has_the_tools_listed_again(rig: Rig) -> None:
    assert rig.call(OLD_ONLY).error is None
    rig.server.add_tool(
        off_the_loop(second_answer), name="test.later", description="later", structured_output=True
    )
    for middleware in rig.server.middleware:  # the guard found the internal tools at its first call
        if isinstance(middleware, ToolCallGuard):
            middleware._internal = None
    arguments = {
        "payload": json.dumps(NEW_ONLY),
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai_later",
        "idempotency_key": secrets.token_hex(32),
    }
    later = rig.gateway.call_tool(
        tenant_id="t1", tool_name="test.later", arguments=arguments, timeout_seconds=10
    )
    assert later.error is None
    assert rig.listings.count == 2


def test_the_mcp_client_has_the_shape_the_sharing_reaches_into() -> None:
    """``session_share`` replaces a session's ``_output_schema_validator(name, output_schema)`` and
    reads its ``_tool_output_validators``; ``ClientSession.call_tool`` must check each answer
    through ``self.validate_tool_result``. A client of another shape fails here first."""
    parameters = list(inspect.signature(ClientSession._output_schema_validator).parameters)
    assert parameters == ["self", "name", "output_schema"]
    assert "self._output_schema_validator(name, output_schema)" in inspect.getsource(
        ClientSession.validate_tool_result
    )
    assert "self.validate_tool_result(name, result)" in inspect.getsource(ClientSession.call_tool)
    source = inspect.getsource(ClientSession.__init__)
    assert "self._tool_output_validators: dict[str, Validator] = {}" in source
    assert "del self._tool_output_validators[tool.name]" in inspect.getsource(
        ClientSession._absorb_tool_listing
    )


def test_a_session_of_another_shape_is_left_unshared() -> None:
    class Elsewise:
        def _output_schema_validator(self, name: str, output_schema: dict[str, Any]) -> None: ...

    session = Elsewise()
    own = session._output_schema_validator
    assert share_validators(session, SharedValidators()) is False  # type: ignore[arg-type]
    assert session._output_schema_validator == own


def test_the_gateway_says_its_tool_listing_may_be_kept_for_a_minute(rig: Rig) -> None:
    """Without the hint the MCP client's cache keeps nothing (the gateway answered ``ttlMs: 0``)."""

    async def listed() -> tuple[int, str]:
        async with Client(rig.server, cache=None) as client:
            answer = await client.list_tools()
            return answer.ttl_ms, answer.cache_scope

    assert asyncio.run(listed()) == (int(TOOL_LISTING_TTL_SECONDS * 1000), "private")
    assert TOOL_LISTING_TTL_SECONDS == 60.0
