"""How many tool calls are in flight at once: ``FULFILL_WORKER_CONCURRENCY``, and nothing below it.

A worker runs at most ``FULFILL_WORKER_CONCURRENCY`` executions at once, and each makes one tool
call at a time, so that many calls may wait on slow targets together. Nothing between an approved
execution and its target may hold them to fewer: not the HTTP connection pool to the gateway
(``FULFILL_GATEWAY_URL``; it had 64 connections), and not the threads the gateway runs a blocking
connector's tool on (anyio's default of 40 per event loop held every worker to 40 calls).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mcp.types import CallToolResult

from fulfill.config import Settings
from fulfill.connectors.base import ConnectorTool, tool_success
from fulfill.domain.models import ExternalObjectRef
from fulfill.gateway.inprocess import InProcessToolGateway
from fulfill.gateway.server import GatewayTokenVerifier, build_gateway
from fulfill.tokens import ServiceTokens, TokenVerifier
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for

pytestmark = pytest.mark.slow

# More than the 64 connections of the old pool and the 40 threads of anyio's default limiter.
CONCURRENCY = 72
QUEUED_BEHIND = 8


@pytest.fixture
def proxy() -> Iterator[FaultyProxy]:
    running = FaultyProxy()
    yield running
    running.close()


def test_the_worker_concurrency_bounds_the_calls_in_flight_over_http(
    tmp_path: Path, proxy: FaultyProxy
) -> None:
    """Every call is held by the target until the test lets them go: exactly
    FULFILL_WORKER_CONCURRENCY of them are held at once, the rest wait for a slot, and each
    intent still runs once."""
    settings = make_settings(
        tmp_path,
        gateway_url=proxy.url,
        worker_concurrency=CONCURRENCY,
        gateway_call_timeout_seconds=120.0,
    )
    harness = Harness(settings).start()
    proxy.upstream = f"{harness.url}/mcp"
    total = CONCURRENCY + QUEUED_BEHIND
    proxy.add_faults(*(Fault("hold") for _ in range(total)))
    try:
        with harness.client() as client:
            ids = [harness.create_intent(client)["action_intent_id"] for _ in range(total)]
            for intent_id in ids:
                harness.approve(client, intent_id)
            wait_for(lambda: proxy.state.in_flight >= CONCURRENCY, timeout=120)
            # The executions past the bound are queued: give them every chance to start a call.
            wait_for(lambda: _queued(harness) >= QUEUED_BEHIND, timeout=60)
            threading.Event().wait(1.0)
            with proxy.state.lock:
                held = proxy.state.in_flight
            proxy.state.release.set()
            statuses = [harness.wait_terminal(client, i, timeout=120)["status"] for i in ids]
        assert held == CONCURRENCY
        assert proxy.state.max_in_flight == CONCURRENCY
        assert statuses == ["SUCCEEDED"] * total
        assert [harness.task_rows(i) for i in ids] == [1] * total
    finally:
        proxy.state.release.set()
        harness.stop()


def _queued(harness: Harness) -> int:
    """Executions approved and still waiting for a worker slot (their attempt is QUEUED)."""
    from sqlalchemy import func, select

    from fulfill.store.tables import execution_attempts

    with harness.db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(execution_attempts)
                .where(execution_attempts.c.status == "QUEUED")
            ).scalar_one()
        )


def test_a_blocking_connector_tool_runs_as_many_calls_at_once_as_the_engine_sends() -> None:
    """Sixty calls to a blocking tool, in memory: all sixty are inside the tool at once (each waits
    for the others at a barrier), where anyio's default 40 threads let 40 in and broke it."""
    settings = Settings(jwt_secret="in-flight-secret-0123456789abcdef0123")
    verifier = TokenVerifier(settings)
    calls = 60
    barrier = threading.Barrier(calls)

    def wait_for_the_others(title: str) -> CallToolResult:
        barrier.wait(timeout=60)
        return tool_success([ExternalObjectRef(system="INTERNAL", object_type="Wait", object_id=title)])

    server = build_gateway(
        verifier,
        [ConnectorTool("test.wait", "Waits until every call is in.", wait_for_the_others)],
        public_url="http://127.0.0.1",
    )
    gateway = InProcessToolGateway(server, GatewayTokenVerifier(verifier), ServiceTokens(settings))

    def call(index: int) -> Any:
        arguments = {
            "title": f"call {index}",
            "tenant_id": "t1",
            "account_id": "acc-1",
            "action_intent_id": f"intent-{index}",
            "idempotency_key": secrets.token_hex(32),
        }
        return gateway.call_tool(
            tenant_id="t1", tool_name="test.wait", arguments=arguments, timeout_seconds=90
        )

    try:
        with ThreadPoolExecutor(max_workers=calls) as pool:
            outcomes = list(pool.map(call, range(calls)))
    finally:
        gateway.close()
    assert [outcome.error for outcome in outcomes] == [None] * calls
    assert sorted(outcome.external_object_refs[0].object_id for outcome in outcomes) == sorted(
        f"call {index}" for index in range(calls)
    )


def test_the_engine_drops_an_idle_connection_to_its_gateway_before_the_gateway_does() -> None:
    """A call written on a connection the gateway's server is closing loses its answer (an
    UNKNOWN_OUTCOME for a target that does not deduplicate): the engine's pool lets an idle
    connection go before the server's idle timeout, and has one for each worker slot."""
    import uvicorn

    from fulfill.gateway.client import KEEPALIVE_EXPIRY_SECONDS, McpToolGateway

    settings = Settings(jwt_secret="in-flight-secret-0123456789abcdef0123")
    gateway = McpToolGateway("http://127.0.0.1:9/mcp", ServiceTokens(settings), max_connections=CONCURRENCY)
    try:
        pools = [client._transport._pool for client in gateway._http._clients]  # type: ignore[attr-defined]
        assert {pool._keepalive_expiry for pool in pools} == {KEEPALIVE_EXPIRY_SECONDS}
        assert sum(pool._max_connections for pool in pools) == CONCURRENCY
    finally:
        gateway.close()
    assert uvicorn.Config(app=None).timeout_keep_alive > KEEPALIVE_EXPIRY_SECONDS
