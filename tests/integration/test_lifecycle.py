"""Reject, cancel (before the tool call, during the write, after the write) and the admin rerun."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from fulfill.engine import steps
from fulfill.store import executions
from fulfill.store.tables import internal_tasks
from tests.support.harness import Harness
from tests.support.http_doubles import Fault, FaultyProxy, wait_for


def _ledger(harness: Harness, intent_id: str) -> list[str]:
    with harness.db.read() as conn:
        return [e.event_type for e in executions.list_ledger(conn, "t1", intent_id)]


def _task_deleted(harness: Harness, intent_id: str) -> bool:
    with harness.db.read() as conn:
        [row] = conn.execute(
            select(internal_tasks).where(internal_tasks.c.action_intent_id == intent_id)
        ).all()
    return row.deleted_at is not None


def test_reject_then_approve_is_a_conflict(harness: Harness) -> None:
    with harness.client() as client:
        intent_id = harness.create_intent(client)["action_intent_id"]
        rejected = client.post(f"/intents/{intent_id}/reject")
        assert rejected.status_code == 202
        assert rejected.json() == {
            "action_intent_id": intent_id,
            "approval_status": "REJECTED",
            "warnings": [],
        }
        assert client.post(f"/intents/{intent_id}/reject").status_code == 202  # idempotent
        assert (
            harness.colleague(client).post(f"/intents/{intent_id}/approve").json()["code"]
            == "INVALID_TRANSITION"
        )
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 409
        status = client.get(f"/executions/{intent_id}/status").json()
        assert (status["status"], status["error_code"]) == ("CANCELLED", "INTENT_REJECTED")
        approved = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, approved)
        assert client.post(f"/intents/{approved}/reject").status_code == 409
        [listed] = client.get("/accounts/acc-1/executions", params={"status": "CANCELLED"}).json()[
            "executions"
        ]
        assert listed["action_intent_id"] == intent_id
    assert _ledger(harness, intent_id) == ["INTENT_REJECTED"]


def test_cancel_before_approval_means_it_never_runs(harness: Harness) -> None:
    with harness.client() as client:
        intent_id = harness.create_intent(client)["action_intent_id"]
        assert client.post(f"/intents/{intent_id}/cancel").json()["approval_status"] == "CANCELLED"
        assert harness.colleague(client).post(f"/intents/{intent_id}/approve").status_code == 409
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "CANCELLED"
    assert harness.task_rows(intent_id) == 0


def test_cancel_of_a_running_execution_before_its_tool_call(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = harness.client()
    real_map = steps.map_action_to_tool

    def map_then_cancel(deps: Any, checked: Any) -> Any:
        call = real_map(deps, checked)
        assert client.post(f"/intents/{checked.intent.action_intent_id}/cancel").status_code == 202
        return call

    monkeypatch.setattr(steps, "map_action_to_tool", map_then_cancel)
    with client:
        status = harness.run_task(client)
    assert (status["status"], status["error_code"]) == ("CANCELLED", "INTENT_CANCELLED")
    assert harness.task_rows(status["action_intent_id"]) == 0
    assert "EXECUTION_CANCELLED" in _ledger(harness, status["action_intent_id"])


def test_cancel_after_the_write_compensates_automatically(harness: Harness) -> None:
    with harness.client() as client:
        status = harness.run_task(client)
        intent_id = status["action_intent_id"]
        assert harness.task_rows(intent_id) == 1
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        compensated = harness.wait_compensated(client, intent_id)
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202  # a repeat changes nothing
    assert compensated["status"] == "SUCCEEDED"  # it did execute; the write was then undone
    assert _task_deleted(harness, intent_id)
    assert _ledger(harness, intent_id)[-3:] == [
        "INTENT_CANCELLED",
        "COMPENSATION_STARTED",
        "COMPENSATION_COMPLETED",
    ]


def test_cancel_of_a_manual_action_asks_for_a_person(harness: Harness) -> None:
    with harness.client() as client:
        registered = client.post(
            "/admin/registry",
            json={
                "action_type": "CREATE_INTERNAL_TASK",
                "tool_name": "internal.create_task",
                "compensation_strategy": "MANUAL",
                "parameter_mapping": {"title": {"toolParam": "title", "required": True}},
            },
        )
        assert registered.status_code == 201, registered.text
        status = harness.run_task(client)
        assert client.post(f"/intents/{status['action_intent_id']}/cancel").status_code == 202
        pending = wait_for(
            lambda: (
                (body := client.get(f"/executions/{status['action_intent_id']}/status").json())[
                    "compensation_status"
                ]
                == "PENDING"
                and body
            )
        )
    assert pending["status"] == "SUCCEEDED"
    assert not _task_deleted(harness, status["action_intent_id"])
    assert "COMPENSATION_REQUIRED" in _ledger(harness, status["action_intent_id"])


def test_cancel_while_the_tool_is_writing_compensates_the_write(proxied: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = proxied
    proxy.add_faults(Fault("hold"))
    with harness.client() as client:
        intent_id = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, intent_id)
        assert proxy.state.forwarded.wait(timeout=20)
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "RUNNING"
        [running] = client.get("/accounts/acc-1/executions", params={"status": "RUNNING"}).json()[
            "executions"
        ]
        assert running["action_intent_id"] == intent_id
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        proxy.state.release.set()
        final = wait_for(
            lambda: (
                (body := client.get(f"/executions/{intent_id}/status").json()).get("compensation_status")
                == "COMPLETED"
                and body
            )
        )
    assert final["status"] == "SUCCEEDED"
    assert _task_deleted(harness, intent_id)


def test_rerun_after_a_transient_failure_succeeds_with_one_write(
    proxied: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied
    # The first attempt writes, then loses every answer: it ends FAILED although the task exists.
    proxy.add_faults(Fault("status_after", 503), Fault("status_after", 503))
    policy = {"retry_count": 1, "timeout_seconds": 60, "max_attempts": 2}  # the first and one rerun
    with harness.client() as client:
        failed = harness.run_task(client, execution_policy=policy)
        intent_id = failed["action_intent_id"]
        assert (failed["status"], failed["error_class"]) == ("FAILED", "DOWNSTREAM")
        assert harness.task_rows(intent_id) == 1
        with harness.client(scopes=["intents:approve"]) as not_admin:
            assert not_admin.post(f"/intents/{intent_id}/rerun").status_code == 403
        rerun = client.post(f"/intents/{intent_id}/rerun", json={"reason": "gateway was down"})
        assert rerun.status_code == 202, rerun.text
        assert rerun.json()["attempt_count"] == 2
        final = wait_for(
            lambda: (
                (body := client.get(f"/executions/{intent_id}/status").json())["status"] == "SUCCEEDED"
                and body
            )
        )
        assert client.post(f"/intents/{intent_id}/rerun").json()["code"] == "NOT_RERUNNABLE"
        entries = client.get(f"/executions/{intent_id}/timeline").json()["entries"]
        timeline = [e["event_type"] for e in entries]
    # Each failed try of the first attempt is on the timeline: the retry, then the last try.
    tries = [e["data"] for e in entries if e["event_type"] == "TOOL_CALL_TRY_FAILED"]
    assert [(t["try"], t["max_tries"], t["will_retry"], t["error_code"]) for t in tries] == [
        (1, 2, True, "GATEWAY_HTTP_503"),
        (2, 2, False, "GATEWAY_HTTP_503"),
    ]
    assert final["attempt_count"] == 2
    assert final["external_object_refs"][0]["object_id"].startswith("task_")
    assert harness.task_rows(intent_id) == 1  # the rerun found the first attempt's write
    assert harness.outcome_rows(intent_id) == 2
    assert harness.signal_rows(intent_id) == 2
    assert timeline == [
        "ACTION_APPROVED",
        "EXECUTION_STARTED",
        "TOOL_CALL_TRY_FAILED",
        "TOOL_CALL_TRY_FAILED",
        "ACTION_FAILED",
        "SIGNAL",
        "RERUN_REQUESTED",
        "RERUN_STARTED",
        "EXECUTION_STARTED",
        "ACTION_EXECUTED",
        "SIGNAL",
    ]
