"""Fair share of a connector between tenants, per-tenant caps, and the platform cap on
``timeout_seconds``, against a running service on SQLite and PostgreSQL.

The order of calls is read from what the internal connector wrote (each task row's tenant and
creation time), so the assertions are about order and counts, not about how long anything took.
The same across several worker processes is in ``test_flow_control_processes.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.store.tables import connector_calls, connector_waiters, internal_tasks
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    running = Harness(make_settings(tmp_path, connector_rate_margin_seconds=0.05)).start()
    yield running
    running.stop()


def put_limits(client: httpx.Client, name: str, rate: float | None, concurrency: int | None) -> None:
    response = client.put(
        f"/admin/connectors/{name}/limits", json={"rate_per_second": rate, "concurrency": concurrency}
    )
    assert response.status_code == 200, response.text


def approve_many(harness: Harness, client: httpx.Client, count: int, **body: Any) -> list[str]:
    ids = [harness.create_intent(client, **body)["action_intent_id"] for _ in range(count)]
    for intent_id in ids:
        harness.approve(client, intent_id)
    return ids


def _gate_spans(harness: Harness, tenant: str) -> list[tuple[float, float]]:
    """When the gate admitted each of ``tenant``'s calls and when each finished, in order."""
    with harness.db.read() as conn:
        spans = conn.execute(
            select(connector_calls.c.admitted_epoch, connector_calls.c.finished_epoch).where(
                connector_calls.c.tenant_id == tenant
            )
        ).all()
    return sorted((float(start), float(end)) for start, end in spans)


def _arrived(proxy: FaultyProxy, intent_ids: list[str]) -> bool:
    """Every call of these intents has reached the proxy (its fault fired)."""
    with proxy.state.lock:
        return not any(fault.match in intent_ids for fault in proxy.state.faults)


def tasks_in_order(harness: Harness) -> list[str]:
    """The tenant of every task the internal connector created, in the order it created them."""
    with harness.db.read() as conn:
        rows = conn.execute(select(internal_tasks.c.tenant_id, internal_tasks.c.created_at)).all()
    return [tenant for tenant, _ in sorted(rows, key=lambda row: row[1])]


@pytest.mark.parametrize("workers", [64, 2], ids=["waiting-at-the-gate", "waiting-in-the-queue"])
def test_one_tenants_single_call_does_not_wait_behind_another_tenants_backlog(
    tmp_path: Path, workers: int
) -> None:
    """``internal`` at 2 calls per second; tenant A approves 12 intents, then tenant B one. B's call
    is served at the next turn or so, not after A's whole backlog (first come, first served would
    put it last). With 64 executions per worker A's backlog waits at the connector's gate; with 2,
    most of it waits in the execution queue, which starts B's next too."""
    harness = Harness(make_settings(tmp_path, worker_concurrency=workers)).start()
    try:
        _single_call_behind_a_backlog(harness)
    finally:
        harness.stop()


def _single_call_behind_a_backlog(harness: Harness) -> None:
    with harness.client("tenant-a") as a, harness.client("tenant-b") as b:
        put_limits(a, "internal", 2, None)
        a_ids = approve_many(harness, a, 12)
        wait_for(lambda: len(tasks_in_order(harness)) >= 1)  # A's backlog is in line
        [b_id] = approve_many(harness, b, 1)
        assert harness.wait_terminal(b, b_id, timeout=60)["status"] == "SUCCEEDED"
        outcomes = [harness.wait_terminal(a, intent_id, timeout=60) for intent_id in a_ids]
    assert {outcome["status"] for outcome in outcomes} == {"SUCCEEDED"}
    order = tasks_in_order(harness)
    assert sorted(order) == ["tenant-a"] * 12 + ["tenant-b"]
    # A's calls still waiting when B's ran: most of A's backlog (it starts behind at most the few A
    # calls admitted while B's execution was starting).
    assert order[order.index("tenant-b") + 1 :].count("tenant-a") >= 6
    # Each admitted call is recorded with its tenant (the round robin counts by it).
    with harness.db.read() as conn:
        tenants = conn.execute(select(connector_calls.c.tenant_id)).scalars().all()
        unfinished = conn.execute(
            select(connector_calls).where(connector_calls.c.finished_epoch.is_(None))
        ).all()
        still_waiting = conn.execute(select(connector_waiters)).all()
    assert sorted(tenants) == ["tenant-a"] * 12 + ["tenant-b"]  # one admission per call, no more
    assert unfinished == []
    assert still_waiting == []  # every call that waited left the shared line


