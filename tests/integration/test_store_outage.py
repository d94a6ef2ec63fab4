"""An outage of the database is waited out, not turned into a kill-switch stop.

The kill switches are read at preflight and right before every tool call (and about once a second
while a call waits for its connector). When the database cannot answer, the switch state is
unknown: the tool is not called, but the execution waits and reads again while its budget lasts,
and goes on once the database is back. A switch turned on during the outage is still honoured.

PostgreSQL: the service reaches its database through a TCP relay on 127.0.0.1 that the test cuts
(every connection dropped, new ones refused) for 20 s; the shared test server keeps running.
SQLite (one file, no network): every statement of the service's engine fails with SQLite's own
``disk I/O error`` for as long as the outage lasts.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from fulfill.domain.models import TenantExecutionConfig
from fulfill.store import executions as ledger_store
from fulfill.store import killswitches
from fulfill.store.db import Database
from fulfill.store.tables import execution_attempts
from tests.integration.test_flow_control import _waiting, put_limits
from tests.support import postgres
from tests.support.harness import ALL_SCOPES, Harness, make_settings
from tests.support.http_doubles import wait_for
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 20.0
# A step that could not record during the outage is forked by the reconciler once it is over.
RECONCILER = {"reconcile_interval_seconds": 1.0, "reconcile_grace_seconds": 2.0}


@dataclass
class Outage:
    harness: Harness
    direct: Database  # reaches the database whatever the outage (the test's own reads and writes)
    begin: Callable[[], None]
    end: Callable[[], None]


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    cleanup: list[Callable[[], None]] = []
    if postgres.enabled():
        real = make_url(postgres.create_database())
        proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
        cleanup.append(proxy.close)
        through = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        harness = Harness(make_settings(tmp_path, database_url=through, **RECONCILER)).start()
        direct = Database(real.render_as_string(hide_password=False))
        begin, end = proxy.cut, proxy.restore
    else:
        harness = Harness(make_settings(tmp_path, **RECONCILER)).start()
        direct = Database(harness.settings.database_url)
        down = threading.Event()

        def fail(*_args: Any) -> None:
            if down.is_set():
                raise sqlite3.OperationalError("disk I/O error")

        event.listen(harness.db.engine, "before_cursor_execute", fail)
        begin, end = down.set, down.clear
    yield Outage(harness, direct, begin, end)
    end()
    if postgres.enabled():
        _wait_until_no_workflow_is_pending(direct)
    direct.dispose()
    harness.stop()
    for step in cleanup:
        step()


def _wait_until_no_workflow_is_pending(direct: Database, timeout: float = 180.0) -> None:
    """A workflow thread that could not record a step during the outage goes on retrying that
    write inside DBOS, with a backoff that grew during the outage (and never stops on its own):
    let it reach the database again through the restored relay and finish before the service
    stops and the relay closes, or the thread would retry against a closed port for ever."""

    def pending() -> int:
        with direct.read() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM dbos.workflow_status WHERE status IN ('PENDING', 'ENQUEUED')")
            ).scalar_one()
        return int(count)

    wait_for(lambda: pending() == 0, timeout=timeout)


def test_a_database_outage_is_waited_out_and_a_switch_set_during_it_still_stops(outage: Outage) -> None:
    harness = outage.harness
    with harness.client() as client, harness.client("t2") as other:
        put_limits(client, "internal", 0.05, None)  # one call every 20 s: the next ones wait in line
        first = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, first)
        wait_for(lambda: harness.task_rows(first) == 1)
        waiting = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, waiting)
        stopped = harness.create_intent(other)["action_intent_id"]
        harness.approve(other, stopped)
        wait_for(lambda: _waiting(harness) == 2)  # both wait for the connector, re-reading switches

        outage.begin()
        time.sleep(OUTAGE_SECONDS / 2)
        with outage.direct.write() as conn:  # an operator stops tenant t2 while the service is cut off
            killswitches.put_tenant(
                conn,
                TenantExecutionConfig(tenant_id="t2", execution_enabled=False),
                now=harness.service.clock.now_iso(),
            )
        time.sleep(OUTAGE_SECONDS / 2)
        outage.end()

        succeeded = harness.wait_terminal(client, waiting, timeout=90)
        cancelled = harness.wait_terminal(other, stopped, timeout=90)
    assert succeeded["status"] == "SUCCEEDED", succeeded
    assert harness.task_rows(waiting) == 1
    assert harness.outcome_rows(waiting) == 1
    assert cancelled["status"] == "CANCELLED", cancelled
    assert cancelled["error_code"] == "KILL_SWITCH_ENABLED"
    assert "TENANT" in cancelled["error_message"]
    assert harness.task_rows(stopped) == 0


def test_an_outage_longer_than_the_budget_ends_failed_timeout_without_a_call(outage: Outage) -> None:
    harness = outage.harness
    with harness.client() as client:
        put_limits(client, "internal", 0.05, None)
        first = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, first)
        wait_for(lambda: harness.task_rows(first) == 1)
        short = harness.create_intent(client, execution_policy={"timeout_seconds": 4})["action_intent_id"]
        harness.approve(client, short)
        wait_for(lambda: _waiting(harness) == 1)

        outage.begin()
        time.sleep(8)  # twice its budget
        outage.end()
        failed = harness.wait_terminal(client, short, timeout=90)
    assert failed["status"] == "FAILED", failed
    assert failed["error_class"] == "TIMEOUT"
    assert failed["error_code"] == "EXECUTION_TIMEOUT"
    # Which read noticed the spent budget depends on where the outage found the workflow (the
    # switch read waiting it out, or a replay after the reconciler resumed it): never a switch.
    assert "LOOKUP_FAILED" not in failed["error_message"]
    assert harness.task_rows(short) == 0


def test_policy_writes_creations_and_approvals_during_an_outage_are_503_and_nothing_half_done(
    outage: Outage,
) -> None:
    """Writing a policy, creating an intent a policy auto-approves, and racing approvals of a
    two-approval intent while the database is gone: each answers 503, and once the database is
    back the same requests do everything once (one execution, one decision, one count each)."""
    harness = outage.harness
    tenant = "outage-policies"
    scopes = [scope for scope in ALL_SCOPES if scope != "platform:admin"]
    auto_body = {
        "name": "routine",
        "match": {"when": "params.title.startsWith('Routine')"},
        "decision": "AUTO_APPROVE",
    }
    with (
        harness.client(tenant, scopes, subject="admin") as admin,
        harness.client(tenant, scopes, subject="ada") as ada,
        harness.client(tenant, scopes, subject="bob") as bob,
        harness.client(tenant, scopes, subject="carol") as carol,
    ):
        auto = admin.post("/admin/policies", json=auto_body).json()["policy_id"]
        two = {"name": "two", "match": {"when": "params.title.startsWith('Two')"}}
        assert (
            admin.post(
                "/admin/policies", json={**two, "decision": "REQUIRE_APPROVAL", "approvals_required": 2}
            ).status_code
            == 201
        )
        pending = harness.create_intent(ada, parameters={"title": "Two signatures"})["action_intent_id"]
        routine = {
            "action_intent_id": f"ai_outage_{uuid.uuid4().hex[:8]}",
            "action_type": "CREATE_INTERNAL_TASK",
            "account_id": "acc-1",
            "parameters": {"title": "Routine check"},
        }

        outage.begin()
        try:
            answers = [
                admin.post("/admin/policies", json={**auto_body, "name": "during"}),
                admin.put(f"/admin/policies/{auto}", json={**auto_body, "name": "renamed"}),
                admin.delete(f"/admin/policies/{auto}"),
                ada.post("/intents", json=routine),
            ]
            with ThreadPoolExecutor(max_workers=6) as pool:
                answers += list(pool.map(lambda c: c.post(f"/intents/{pending}/approve"), [bob, carol] * 3))
        finally:
            outage.end()
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["code"] == "STORE_UNAVAILABLE"
            assert "Retry-After" in answer.headers

        listed = admin.get("/admin/policies").json()["policies"]
        assert [(p["name"], p["version"]) for p in listed if p["policy_id"] == auto] == [("routine", 1)]
        assert len(listed) == 2
        assert ada.get(f"/executions/{pending}/status").json().get("approvals", []) == []

        created = ada.post("/intents", json=routine)
        assert created.status_code == 201, created.text  # the first try stored nothing
        assert created.json()["approval_status"] == "APPROVED"
        intent_id = routine["action_intent_id"]
        assert harness.wait_terminal(ada, intent_id)["status"] == "SUCCEEDED"
        assert bob.post(f"/intents/{pending}/approve").json()["approval_status"] == "PENDING_APPROVAL"
        assert carol.post(f"/intents/{pending}/approve").json()["approval_status"] == "APPROVED"
        assert harness.wait_terminal(ada, pending)["status"] == "SUCCEEDED"
    for done in (intent_id, pending):
        assert harness.task_rows(done) == 1
        assert harness.count(execution_attempts, action_intent_id=done) == 1
    with outage.direct.read() as conn:
        entries = ledger_store.list_ledger(conn, tenant, intent_id)
    assert [e.event_type for e in entries].count("POLICY_EVALUATED") == 1
