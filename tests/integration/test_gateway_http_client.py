"""The engine's MCP client over HTTP (``FULFILL_GATEWAY_URL``): one HTTP request per tool call.

Every call of a worker goes through one shared HTTP client to the gateway's stateless endpoint,
and each call is one ``tools/call`` POST that carries the call's own service token (the tool
list, for the output schemas, is fetched once, not per call). What the calls share must never
mix them up: each call reaches the gateway with its own token, and a call the gateway (or the
network) fails is classified on its own while the call next to it succeeds.

A real gateway (the service's ``/mcp``) behind a proxy that counts every request and can fail a
chosen call.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest

from fulfill.config import Settings
from fulfill.domain.errors import ErrorClass
from fulfill.domain.ports import ToolCallOutcome
from fulfill.gateway.client import McpToolGateway
from fulfill.tokens import ServiceTokens
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for

TOOL = "internal.create_task"


class SomeTokensRefused(ServiceTokens):
    """Mints each call's own token, except for the intents named here: a token the gateway
    refuses (401: not signed by the service's key)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.refused: set[str] = set()

    def token_for_call(self, arguments: Any, *, timeout_seconds: float = 0.0) -> str:
        token = super().token_for_call(arguments, timeout_seconds=timeout_seconds)
        if arguments.get("action_intent_id") in self.refused:
            return jwt.encode(jwt.decode(token, options={"verify_signature": False}), "x" * 40)
        return token


@pytest.fixture(scope="module")
def engine_proxy() -> Iterator[FaultyProxy]:
    """Between the service's engine and its own gateway (FULFILL_GATEWAY_URL)."""
    running = FaultyProxy()
    yield running
    running.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, engine_proxy: FaultyProxy) -> Iterator[Harness]:
    settings = make_settings(tmp_path_factory.mktemp("gateway-http"), gateway_url=engine_proxy.url)
    running = Harness(settings)
    engine_proxy.upstream = f"{running.url}/mcp"
    running.start()
    yield running
    running.stop()


@pytest.fixture
def proxy(shared: Harness) -> Iterator[FaultyProxy]:
    running = FaultyProxy(f"{shared.url}/mcp")
    yield running
    running.close()


@pytest.fixture
def tokens(shared: Harness) -> SomeTokensRefused:
    return SomeTokensRefused(shared.settings)


def _gateway(proxy: FaultyProxy, tokens: ServiceTokens, *, confirm: bool = False) -> McpToolGateway:
    return McpToolGateway(proxy.url, tokens, confirm=lambda _tool: confirm)


def _args(intent: str, tenant: str = "t1") -> dict[str, Any]:
    return {
        "title": f"over http {intent}",
        "tenant_id": tenant,
        "account_id": f"acc-{tenant}",
        "action_intent_id": intent,
        "idempotency_key": secrets.token_hex(32),
    }


def _call(gateway: McpToolGateway, arguments: dict[str, Any], timeout: float = 20) -> ToolCallOutcome:
    return gateway.call_tool(
        tenant_id=arguments["tenant_id"], tool_name=TOOL, arguments=arguments, timeout_seconds=timeout
    )


def _intent() -> str:
    return f"ai_{secrets.token_hex(6)}"


def test_each_tool_call_is_one_http_request(proxy: FaultyProxy, tokens: SomeTokensRefused) -> None:
    """Five calls: five tools/call requests and the tool list once (for its output schemas); no
    handshake, no discovery, no list per call."""
    gateway = _gateway(proxy, tokens)
    try:
        outcomes = [_call(gateway, _args(_intent())) for _ in range(5)]
    finally:
        gateway.close()
    assert [outcome.error for outcome in outcomes] == [None] * 5
    methods = [method for method, _ in proxy.state.requests]
    assert methods == ["tools/list"] + ["tools/call"] * 5


def test_the_engine_makes_one_request_per_execution_over_http(
    shared: Harness, engine_proxy: FaultyProxy
) -> None:
    """Through the engine (FULFILL_GATEWAY_URL): each execution's call is one request."""
    with shared.client() as client:
        ids = [shared.create_intent(client)["action_intent_id"] for _ in range(4)]
        for intent_id in ids:
            shared.approve(client, intent_id)
        statuses = [shared.wait_terminal(client, i)["status"] for i in ids]
    assert statuses == ["SUCCEEDED"] * 4
    methods = [method for method, _ in engine_proxy.state.requests]
    assert methods.count("tools/call") == 4
    assert methods.count("tools/list") <= 1  # none when an earlier test's execution listed
    assert len(methods) == methods.count("tools/call") + methods.count("tools/list")


