"""Invariant 2: every failure, at any step, ends in a recorded, classified terminal state."""

from __future__ import annotations

from typing import Any

from fulfill.domain.time import iso_from_epoch
from fulfill.store import executions
from tests.support.harness import Harness, approved_event, seed_intent


def _run_event(harness: Harness, intent_id: str) -> dict[str, Any]:
    with harness.client() as client:
        response = client.post("/events", json=approved_event(intent_id))
        assert response.status_code == 202, response.text
        return harness.wait_terminal(client, intent_id)


def _ledger(harness: Harness, intent_id: str) -> list[str]:
    with harness.db.read() as conn:
        return [e.event_type for e in executions.list_ledger(conn, "t1", intent_id)]


def test_expired_intent_ends_expired_with_its_ledger_entry(shared: Harness) -> None:
    now = shared.service.clock.now()
    with shared.client() as client:
        intent = shared.create_intent(
            client,
            expires_at=iso_from_epoch(now - 1),
            approval={"approved_by": "upstream", "approval_timestamp": iso_from_epoch(now - 60)},
        )
    status = _run_event(shared, intent["action_intent_id"])
    assert status["status"] == "EXPIRED"
    assert status["error_code"] == "INTENT_EXPIRED"
    assert shared.task_rows(intent["action_intent_id"]) == 0
    assert shared.signal_rows(intent["action_intent_id"]) == 1
    assert "EXECUTION_EXPIRED" in _ledger(shared, intent["action_intent_id"])


def test_unknown_action_type_fails_validation(shared: Harness) -> None:
    seed_intent(shared, "ai_unknown_type", action_type="REQUEST_RENEWAL_MEETING")
    status = _run_event(shared, "ai_unknown_type")
    assert status["status"] == "FAILED"
    assert (status["error_class"], status["error_code"]) == ("VALIDATION", "TOOL_MAPPING_NOT_FOUND")
    assert _ledger(shared, "ai_unknown_type")[-2:] == ["ACTION_FAILED", "SIGNAL"]


def test_missing_required_parameter_fails_validation(shared: Harness) -> None:
    seed_intent(shared, "ai_missing_title", parameters={"description": "no title"})
    status = _run_event(shared, "ai_missing_title")
    assert status["status"] == "FAILED"
    assert (status["error_class"], status["error_code"]) == ("VALIDATION", "MISSING_REQUIRED_PARAMETER")
    assert "title" in status["error_message"]
    assert shared.task_rows("ai_missing_title") == 0
    assert shared.signal_rows("ai_missing_title") == 1


def test_tool_business_failure_keeps_the_tools_classification(shared: Harness) -> None:
    with shared.client() as client:
        status = shared.run_task(client, parameters={"title": "   "})
    assert status["status"] == "FAILED"
    assert (status["error_class"], status["error_code"]) == ("VALIDATION", "VALIDATION_FAILED")
    assert status["error_message"] == "title must not be empty"
    assert shared.task_rows(status["action_intent_id"]) == 0


def test_tool_argument_of_the_wrong_type_is_a_validation_failure_without_echoing_values(
    shared: Harness,
) -> None:
    # An imported intent skips the create-time schema check; the gateway still refuses it.
    seed_intent(shared, "ai_wrong_type", parameters={"title": {"secret": "s3cr3t-value"}})
    status = _run_event(shared, "ai_wrong_type")
    assert status["status"] == "FAILED"
    assert (status["error_class"], status["error_code"]) == ("VALIDATION", "INVALID_TOOL_ARGUMENTS")
    assert "s3cr3t" not in status["error_message"]
    with shared.client() as client:
        created = client.post(
            "/intents",
            json={
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": {"secret": "s3cr3t-value"}},
            },
        )
    assert created.status_code == 422
    assert created.json()["code"] == "INVALID_PARAMETERS"
    assert created.json()["detail"] == "parameters.title: must be of type string"
