from __future__ import annotations

from fulfill.store import executions
from tests.support.harness import Harness


def test_approved_intent_executes_once_and_records_everything(harness: Harness) -> None:
    with harness.client() as client:
        intent = harness.create_intent(client, parameters={"title": "Renewal call", "description": "Q3"})
        assert intent["approval_status"] == "PENDING_APPROVAL"
        harness.approve(client, intent["action_intent_id"])
        status = harness.wait_terminal(client, intent["action_intent_id"])

    intent_id = intent["action_intent_id"]
    assert status["status"] == "SUCCEEDED"
    assert status["attempt_count"] == 1
    [ref] = status["external_object_refs"]
    assert ref["system"] == "INTERNAL"
    assert ref["object_type"] == "Task"
    assert harness.task_rows(intent_id) == 1
    assert harness.outcome_rows(intent_id) == 1
    assert harness.signal_rows(intent_id) == 1
    with harness.db.read() as conn:
        ledger = [entry.event_type for entry in executions.list_ledger(conn, "t1", intent_id)]
        [signal] = executions.list_signals(conn, "t1", intent_id)
    assert ledger == ["ACTION_APPROVED", "EXECUTION_STARTED", "ACTION_EXECUTED", "SIGNAL"]
    assert signal.signalId == f"exec-{intent_id}-acc-1-ACTION_EXECUTED"
    assert signal.signalType == "ACTION_EXECUTED"
