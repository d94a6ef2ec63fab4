"""Invariant 1: any number of ACTION_APPROVED deliveries start at most one execution."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fulfill.domain.time import iso_from_epoch
from fulfill.store import executions
from tests.support.harness import Harness, approved_event, colleague_headers


def _imported_intent(harness: Harness, client, **body):  # type: ignore[no-untyped-def]
    now = harness.service.clock.now()
    return harness.create_intent(
        client, approval={"approved_by": "upstream-user", "approval_timestamp": iso_from_epoch(now)}, **body
    )


def test_twenty_concurrent_duplicates_then_late_duplicates_execute_once(harness: Harness) -> None:
    with harness.client() as client:
        intent = _imported_intent(harness, client)
    intent_id = intent["action_intent_id"]
    event = approved_event(intent_id)

    def deliver(_: int) -> int:
        with harness.client() as own:
            return own.post("/events", json=event).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(deliver, range(20)))
    assert codes == [202] * 20

    with harness.client() as client:
        status = harness.wait_terminal(client, intent_id)
        assert status["status"] == "SUCCEEDED"
        after_completion = client.post("/events", json=event)
        harness.service.clock.advance(100 * 86_400)
        months_later = client.post("/events", json=event)
        # the outcome still wins over the (now long expired) intent
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "SUCCEEDED"
    assert after_completion.status_code == 202
    assert months_later.status_code == 202

    assert harness.task_rows(intent_id) == 1
    assert harness.outcome_rows(intent_id) == 1
    assert harness.signal_rows(intent_id) == 1
    with harness.db.read() as conn:
        ledger = [e.event_type for e in executions.list_ledger(conn, "t1", intent_id)]
    assert ledger.count("EXECUTION_STARTED") == 1
    assert ledger.count("ACTION_EXECUTED") == 1


def test_events_for_an_executed_intent_never_restart_it_even_when_the_workflow_record_is_gone(
    harness: Harness,
) -> None:
    """If the orchestrator forgot the workflow (retention, restore), the attempt row still holds the lock."""
    from dbos import DBOS

    with harness.client() as client:
        intent = _imported_intent(harness, client)
        intent_id = intent["action_intent_id"]
        assert client.post("/events", json=approved_event(intent_id)).status_code == 202
        assert harness.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
        DBOS.delete_workflow(f"exec-t1/{intent_id}")
        assert client.post("/events", json=approved_event(intent_id)).status_code == 202
    assert harness.task_rows(intent_id) == 1
    assert harness.outcome_rows(intent_id) == 1


def test_an_approval_commits_its_execution_lock_and_concurrent_approvals_execute_once(
    harness: Harness,
) -> None:
    """Approving takes the lock (a QUEUED attempt) in the approval's own transaction: the attempt
    exists when the 202 is answered, and twenty approvals at once plus events start one execution."""
    with harness.client() as client:
        intent_id = harness.create_intent(client)["action_intent_id"]

    def approve(_: int) -> int:
        with harness.client() as own:
            return own.post(f"/intents/{intent_id}/approve", headers=colleague_headers(own)).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(approve, range(20)))
    assert set(codes) <= {202, 409}
    assert 202 in codes
    with harness.db.read() as conn:
        assert executions.get_attempt(conn, "t1", "acc-1", intent_id) is not None
    with harness.client() as client:
        assert client.post("/events", json=approved_event(intent_id)).status_code == 202
        assert harness.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    assert harness.task_rows(intent_id) == 1
    assert harness.outcome_rows(intent_id) == 1
    with harness.db.read() as conn:
        ledger = [e.event_type for e in executions.list_ledger(conn, "t1", intent_id)]
    assert ledger.count("ACTION_APPROVED") == 1
    assert ledger.count("EXECUTION_STARTED") == 1