def test_concurrent_calls_of_two_tenants_each_reach_the_gateway_with_their_own_token(
    proxy: FaultyProxy, tokens: SomeTokensRefused, shared: Harness
) -> None:
    """Both calls are held at the proxy until both are in flight on the shared client: each
    request's token is the one minted for its own arguments, and the gateway (which checks the
    token's binding against the arguments) runs each for its own tenant."""
    first, second = _args(_intent(), "t1"), _args(_intent(), "t2")
    proxy.add_faults(
        Fault("hold", match=first["action_intent_id"]), Fault("hold", match=second["action_intent_id"])
    )
    gateway = _gateway(proxy, tokens)
    try:
        _call(gateway, _args(_intent()))  # the tool list is fetched: the two calls are one request each
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(_call, gateway, arguments) for arguments in (first, second)]
            wait_for(lambda: proxy.state.in_flight == 2, timeout=20)
            proxy.state.release.set()
            outcomes = [future.result() for future in futures]
    finally:
        proxy.state.release.set()
        gateway.close()
    assert [outcome.error for outcome in outcomes] == [None, None]
    calls = [token for method, token in proxy.state.requests if method == "tools/call"][1:]
    claims = [jwt.decode(token, options={"verify_signature": False}) for token in calls]
    assert sorted((c["tenant_id"], c["action_intent_id"], c["idempotency_key"]) for c in claims) == sorted(
        (a["tenant_id"], a["action_intent_id"], a["idempotency_key"]) for a in (first, second)
    )
    from sqlalchemy import select

    from fulfill.store.tables import internal_tasks

    with shared.db.read() as conn:
        rows = conn.execute(
            select(internal_tasks.c.tenant_id, internal_tasks.c.title).where(
                internal_tasks.c.title.in_([first["title"], second["title"]])
            )
        ).all()
    assert sorted(tuple(row) for row in rows) == [("t1", first["title"]), ("t2", second["title"])]


# (fault, confirm, expected outcome of the failed call): what each failure is classified as.
FAILURES = [
    ("token_refused", False, (ErrorClass.AUTH, "GATEWAY_HTTP_401")),
    ("token_refused", True, (ErrorClass.AUTH, "GATEWAY_HTTP_401")),
    ("status_after_500", False, (ErrorClass.DOWNSTREAM, "GATEWAY_HTTP_500")),
    ("status_after_500", True, (ErrorClass.UNKNOWN, "UNKNOWN_OUTCOME")),
    ("status_before_403", True, (ErrorClass.AUTH, "GATEWAY_HTTP_403")),
    ("status_before_502", False, (ErrorClass.DOWNSTREAM, "GATEWAY_HTTP_502")),
    ("drop_after", False, (ErrorClass.DOWNSTREAM, "GATEWAY_UNAVAILABLE")),
    ("drop_after", True, (ErrorClass.UNKNOWN, "UNKNOWN_OUTCOME")),
    ("malformed_json", False, (ErrorClass.VALIDATION, "MCP_PROTOCOL_ERROR")),
    ("answer_to_another_request", False, (ErrorClass.UNKNOWN, "MCP_PROTOCOL_ERROR")),
]


def _fault(kind: str, intent: str) -> Fault | None:
    if kind == "token_refused":
        return None
    if kind.startswith("status_"):
        where, status = kind.rsplit("_", 1)
        return Fault(where, status=int(status), match=intent)
    if kind == "malformed_json":
        return Fault("body_after", status=200, content=b'{"jsonrpc": "2.0", "id": ', match=intent)
    if kind == "answer_to_another_request":
        # A success status whose body answers a request that was never made.
        body = b'{"jsonrpc": "2.0", "id": 987654, "result": {"content": [], "isError": false}}'
        return Fault("body_after", status=200, content=body, match=intent)
    return Fault(kind, match=intent)


