"""Every stored policy field does something: ``execution_policy.max_attempts`` bounds admin reruns,
the pinned registry version's ``required_scopes`` bound who may approve, and its ``risk_class`` is
shown on the intent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.harness import ALL_SCOPES, Harness, seed_intent
from tests.support.http_doubles import wait_for

PLATFORM_ADMIN = ["admin", "platform:admin"]
HIGH_RISK_SCOPE = "approve:high-risk"
HIGH_RISK = {
    "action_type": "CREATE_HIGH_RISK_TASK",
    "tool_name": "internal.create_task",
    "required_scopes": [HIGH_RISK_SCOPE, "approve:tasks"],
    "risk_class": "HIGH",
    "parameter_mapping": {"title": {"toolParam": "title", "required": True}},
}
APPROVER = [*ALL_SCOPES, HIGH_RISK_SCOPE, "approve:tasks"]


def _problem(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    return str(body["detail"])


@pytest.fixture(scope="module")
def high_risk(shared: Harness) -> int:
    """A registry version that requires two approval scopes, registered through the API."""
    with shared.client("ops", PLATFORM_ADMIN) as ops:
        registered = ops.post("/admin/registry", json=HIGH_RISK)
    assert registered.status_code == 201, registered.text
    assert registered.json()["required_scopes"] == HIGH_RISK["required_scopes"]
    return int(registered.json()["registry_version"])


def _high_risk_intent(client: httpx.Client, **extra: Any) -> httpx.Response:
    return client.post(
        "/intents",
        json={
            "action_type": "CREATE_HIGH_RISK_TASK",
            "account_id": "acc-1",
            "parameters": {"title": "Wire the refund"},
            **extra,
        },
    )


# --- required_scopes -------------------------------------------------------------------------------


def test_approval_needs_every_scope_the_pinned_registry_version_requires(
    shared: Harness, high_risk: int
) -> None:
    with shared.client() as client:
        created = _high_risk_intent(client)
        assert created.status_code == 201, created.text
        intent_id = created.json()["action_intent_id"]
        assert created.json()["registry_version"] == high_risk

        detail = _problem(
            shared.colleague(client).post(f"/intents/{intent_id}/approve"), 403, "MISSING_APPROVAL_SCOPE"
        )
        assert "approve:high-risk" in detail
        assert "approve:tasks" in detail
        with shared.client(scopes=[*ALL_SCOPES, HIGH_RISK_SCOPE]) as partial:
            detail = _problem(partial.post(f"/intents/{intent_id}/approve"), 403, "MISSING_APPROVAL_SCOPE")
        assert "approve:tasks" in detail
        assert "approve:high-risk" not in detail
        assert client.get(f"/intents/{intent_id}").json()["approval_status"] == "PENDING_APPROVAL"
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "PENDING"

        with shared.client(scopes=APPROVER) as approver:
            shared.approve(approver, intent_id)
        assert shared.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    assert shared.task_rows(intent_id) == 1


def test_importing_an_approved_intent_needs_the_same_scopes(shared: Harness, high_risk: int) -> None:
    approval = {"approved_by": "upstream", "approval_timestamp": "2026-01-02T03:04:05.678Z"}
    with shared.client() as client:
        refused = _high_risk_intent(client, action_intent_id="ai_import_refused", approval=approval)
        detail = _problem(refused, 403, "MISSING_APPROVAL_SCOPE")
        assert "approve:high-risk" in detail
        assert client.get("/intents/ai_import_refused").status_code == 404  # nothing was stored
        pending = _high_risk_intent(client, action_intent_id="ai_import_pending")
        assert pending.status_code == 201  # creating it for someone else to approve needs nothing more
    with shared.client(scopes=APPROVER) as approver:
        imported = _high_risk_intent(approver, action_intent_id="ai_import_allowed", approval=approval)
    assert imported.status_code == 201, imported.text
    assert imported.json()["approval_status"] == "APPROVED"


def test_a_token_that_may_only_propose_cannot_import_an_approval(shared: Harness) -> None:
    approval = {"approved_by": "the-agent-itself", "approval_timestamp": "2026-01-02T03:04:05.678Z"}
    with shared.client(scopes=["intents:write", "intents:read", "events:write"]) as agent:
        refused = agent.post(
            "/intents",
            json={
                "action_intent_id": "ai_self_approved",
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x"},
                "approval": approval,
            },
        )
        assert "intents:approve" in _problem(refused, 403, "MISSING_SCOPE")
        assert agent.get("/intents/ai_self_approved").status_code == 404  # nothing was stored


def test_an_action_type_without_required_scopes_needs_only_the_route_scope(shared: Harness) -> None:
    with shared.client(scopes=["intents:write", "intents:approve", "executions:read"]) as client:
        assert shared.run_task(client)["status"] == "SUCCEEDED"


# --- risk_class ------------------------------------------------------------------------------------


def test_the_intent_shows_the_risk_class_of_its_pinned_registry_version(
    shared: Harness, high_risk: int
) -> None:
    with shared.client() as client:
        task = shared.create_intent(client)
        assert task["risk_class"] == "MINIMAL"
        assert client.get(f"/intents/{task['action_intent_id']}").json()["risk_class"] == "MINIMAL"
        risky = _high_risk_intent(client).json()
        assert risky["risk_class"] == "HIGH"
        assert client.get(f"/intents/{risky['action_intent_id']}").json()["risk_class"] == "HIGH"


def test_an_intent_stored_before_risk_class_existed_reads_as_null(shared: Harness) -> None:
    seed_intent(shared, "ai_stored_before_risk_class")
    with shared.client() as client:
        stored = client.get("/intents/ai_stored_before_risk_class")
    assert stored.status_code == 200, stored.text
    assert "risk_class" in stored.json()
    assert stored.json()["risk_class"] is None


# --- max_attempts ----------------------------------------------------------------------------------


def _failed_run(shared: Harness, client: httpx.Client, **body: Any) -> str:
    """An execution whose tool was called and refused the call: FAILED, a try used."""
    status = shared.run_task(client, parameters={"title": "   "}, **body)
    assert (status["status"], status["error_code"]) == ("FAILED", "VALIDATION_FAILED"), status
    return str(status["action_intent_id"])


def test_a_rerun_beyond_max_attempts_is_refused(shared: Harness) -> None:
    with shared.client("t-max-attempts") as client:
        default_policy = _failed_run(shared, client)
        detail = _problem(client.post(f"/intents/{default_policy}/rerun"), 409, "MAX_ATTEMPTS_REACHED")
        assert "allows 1 attempt" in detail
        assert "max_attempts" in detail
        status = client.get(f"/executions/{default_policy}/status").json()
        assert (status["status"], status["attempt_count"]) == ("FAILED", 1)

        two = _failed_run(shared, client, execution_policy={"max_attempts": 2})
        rerun = client.post(f"/intents/{two}/rerun", json={"reason": "try again"})
        assert rerun.status_code == 202, rerun.text
        assert rerun.json()["attempt_count"] == 2
        wait_for(
            lambda: (
                (body := client.get(f"/executions/{two}/status").json())["status"] == "FAILED"
                and body["attempt_count"] == 2
            )
        )
        detail = _problem(client.post(f"/intents/{two}/rerun"), 409, "MAX_ATTEMPTS_REACHED")
        assert "allows 2 attempts" in detail


def test_an_admin_reruns_an_execution_a_kill_switch_stopped_whatever_max_attempts(shared: Harness) -> None:
    # The default max_attempts (1): a kill switch that stopped the execution before its tool call
    # used no try of it, so the admin's rerun is allowed, and the ledger says it went beyond.
    tenant = "t-rerun-after-stop"
    with shared.client(tenant) as client:
        off = {"execution_enabled": False, "disabled_action_types": []}
        assert client.put(f"/admin/tenants/{tenant}/execution", json=off).status_code == 200
        try:
            intent_id = shared.create_intent(client)["action_intent_id"]
            approved = shared.colleague(client).post(f"/intents/{intent_id}/approve")
            assert approved.status_code == 202, approved.text
            [warning] = approved.json()["warnings"]
            assert "kill switch TENANT is on" in warning
            assert "CANCELLED" in warning
            assert f"fulfill rerun {intent_id} --tenant {tenant}" in warning
            stopped = shared.wait_terminal(client, intent_id)
            assert (stopped["status"], stopped["error_code"]) == ("CANCELLED", "KILL_SWITCH_ENABLED")
        finally:
            on = {"execution_enabled": True, "disabled_action_types": []}
            assert client.put(f"/admin/tenants/{tenant}/execution", json=on).status_code == 200
        with shared.client(tenant, scopes=["intents:approve"]) as not_admin:
            assert not_admin.post(f"/intents/{intent_id}/rerun").status_code == 403
        rerun = client.post(f"/intents/{intent_id}/rerun", json={"reason": "switch is off again"})
        assert rerun.status_code == 202, rerun.text
        assert rerun.json()["attempt_count"] == 2
        final = wait_for(
            lambda: (
                (body := client.get(f"/executions/{intent_id}/status").json())["status"] == "SUCCEEDED"
                and body
            )
        )
        assert final["attempt_count"] == 2
        # A write happened: no more reruns (SUCCEEDED is not rerunnable).
        assert client.post(f"/intents/{intent_id}/rerun").json()["code"] == "NOT_RERUNNABLE"
        entries = client.get(f"/executions/{intent_id}/timeline").json()["entries"]
    [requested] = [e for e in entries if e["event_type"] == "RERUN_REQUESTED"]
    assert requested["data"]["after_stop"] == "KILL_SWITCH_ENABLED"
    assert requested["data"]["beyond_max_attempts"] is True
    assert requested["data"]["reason"] == "switch is off again"


def test_approving_with_no_stop_on_has_no_warning(shared: Harness) -> None:
    with shared.client("t-no-stop") as client:
        intent_id = shared.create_intent(client)["action_intent_id"]
        approved = shared.colleague(client).post(f"/intents/{intent_id}/approve")
        assert approved.status_code == 202, approved.text
        assert approved.json()["warnings"] == []
        shared.wait_terminal(client, intent_id)
