"""Fair share of a connector between tenants, per-tenant caps, and the platform cap on
``timeout_seconds``, against a running service on SQLite and PostgreSQL.

The order of calls is read from what the internal connector wrote (each task row's tenant and
creation time), so the assertions are about order and counts, not about how long anything took.
The same across several worker processes is in ``test_flow_control_processes.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from fulfill.store.tables import connector_calls, internal_tasks
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for

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


def tasks_in_order(harness: Harness) -> list[str]:
    """The tenant of every task the internal connector created, in the order it created them."""
    with harness.db.read() as conn:
        rows = conn.execute(select(internal_tasks.c.tenant_id, internal_tasks.c.created_at)).all()
    return [tenant for tenant, _ in sorted(rows, key=lambda row: row[1])]


def test_one_tenants_single_call_does_not_wait_behind_another_tenants_backlog(harness: Harness) -> None:
    """``internal`` at 2 calls per second; tenant A approves 12 intents, then tenant B one. B's call
    is served at the next turn or so, not after A's whole backlog (first come, first served would
    put it last)."""
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
    assert sorted(tenants) == ["tenant-a"] * 12 + ["tenant-b"]