@pytest.mark.parametrize(("kind", "confirm", "expected"), FAILURES)
def test_a_failed_call_next_to_one_in_flight_fails_alone(
    proxy: FaultyProxy,
    tokens: SomeTokensRefused,
    kind: str,
    confirm: bool,
    expected: tuple[ErrorClass, str],
) -> None:
    """The good call is held at the proxy (in flight on the shared client) while the bad one
    fails next to it: the bad one is classified as it always was (a lost answer of a tool that
    must not be retried is an UNKNOWN_OUTCOME), the good one still succeeds, and so does the
    next call after them."""
    good, bad = _args(_intent()), _args(_intent())
    proxy.add_faults(Fault("hold", match=good["action_intent_id"]))
    fault = _fault(kind, bad["action_intent_id"])
    if fault is None:
        tokens.refused.add(bad["action_intent_id"])
    else:
        proxy.add_faults(fault)
    gateway = _gateway(proxy, tokens, confirm=confirm)
    try:
        _call(gateway, _args(_intent()))  # the tool list is fetched
        with ThreadPoolExecutor(max_workers=1) as pool:
            held = pool.submit(_call, gateway, good)
            wait_for(lambda: proxy.state.in_flight == 1, timeout=20)
            failed = _call(gateway, bad)
            assert not held.done()
            proxy.state.release.set()
            succeeded = held.result()
        after = _call(gateway, _args(_intent()))
    finally:
        proxy.state.release.set()
        gateway.close()
    assert failed.error is not None
    assert (failed.error.error_class, failed.error.error_code) == expected
    assert succeeded.error is None
    assert succeeded.external_object_refs
    assert after.error is None


def test_calls_before_the_tool_list_arrives_wait_for_one_list_and_survive_its_failure(
    proxy: FaultyProxy, tokens: SomeTokensRefused
) -> None:
    """The first calls of a worker name a tool not listed yet: when the one listing they share
    fails (its call's token is refused), the others list with their own tokens and succeed."""
    refused = _args(_intent())
    tokens.refused.add(refused["action_intent_id"])
    others = [_args(_intent()) for _ in range(3)]
    gateway = _gateway(proxy, tokens)
    start = threading.Barrier(4)

    def call(arguments: dict[str, Any]) -> ToolCallOutcome:
        start.wait(timeout=20)
        return _call(gateway, arguments)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(call, [refused, *others]))
    finally:
        gateway.close()
    assert outcomes[0].error is not None
    assert outcomes[0].error.error_code == "GATEWAY_HTTP_401"
    assert [outcome.error for outcome in outcomes[1:]] == [None] * 3


def _empty_object_type(answer: dict[str, Any]) -> dict[str, Any]:
    """The gateway's success, its structured content no longer fitting the tool's output schema
    (an object type must not be empty)."""
    answer["result"]["structuredContent"]["external_object_refs"][0]["object_type"] = ""
    return answer


@pytest.mark.parametrize(
    ("confirm", "expected"),
    [(False, (ErrorClass.UNKNOWN, "GATEWAY_ERROR")), (True, (ErrorClass.UNKNOWN, "UNKNOWN_OUTCOME"))],
)
def test_an_answer_that_does_not_fit_the_output_schema_is_refused(
    proxy: FaultyProxy, tokens: SomeTokensRefused, confirm: bool, expected: tuple[ErrorClass, str]
) -> None:
    """The answer is checked against the tool's listed output schema, as the MCP client always
    checked it; when it does not fit the list fetched before, the list is fetched again (a schema
    changed since decides) and the answer is refused against that one too."""
    bad = _args(_intent())
    proxy.add_faults(Fault("rewrite_after", rewrite=_empty_object_type, match=bad["action_intent_id"]))
    gateway = _gateway(proxy, tokens, confirm=confirm)
    try:
        first = _call(gateway, _args(_intent()))
        refused = _call(gateway, bad)
    finally:
        gateway.close()
    assert first.error is None
    assert refused.error is not None
    assert (refused.error.error_class, refused.error.error_code) == expected
    methods = [method for method, _ in proxy.state.requests]
    assert methods == ["tools/list", "tools/call", "tools/call", "tools/list"]


def test_a_tool_missing_from_the_last_list_has_the_list_fetched_again(
    proxy: FaultyProxy, tokens: SomeTokensRefused
) -> None:
    """A call naming a tool the list fetched before did not hold (a target added since) fetches
    it again before its call; the gateway answers an unknown tool as always."""
    gateway = _gateway(proxy, tokens)
    arguments = _args(_intent())
    try:
        first = _call(gateway, _args(_intent()))
        unknown = gateway.call_tool(
            tenant_id="t1", tool_name="later.tool", arguments=arguments, timeout_seconds=20
        )
    finally:
        gateway.close()
    assert first.error is None
    assert unknown.error is not None
    assert unknown.error.error_code == "TOOL_NOT_FOUND"
    methods = [method for method, _ in proxy.state.requests]
    assert methods == ["tools/list", "tools/call", "tools/list", "tools/call"]