def test_a_tenant_cap_holds_that_tenant_alone_and_blocks_nobody_else(harness: Harness) -> None:
    """Tenant A capped at 1 call per second on ``internal`` (which has no limit of its own): A's
    calls are spread out by the gate; B's, approved after A's, are not held behind them."""
    with harness.client("tenant-a") as a, harness.client("tenant-b") as b, harness.client("ops") as ops:
        capped = ops.put("/admin/connectors/internal/tenants/tenant-a/limits", json={"rate_per_second": 1})
        assert capped.status_code == 200, capped.text
        assert capped.json()["rate_per_second"] == 1
        assert capped.json()["concurrency"] is None
        a_ids = approve_many(harness, a, 6)
        b_ids = approve_many(harness, b, 4)
        outcomes = [harness.wait_terminal(b, intent_id, timeout=60) for intent_id in b_ids]
        outcomes += [harness.wait_terminal(a, intent_id, timeout=60) for intent_id in a_ids]
    assert {outcome["status"] for outcome in outcomes} == {"SUCCEEDED"}
    with harness.db.read() as conn:
        sends = conn.execute(
            select(connector_calls.c.dispatched_epoch).where(connector_calls.c.tenant_id == "tenant-a")
        ).scalars()
        rows = list(sends)
        a_sends = sorted(float(value) for value in rows)
    assert len(a_sends) == 6
    # The gate's own record: never two of A's calls within a second (plus its margin).
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(a_sends))
    order = tasks_in_order(harness)
    # B did not queue behind A's cap: B's calls were all made before A's last, which the gate held
    # until at least 5 s after A's first. (Not asked: that B's first beats A's second. On a loaded
    # machine B's four approvals alone can take longer than A's 1 s spacing.)
    last_b = len(order) - 1 - order[::-1].index("tenant-b")
    last_a = len(order) - 1 - order[::-1].index("tenant-a")
    assert last_b < last_a, order
    assert order[-1] == "tenant-a"  # ... and all of B's were done before A's last
    assert order.count("tenant-b") == 4


def test_a_tenant_concurrency_cap_holds_across_its_calls(tmp_path: Path) -> None:
    """Tenant A capped at 1 call in flight on ``internal`` (no limit of its own), tenant B at 2,
    every call held 0.3 s by a proxy in front of the gateway: the gate's record shows A's calls one
    at a time, while two of B's overlap (B is not held to A's cap). The gate records the calls of a
    capped tenant only, hence B's cap of 2."""
    proxy = FaultyProxy()
    proxy.state.latency = 0.3
    harness = Harness(make_settings(tmp_path, gateway_url=proxy.url))
    proxy.upstream = f"{harness.url}/mcp"
    harness.start()
    try:
        with harness.client("tenant-a") as a, harness.client("tenant-b") as b:
            capped = a.put("/admin/connectors/internal/tenants/tenant-a/limits", json={"concurrency": 1})
            assert capped.status_code == 200, capped.text
            capped = b.put("/admin/connectors/internal/tenants/tenant-b/limits", json={"concurrency": 2})
            assert capped.status_code == 200, capped.text
            a_ids = approve_many(harness, a, 4)
            # B's first two calls are held at the proxy until both are there, so that two of B's
            # calls are in flight at once (on a loaded machine, calls left to overlap by themselves
            # may not).
            b_ids = [harness.create_intent(b)["action_intent_id"] for _ in range(4)]
            proxy.add_faults(*(Fault("hold", match=intent_id) for intent_id in b_ids[:2]))
            for intent_id in b_ids:
                harness.approve(b, intent_id)
            wait_for(lambda: _arrived(proxy, b_ids[:2]), timeout=30, describe=proxy.describe)
            proxy.state.release.set()
            outcomes = [harness.wait_terminal(a, intent_id, timeout=60) for intent_id in a_ids]
            outcomes += [harness.wait_terminal(b, intent_id, timeout=60) for intent_id in b_ids]
        assert {outcome["status"] for outcome in outcomes} == {"SUCCEEDED"}
        ordered = _gate_spans(harness, "tenant-a")
        assert len(ordered) == 4
        # Each of A's calls was admitted only after the one before it had finished.
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(ordered))
        # One of B's calls was admitted while another was still in flight (the two held ones).
        assert any(
            later[0] < earlier[1] for earlier, later in itertools.pairwise(_gate_spans(harness, "tenant-b"))
        )
    finally:
        proxy.close()
        harness.stop()


