"""Approval policies decide at creation, over the HTTP API and the agent's front door (SQLite, and
PostgreSQL on its pass).

A policy written with ``POST /admin/policies`` is evaluated once, in the transaction that stores
the intent: AUTO_APPROVE stores it APPROVED by the policy and executes it (approval source POLICY);
DENY stores it REJECTED (201) and never executes it; REQUIRE_APPROVAL keeps it pending with the
policy's rule. SHADOW policies change nothing but the ledger. Every decision is a
``POLICY_EVALUATED`` entry naming its policy (the default rule's has a null ``policy_id``).

Every test has its own tenant: a tenant's policies apply to no other tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fulfill.store.tables import execution_attempts
from tests.integration.test_agent_mcp import AGENT_SCOPES, propose, wait_completed
from tests.support.agent_mcp import TaskHandle
from tests.support.harness import ALL_SCOPES, Harness, make_settings

TITLE = {"title": "Call the customer"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(
        make_settings(tmp_path_factory.mktemp("policy-decisions"), agent_wait_seconds=1.0)
    ).start()
    yield running
    running.stop()


def _tenant() -> str:
    return f"pd{uuid.uuid4().hex[:10]}"


def _person(h: Harness, tenant: str, subject: str = "ada@acme.example") -> httpx.Client:
    return h.client(tenant, ALL_SCOPES, subject=subject)


def _policy(client: httpx.Client, **body: Any) -> dict[str, Any]:
    """Write a policy with the client's token (its tenant's admin; ``platform:admin`` for a
    platform policy): the stored policy."""
    payload: dict[str, Any] = {"name": "a policy", "decision": "AUTO_APPROVE"}
    payload.update(body)
    response = client.post("/admin/policies", json=payload)
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored


def _delete(client: httpx.Client, policy: dict[str, Any]) -> None:
    response = client.delete(f"/admin/policies/{policy['policy_id']}")
    assert response.status_code == 204, response.text


def _create(client: httpx.Client, expected: int = 201, **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "action_type": "CREATE_INTERNAL_TASK",
        "account_id": "acc-1",
        "parameters": dict(TITLE),
    }
    payload.update(body)
    response = client.post("/intents", json=payload)
    assert response.status_code == expected, response.text
    created: dict[str, Any] = response.json()
    return created


def _timeline(client: httpx.Client, intent_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/executions/{intent_id}/timeline")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def _of(entries: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [entry["data"] for entry in entries if entry["event_type"] == event_type]


def _attempts(h: Harness, intent_id: str) -> int:
    return h.count(execution_attempts, action_intent_id=intent_id)


def test_auto_approve_stores_it_approved_by_the_policy_and_executes_it(service: Harness) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        policy = _policy(
            ada,
            name="small tasks approve themselves",
            match={"action_types": ["CREATE_INTERNAL_TASK"]},
        )
        created = _create(ada)
        intent_id = created["action_intent_id"]
        assert created["approval_status"] == "APPROVED"
        assert created["approved_by"] == f"policy:{policy['policy_id']}"
        assert created["action_hash"].startswith("v1:")
        assert created["approval_rule"]["policy_id"] == policy["policy_id"]
        assert created["approval_rule"]["decision"] == "AUTO_APPROVE"
        done = service.wait_terminal(ada, intent_id)
        assert done["status"] == "SUCCEEDED"
        assert service.task_rows(intent_id) == 1
        entries = _timeline(ada, intent_id)
        [evaluated] = _of(entries, "POLICY_EVALUATED")
        assert evaluated["policy_id"] == policy["policy_id"]
        assert evaluated["policy_version"] == 1
        assert evaluated["policy_name"] == "small tasks approve themselves"
        assert (evaluated["decision"], evaluated["mode"]) == ("AUTO_APPROVE", "ENFORCE")
        assert (evaluated["applied"], evaluated["outcome"]) == (True, "auto-approved")
        [approved] = _of(entries, "ACTION_APPROVED")
        assert approved["approval_source"] == "POLICY"
        assert approved["approved_by"] == f"policy:{policy['policy_id']}"
        assert (approved["policy_id"], approved["policy_version"]) == (policy["policy_id"], 1)
        assert approved["action_hash"] == created["action_hash"]
        [started] = _of(entries, "EXECUTION_STARTED")
        assert (started["approval_source"], started["auto_executed"]) == ("POLICY", True)
        # Nobody approves it again: it is approved already, and executed once.
        assert _attempts(service, intent_id) == 1


def test_deny_stores_it_rejected_with_the_policy_named_and_never_executes_it(service: Harness) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        policy = _policy(ada, name="no tasks on acc-1", decision="DENY", match={"account_ids": ["acc-1"]})
        created = _create(ada)
        intent_id = created["action_intent_id"]
        assert created["approval_status"] == "REJECTED"
        assert created.get("approved_by") is None
        assert created.get("action_hash") is None
        status = ada.get(f"/executions/{intent_id}/status").json()
        assert status["status"] == "CANCELLED"
        entries = _timeline(ada, intent_id)
        [evaluated] = _of(entries, "POLICY_EVALUATED")
        assert (evaluated["policy_id"], evaluated["outcome"], evaluated["applied"]) == (
            policy["policy_id"],
            "denied",
            True,
        )
        [rejected] = _of(entries, "INTENT_REJECTED")
        assert rejected["decided_by"] == f"policy:{policy['policy_id']}"
        assert (rejected["policy_id"], rejected["policy_version"]) == (policy["policy_id"], 1)
        refused = service.colleague(ada).post(f"/intents/{intent_id}/approve")
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "INVALID_TRANSITION"
        assert _attempts(service, intent_id) == 0
        assert service.task_rows(intent_id) == 0
        # Another account is not matched: today's behaviour stands there.
        other = _create(ada, account_id="acc-2")
        assert other["approval_status"] == "PENDING_APPROVAL"


def test_require_approval_of_two_keeps_it_pending_with_the_policys_rule(service: Harness) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        policy = _policy(
            ada,
            name="two people",
            decision="REQUIRE_APPROVAL",
            approvals_required=2,
            approver_scopes=["admin"],
        )
        created = _create(ada)
        intent_id = created["action_intent_id"]
        assert created["approval_status"] == "PENDING_APPROVAL"
        rule = created["approval_rule"]
        assert (rule["policy_id"], rule["approvals_required"], rule["approver_scopes"]) == (
            policy["policy_id"],
            2,
            ["admin"],
        )
        assert ada.get(f"/executions/{intent_id}/status").json()["status"] == "PENDING"
        [evaluated] = _of(_timeline(ada, intent_id), "POLICY_EVALUATED")
        assert (evaluated["outcome"], evaluated["decision"]) == ("requires 2 approvals", "REQUIRE_APPROVAL")
        assert _attempts(service, intent_id) == 0


def test_a_shadow_policy_changes_nothing_but_the_ledger(service: Harness) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        shadow = _policy(ada, name="watching", mode="SHADOW")
        created = _create(ada)
        intent_id = created["action_intent_id"]
        assert created["approval_status"] == "PENDING_APPROVAL"
        assert created.get("approved_by") is None
        assert created["approval_rule"]["policy_id"] is None  # the default rule: one person
        entries = _timeline(ada, intent_id)
        default, watched = _of(entries, "POLICY_EVALUATED")
        assert (default["policy_id"], default["applied"], default["outcome"]) == (
            None,
            True,
            "requires 1 approval",
        )
        assert (watched["policy_id"], watched["mode"], watched["applied"], watched["outcome"]) == (
            shadow["policy_id"],
            "SHADOW",
            False,
            "would have auto-approved",
        )
        assert _of(entries, "ACTION_APPROVED") == []
        assert _attempts(service, intent_id) == 0
        # A person's approval still decides, as without the policy.
        service.approve(ada, intent_id)
        assert service.wait_terminal(ada, intent_id)["status"] == "SUCCEEDED"
        [approved] = _of(_timeline(ada, intent_id), "ACTION_APPROVED")
        assert approved["approval_source"] == "HUMAN"


def test_the_tenants_policies_come_before_the_platforms_which_apply_where_they_do_not_match(
    service: Harness,
) -> None:
    tenant, bystander = _tenant(), _tenant()
    account = f"acc-{uuid.uuid4().hex[:8]}"  # the platform policy applies to this account only
    with _person(service, tenant) as ada, _person(service, bystander) as bea:
        platform = _policy(
            ada,
            scope="platform",
            name="platform: deny",
            decision="DENY",
            priority=0,
            match={"account_ids": [account]},
        )
        try:
            own = _policy(
                ada, name="tenant: auto", priority=1_000, match={"when": "params.title == 'routine'"}
            )
            routine = _create(ada, account_id=account, parameters={"title": "routine"})
            assert routine["approval_status"] == "APPROVED"
            assert routine["approval_rule"]["policy_id"] == own["policy_id"]
            other = _create(ada, account_id=account, parameters={"title": "something else"})
            assert other["approval_status"] == "REJECTED"
            assert other["approval_rule"]["policy_id"] == platform["policy_id"]
            [evaluated] = _of(_timeline(ada, other["action_intent_id"]), "POLICY_EVALUATED")
            assert (evaluated["policy_id"], evaluated["outcome"]) == (platform["policy_id"], "denied")
            # Another tenant without policies of its own: the platform's applies, the tenant's does not.
            elsewhere = _create(bea, account_id=account, parameters={"title": "routine"})
            assert elsewhere["approval_status"] == "REJECTED"
            assert _create(bea, parameters={"title": "routine"})["approval_status"] == "PENDING_APPROVAL"
            service.wait_terminal(ada, routine["action_intent_id"])
        finally:
            _delete(ada, platform)


def test_a_when_expression_over_the_parameters_decides(service: Harness) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        _policy(ada, name="short titles", match={"when": "size(params.title) < 20"})
        short = _create(ada, parameters={"title": "short"})
        long = _create(ada, parameters={"title": "a title well beyond twenty characters"})
        assert short["approval_status"] == "APPROVED"
        assert long["approval_status"] == "PENDING_APPROVAL"
        [default] = _of(_timeline(ada, long["action_intent_id"]), "POLICY_EVALUATED")
        assert default["policy_id"] is None
        service.wait_terminal(ada, short["action_intent_id"])


def test_an_expression_that_fails_is_fail_safe_and_its_error_is_recorded(service: Harness) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        # Fails on an intent without "amount": AUTO_APPROVE does not match, DENY does.
        auto = _policy(ada, name="auto", priority=1, match={"when": "params.amount < 100"})
        created = _create(ada)
        assert created["approval_status"] == "PENDING_APPROVAL"
        default, failed = _of(_timeline(ada, created["action_intent_id"]), "POLICY_EVALUATED")
        assert default["policy_id"] is None
        assert (failed["policy_id"], failed["applied"]) == (auto["policy_id"], False)
        assert "amount" in failed["error"]
        deny = _policy(ada, name="deny", decision="DENY", priority=2, match={"when": "params.amount > 1000"})
        denied = _create(ada)
        assert denied["approval_status"] == "REJECTED"
        entries = _timeline(ada, denied["action_intent_id"])
        by_policy = {data["policy_id"]: data for data in _of(entries, "POLICY_EVALUATED")}
        assert by_policy[deny["policy_id"]]["outcome"] == "denied"
        assert "amount" in by_policy[deny["policy_id"]]["error"]
        assert "amount" in by_policy[auto["policy_id"]]["error"]
        assert _attempts(service, denied["action_intent_id"]) == 0


def _import(client: httpx.Client, expected: int, **body: Any) -> dict[str, Any]:
    approval = {"approved_by": "upstream-approver", "approval_timestamp": "2026-01-01T00:00:00Z"}
    return _create(client, expected, approval=approval, **body)


def test_imports_follow_the_policy_that_applies(service: Harness) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        _policy(
            ada,
            name="two",
            decision="REQUIRE_APPROVAL",
            approvals_required=2,
            match={"account_ids": ["acc-2"]},
        )
        _policy(
            ada,
            name="crm approvers",
            decision="REQUIRE_APPROVAL",
            approver_scopes=["approvers:crm"],
            match={"account_ids": ["acc-3"]},
        )
        _policy(ada, name="deny", decision="DENY", match={"account_ids": ["acc-4"]})
        two = _import(ada, 403, account_id="acc-2")
        assert two["code"] == "POLICY_REQUIRES_APPROVALS"
        assert "2 distinct approvals" in two["detail"]
        scopes = _import(ada, 403, account_id="acc-3")
        assert scopes["code"] == "POLICY_REQUIRES_APPROVALS"
        assert "approvers:crm" in scopes["detail"]
        with service.client(tenant, [*ALL_SCOPES, "approvers:crm"], subject="crm-lead") as lead:
            held = _import(lead, 201, account_id="acc-3")
            assert held["approval_status"] == "APPROVED"
            assert held["approved_by"] == "upstream-approver"
        denied = _import(ada, 201, account_id="acc-4")
        assert denied["approval_status"] == "REJECTED"
        assert denied.get("approved_by") is None
        assert _attempts(service, denied["action_intent_id"]) == 0
        # No policy applies: the import is stored approved, as before.
        assert _import(ada, 201, account_id="acc-1")["approval_status"] == "APPROVED"


def test_a_repeated_post_returns_the_stored_intent_and_evaluates_nothing_again(service: Harness) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        policy = _policy(ada, name="deny", decision="DENY")
        intent_id = f"ai_{uuid.uuid4().hex[:12]}"
        first = _create(ada, action_intent_id=intent_id)
        _delete(ada, policy)
        again = _create(ada, 200, action_intent_id=intent_id)
        assert again == first
        assert len(_of(_timeline(ada, intent_id), "POLICY_EVALUATED")) == 1
        assert _create(ada)["approval_status"] == "PENDING_APPROVAL"  # the policy no longer applies


def test_another_tenants_policy_never_applies(service: Harness) -> None:
    tenant, other = _tenant(), _tenant()
    with _person(service, tenant) as ada, _person(service, other) as eve:
        _policy(eve, name="eve's deny", decision="DENY")
        assert _create(ada)["approval_status"] == "PENDING_APPROVAL"


def test_the_agent_door_auto_approved_proposal_completes_and_a_denied_one_names_the_policy(
    service: Harness,
) -> None:
    tenant = _tenant()
    agent = service.token(tenant, AGENT_SCOPES, subject="agent-7")
    with _person(service, tenant) as ada:
        _policy(ada, name="routine", match={"when": "params.title == 'routine'"})
        _policy(ada, name="nothing urgent", decision="DENY", match={"when": "params.title == 'urgent'"})
        task = propose(service, agent, {"account_id": "acc-1", "title": "routine"})
        assert isinstance(task, TaskHandle)
        done = wait_completed(service, agent, task.task_id)
        assert done.status == "completed"
        assert done.status_message == "executed"
        intent = ada.get(f"/intents/{task.task_id}").json()
        assert (intent["approval_status"], intent["proposed_by"]) == ("APPROVED", "agent-7")
        assert service.wait_terminal(ada, task.task_id)["status"] == "SUCCEEDED"
        denied = propose(service, agent, {"account_id": "acc-1", "title": "urgent"})
        assert isinstance(denied, TaskHandle)
        over = wait_completed(service, agent, denied.task_id)
        assert over.status == "completed"
        assert "denied by the approval policy 'nothing urgent'" in (over.status_message or "")
        assert _attempts(service, denied.task_id) == 0


def test_an_escalate_policy_opens_its_window_at_the_expiry_the_intent_would_have_had(
    service: Harness,
) -> None:
    tenant = _tenant()
    with _person(service, tenant) as ada:
        policy = _policy(
            ada,
            name="leads after a day",
            decision="REQUIRE_APPROVAL",
            on_expiry="ESCALATE",
            escalation={"approver_scopes": ["approvers:leads"], "extend_seconds": 3600},
        )
        asked = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        created = _create(ada, expires_at=asked.isoformat().replace("+00:00", "Z"))
        assert created["approval_status"] == "PENDING_APPROVAL"
        assert created["escalates_at_epoch"] == int(asked.timestamp())
        assert created["expires_at_epoch"] == int(asked.timestamp()) + 3600
        rule = created["approval_rule"]
        assert (rule["policy_id"], rule["on_expiry"], rule["escalate_to_scopes"]) == (
            policy["policy_id"],
            "ESCALATE",
            ["approvers:leads"],
        )
        assert rule["escalation_extend_seconds"] == 3600
        # Without a policy, the expiry asked for is the expiry.
        with _person(service, _tenant()) as elsewhere:
            plain = _create(elsewhere, expires_at=asked.isoformat().replace("+00:00", "Z"))
        assert (plain["expires_at_epoch"], plain.get("escalates_at_epoch")) == (int(asked.timestamp()), None)


def test_a_tenants_auto_approve_does_not_approve_what_needs_scopes_a_person_must_hold(
    service: Harness,
) -> None:
    tenant = _tenant()
    guarded = {
        "action_type": "CREATE_GUARDED_TASK",
        "tool_name": "internal.create_task",
        "required_scopes": ["approve:guarded"],
        "parameter_mapping": {"title": {"toolParam": "title", "required": True}},
    }
    with service.client("ops", ["admin", "platform:admin"]) as ops:
        registered = ops.post("/admin/registry", json=guarded)
        assert registered.status_code == 201, registered.text
    with _person(service, tenant) as ada:
        held = _policy(ada, name="everything approves itself")
        created = _create(ada, action_type="CREATE_GUARDED_TASK")
        assert created["approval_status"] == "PENDING_APPROVAL"
        assert created["approval_rule"]["policy_id"] is None
        by_policy = {
            e["policy_id"]: e for e in _of(_timeline(ada, created["action_intent_id"]), "POLICY_EVALUATED")
        }
        assert (by_policy[held["policy_id"]]["mode"], by_policy[held["policy_id"]]["applied"]) == (
            "ENFORCE",
            False,
        )
        assert "approve:guarded" in by_policy[held["policy_id"]]["outcome"]
        assert _attempts(service, created["action_intent_id"]) == 0
        # Where no scope is required, the same policy approves.
        assert _create(ada)["approval_status"] == "APPROVED"


def test_concurrent_posts_of_one_auto_approved_intent_start_one_execution(service: Harness) -> None:
    tenant = _tenant()
    intent_id = f"ai_{uuid.uuid4().hex[:12]}"
    payload = {
        "action_intent_id": intent_id,
        "action_type": "CREATE_INTERNAL_TASK",
        "account_id": "acc-1",
        "parameters": dict(TITLE),
    }
    with _person(service, tenant) as ada:
        _policy(ada, name="routine")

        def post(_: int) -> tuple[int, str]:
            with _person(service, tenant) as client:
                response = client.post("/intents", json=payload)
            return response.status_code, response.json()["approval_status"]

        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(post, range(10)))
        assert sorted(code for code, _ in answers) == [200] * 9 + [201]
        assert {status for _, status in answers} == {"APPROVED"}
        assert service.wait_terminal(ada, intent_id)["status"] == "SUCCEEDED"
        assert _attempts(service, intent_id) == 1
        assert service.task_rows(intent_id) == 1
        entries = _timeline(ada, intent_id)
        assert len(_of(entries, "POLICY_EVALUATED")) == 1
        assert len(_of(entries, "ACTION_APPROVED")) == 1
