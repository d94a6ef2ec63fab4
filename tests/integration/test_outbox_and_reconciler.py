"""Signals leave through the transactional outbox (signed, retried, at least once); the reconciler
finishes attempts whose workflow is gone."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from fulfill.domain.models import ExecutionAttempt, ExecutionStatus
from fulfill.engine.reconciler import reconcile_once
from fulfill.store import executions, outbox
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, WebhookSink, wait_for


def test_signal_reaches_the_webhook_signed_after_refusals(tmp_path: Path) -> None:
    sink = WebhookSink(refuse=2)
    harness = Harness(make_settings(tmp_path, webhook_urls=[sink.url], webhook_secret="hook-secret")).start()
    try:
        with harness.client() as client:
            status = harness.run_task(client)
        intent_id = status["action_intent_id"]
        wait_for(lambda: sink.deliveries, timeout=20)
        [delivery] = sink.deliveries
        assert sink.refused == 2
        body = json.loads(delivery.body)
        assert body["eventType"] == "SIGNAL_CREATED"
        assert body["payload"]["signalId"] == f"exec-{intent_id}-acc-1-ACTION_EXECUTED"
        assert body["signal"]["signalType"] == "ACTION_EXECUTED"
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        expected = hmac.new(
            b"hook-secret", headers["x-fulfill-timestamp"].encode() + b"." + delivery.body, hashlib.sha256
        ).hexdigest()
        assert headers["x-fulfill-signature"] == f"sha256={expected}"
        assert headers["x-fulfill-event-id"] == f"signal:{body['payload']['signalId']}"
        with harness.db.read() as conn:
            [row] = outbox.deliveries_for(conn, headers["x-fulfill-event-id"])
        assert row["status"] == "DELIVERED"
        assert row["attempts"] == 3
    finally:
        harness.stop()
        sink.close()


def test_reconciler_finishes_an_attempt_whose_workflow_is_gone(harness: Harness) -> None:
    clock = harness.service.clock
    started = clock.now_iso()
    attempt = ExecutionAttempt(
        tenant_id="t1",
        account_id="acc-1",
        action_intent_id="ai_orphan",
        attempt_count=1,
        attempt_id="attempt_orphan",
        workflow_id="exec-ai_orphan",
        status=ExecutionStatus.RUNNING,
        trace_id="trace-orphan",
        started_at=started,
        updated_at=started,
    )
    with harness.db.write() as conn:
        executions.insert_attempt(conn, attempt, deadline_epoch=clock.now() + 5)
    assert reconcile_once(harness.service.runtime) == 0  # still within its budget
    clock.advance(5 + harness.settings.reconcile_grace_seconds + 1)
    assert reconcile_once(harness.service.runtime) == 1
    assert reconcile_once(harness.service.runtime) == 0
    with harness.db.read() as conn:
        finished = executions.get_attempt(conn, "t1", "acc-1", "ai_orphan")
        outcome = executions.get_outcome(conn, "t1", "acc-1", "ai_orphan", 1)
        ledger = [e.event_type for e in executions.list_ledger(conn, "t1", "ai_orphan")]
    assert finished is not None
    assert finished.status is ExecutionStatus.FAILED
    assert outcome is not None
    assert (outcome.error_class, outcome.error_code) == ("TIMEOUT", "EXECUTION_ABANDONED")
    assert ledger == ["ACTION_FAILED", "SIGNAL"]
    assert harness.signal_rows("ai_orphan") == 1


def test_reconciler_stops_a_workflow_stuck_far_past_its_budget(proxied: tuple[Harness, FaultyProxy]) -> None:
    from dbos import DBOS

    harness, proxy = proxied
    proxy.add_faults(Fault("hold"))  # the tool call hangs
    with harness.client() as client:
        intent_id = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, intent_id)
        assert proxy.state.forwarded.wait(timeout=20)
        harness.service.clock.advance(300 + harness.settings.reconcile_grace_seconds + 1)
        assert reconcile_once(harness.service.runtime) == 1
        status = client.get(f"/executions/{intent_id}/status").json()
        proxy.state.release.set()
        wait_for(lambda: DBOS.get_workflow_status(f"exec-{intent_id}").status == "CANCELLED")
        assert client.get(f"/executions/{intent_id}/status").json() == status  # the recorded end stands
    assert (status["status"], status["error_code"]) == ("FAILED", "EXECUTION_ABANDONED")
    assert harness.outcome_rows(intent_id) == 1
    assert harness.signal_rows(intent_id) == 1