def test_tenant_caps_api_validation_and_who_may_change_them(harness: Harness) -> None:
    platform = harness.client("ops")
    own = harness.client("tenant-a", scopes=["admin"])
    other = harness.client("tenant-b", scopes=["admin"])
    with platform, own, other:
        url = "/admin/connectors/internal/tenants/tenant-a/limits"
        for body, code in [
            ({"rate_per_second": 1.5}, "INVALID_RATE_PER_SECOND"),
            ({}, "EMPTY_TENANT_CAP"),
        ]:
            refused = platform.put(url, json=body)
            assert refused.status_code == 422, refused.text
            assert refused.json()["code"] == code
        assert platform.put(url, json={"concurrency": 0}).status_code == 422
        assert platform.put(url, json={"concurrency": 4, "rate_per_second": 5}).status_code == 200
        # A tenant admin is not platform:admin: the platform route is refused.
        assert own.put(url, json={"concurrency": 1}).status_code == 403
        # Its own tenant's caps: it may read them and lower them, never raise nor remove them.
        mine = own.get("/admin/tenants/tenant-a/connector-limits")
        assert mine.status_code == 200
        assert [cap["concurrency"] for cap in mine.json()] == [4]
        lowered = own.put(
            "/admin/tenants/tenant-a/connector-limits/internal", json={"concurrency": 2, "rate_per_second": 5}
        )
        assert lowered.status_code == 200, lowered.text
        assert lowered.json()["updated_by"]
        for body in ({"concurrency": 3, "rate_per_second": 5}, {"concurrency": 2}):
            raised = own.put("/admin/tenants/tenant-a/connector-limits/internal", json=body)
            assert raised.status_code == 403, raised.text
            assert raised.json()["code"] == "TENANT_CAP_RAISE_FORBIDDEN"
        # Another tenant's admin sees nothing of tenant-a.
        assert other.get("/admin/tenants/tenant-a/connector-limits").status_code == 404
        assert (
            other.put(
                "/admin/tenants/tenant-a/connector-limits/internal", json={"concurrency": 1}
            ).status_code
            == 404
        )
        listed = platform.get("/admin/connectors/internal/tenants")
        assert [(cap["tenant_id"], cap["concurrency"]) for cap in listed.json()] == [("tenant-a", 2)]
        assert platform.delete(url).status_code == 204
        assert platform.delete(url).status_code == 404
        assert platform.get("/admin/connectors/internal/tenants").json() == []


def test_timeout_seconds_above_the_platform_maximum_is_refused(tmp_path: Path) -> None:
    running = Harness(make_settings(tmp_path, max_timeout_seconds=120)).start()
    try:
        with running.client() as client:
            body = {
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x"},
            }
            refused = client.post("/intents", json={**body, "execution_policy": {"timeout_seconds": 121}})
            assert refused.status_code == 422, refused.text
            assert refused.json()["code"] == "TIMEOUT_ABOVE_MAXIMUM"
            assert "120" in refused.json()["detail"]
            assert "FULFILL_MAX_TIMEOUT_SECONDS" in refused.json()["detail"]
            at_most = client.post("/intents", json={**body, "execution_policy": {"timeout_seconds": 120}})
            assert at_most.status_code == 201, at_most.text
            # The default budget (300 s) is above this platform's maximum: it is lowered to it.
            default = client.post("/intents", json=body)
            assert default.status_code == 201, default.text
            assert default.json()["execution_policy"]["timeout_seconds"] == 120
    finally:
        running.stop()


def test_tenant_caps_from_the_command_line(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_DATABASE_URL", harness.settings.database_url)
    monkeypatch.setenv("COLUMNS", "200")
    cli = CliRunner()
    set_cap = cli.invoke(app, ["connectors", "tenant-limits", "internal", "tenant-a", "--concurrency", "3"])
    assert set_cap.exit_code == 0, set_cap.output
    assert "tenant-a" in set_cap.output
    # An option left out keeps its value.
    cli.invoke(app, ["connectors", "tenant-limits", "internal", "tenant-a", "--rate", "2"])
    with harness.client("ops") as client:
        [stored] = client.get("/admin/connectors/internal/tenants").json()
    assert (stored["rate_per_second"], stored["concurrency"], stored["updated_by"]) == (2, 3, "cli")
    refused = cli.invoke(app, ["connectors", "tenant-limits", "internal", "tenant-a", "--rate", "2.5"])
    assert refused.exit_code == 2
    assert "whole number" in refused.output
    cleared = cli.invoke(app, ["connectors", "tenant-limits", "internal", "tenant-a", "--clear"])
    assert cleared.exit_code == 0, cleared.output
    with harness.client("ops") as client:
        assert client.get("/admin/connectors/internal/tenants").json() == []
