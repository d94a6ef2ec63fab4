"""Approving under an intent's approval rule, over a real service (SQLite, and PostgreSQL on its
pass): M of N distinct approvers, approver scopes, separation of duties in the three front doors
(HTTP API, console, agent endpoint), and edit before approve.

Each test has its own tenant, whose REQUIRE_APPROVAL policy (``POST /admin/policies``) gives the
intents it creates their approval rule.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from fulfill.client import default_limits
from fulfill.domain.action_hash import action_hash
from fulfill.domain.models import ActionIntentV1, LedgerEntry
from fulfill.store import executions as ledger_store
from fulfill.store import intents as intent_store
from fulfill.store.tables import execution_attempts, internal_tasks
from tests.support.agent_mcp import agent_client
from tests.support.console import Console
from tests.support.harness import ALL_SCOPES, Harness

APPROVER_SCOPE = "approvers:crm"


class World:
    """One test's tenant on the module's service."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.tenant = f"ma{uuid.uuid4().hex[:10]}"
        self.policies: dict[str, str] = {}
        self.browsers: list[Console] = []

    def client(self, subject: str, *extra: str, actor: str | None = None) -> httpx.Client:
        return self.harness.client(self.tenant, [*ALL_SCOPES, *extra], subject=subject, actor=actor)

    def token(self, subject: str, *extra: str, scopes: list[str] | None = None) -> str:
        return self.harness.token(self.tenant, scopes or [*ALL_SCOPES, *extra], subject=subject)

    def policy(self, **rule: Any) -> str:
        """The tenant's REQUIRE_APPROVAL policy for CREATE_INTERNAL_TASK with ``rule``, written
        once through the API; its id."""
        key = json.dumps(rule, sort_keys=True)
        if key not in self.policies:
            body = {
                "name": "internal tasks need approvers",
                "match": {"action_types": ["CREATE_INTERNAL_TASK"]},
                "decision": "REQUIRE_APPROVAL",
                **rule,
            }
            with self.client("admin@acme.example") as admin:
                created = admin.post("/admin/policies", json=body)
            assert created.status_code == 201, created.text
            self.policies[key] = created.json()["policy_id"]
        return self.policies[key]

    def pending(self, proposer: httpx.Client, **rule: Any) -> str:
        """A new intent proposed by ``proposer``; with ``rule``, under the policy that has it."""
        policy_id = self.policy(**rule) if rule else None
        intent_id: str = self.harness.create_intent(proposer)["action_intent_id"]
        stored = self.stored(intent_id)
        assert stored.approval_status.value == "PENDING_APPROVAL"
        if policy_id is not None:
            assert stored.approval_rule is not None
            assert stored.approval_rule.policy_id == policy_id
        return intent_id

    def stored(self, intent_id: str) -> ActionIntentV1:
        with self.harness.db.read() as conn:
            intent = intent_store.get_intent(conn, self.tenant, intent_id)
        assert intent is not None
        return intent

    def ledger(self, intent_id: str, event_type: str) -> list[LedgerEntry]:
        with self.harness.db.read() as conn:
            entries = ledger_store.list_ledger(conn, self.tenant, intent_id)
        return [e for e in entries if e.event_type == event_type]

    def console(self, subject: str) -> Console:
        """A browser signed in to the console as ``subject`` of the tenant."""
        browser = Console(self.harness)
        self.browsers.append(browser)
        return browser.login(tenant=self.tenant, subject=subject)

    def close(self) -> None:
        for browser in self.browsers:
            browser.close()


@pytest.fixture
def w(shared: Harness) -> Iterator[World]:
    world = World(shared)
    yield world
    world.close()


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _task_titles(harness: Harness, intent_id: str) -> list[str]:
    with harness.db.read() as conn:
        return list(
            conn.execute(
                select(internal_tasks.c.title).where(internal_tasks.c.action_intent_id == intent_id)
            ).scalars()
        )


def _attempts(harness: Harness, intent_id: str) -> int:
    return harness.count(execution_attempts, action_intent_id=intent_id)


# --- M of N -------------------------------------------------------------------------------------


def test_two_of_three_approvers_approve_and_a_repeat_counts_once(w: World) -> None:
    with (
        w.client("ada") as ada,
        w.client("bob") as bob,
        w.client("carol") as carol,
        w.client("dan") as dan,
    ):
        intent_id = w.pending(ada, approvals_required=2)
        first = bob.post(f"/intents/{intent_id}/approve", json={"comment": "looks right"})
        assert first.status_code == 202, first.text
        body = first.json()
        assert body["approval_status"] == "PENDING_APPROVAL"
        assert body["approvals_required"] == 2
        [given] = body["approvals"]
        assert given["approved_by"] == "bob"
        assert given["action_hash"] == action_hash(w.stored(intent_id))
        assert "action_hash" not in body  # not approved yet
        # The same approver again: accepted, nothing counted twice.
        repeat = bob.post(f"/intents/{intent_id}/approve")
        assert repeat.status_code == 202, repeat.text
        assert [a["approved_by"] for a in repeat.json()["approvals"]] == ["bob"]
        # Partly approved: still PENDING, with the approvals so far and the deciding policy.
        status = ada.get(f"/executions/{intent_id}/status").json()
        assert status["status"] == "PENDING"
        assert (status["approvals_required"], status["policy_id"]) == (2, w.policy(approvals_required=2))
        assert [a["approved_by"] for a in status["approvals"]] == ["bob"]
        assert "action_hash" not in status
        assert _attempts(w.harness, intent_id) == 0
        # The second distinct approver completes it.
        second = carol.post(f"/intents/{intent_id}/approve")
        assert second.status_code == 202, second.text
        done = second.json()
        assert done["approval_status"] == "APPROVED"
        assert [a["approved_by"] for a in done["approvals"]] == ["bob", "carol"]
        assert done["action_hash"] == action_hash(w.stored(intent_id))
        # A third one after completion changes nothing.
        late = dan.post(f"/intents/{intent_id}/approve")
        assert late.status_code == 202, late.text
        assert late.json()["approval_status"] == "APPROVED"
        final = w.harness.wait_terminal(ada, intent_id)
        assert final["status"] == "SUCCEEDED"
        assert final["action_hash"] == done["action_hash"]
    assert w.harness.task_rows(intent_id) == 1
    stored = w.stored(intent_id)
    assert stored.approved_by == "carol"
    [recorded] = w.ledger(intent_id, "APPROVAL_RECORDED")
    assert recorded.data == {
        "approved_by": "bob",
        "action_hash": done["action_hash"],
        "approvals": 1,
        "approvals_required": 2,
        "comment": "looks right",
    }
    [approved] = w.ledger(intent_id, "ACTION_APPROVED")
    assert approved.data["approvers"] == ["bob", "carol"]
    assert approved.data["approved_by"] == "carol"
    assert approved.data["approval_source"] == "HUMAN"
    assert (approved.data["policy_id"], approved.data["policy_version"]) == (
        w.policy(approvals_required=2),
        1,
    )
    assert approved.data["action_hash"] == done["action_hash"]


@pytest.mark.parametrize("required", [2, 3])
def test_twenty_approvals_at_once_from_three_approvers_execute_once(w: World, required: int) -> None:
    approvers = ["bob", "carol", "dan"]
    with w.client("ada") as ada:
        intent_id = w.pending(ada, approvals_required=required)
    tokens = {name: w.token(name) for name in approvers}

    async def approve_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=default_limits(), base_url=w.harness.url, timeout=60.0) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"/intents/{intent_id}/approve",
                        headers={"Authorization": f"Bearer {tokens[approvers[i % 3]]}"},
                    )
                    for i in range(20)
                )
            )

    answers = asyncio.run(approve_all())
    assert [r.status_code for r in answers] == [202] * 20, [r.text for r in answers if r.status_code != 202]
    assert {r.json()["approval_status"] for r in answers} <= {"PENDING_APPROVAL", "APPROVED"}
    with w.client("ada") as ada:
        assert w.harness.wait_terminal(ada, intent_id)["status"] == "SUCCEEDED"
    assert w.harness.task_rows(intent_id) == 1
    assert _attempts(w.harness, intent_id) == 1
    [approved] = w.ledger(intent_id, "ACTION_APPROVED")
    recorded = w.ledger(intent_id, "APPROVAL_RECORDED")
    # APPROVED only with the Nth distinct approver: N-1 counted before it, each once.
    assert len(recorded) == required - 1
    assert len(set(approved.data["approvers"])) == required
    assert approved.data["approvers"][: required - 1] == [e.data["approved_by"] for e in recorded]
    assert [e.data["approvals"] for e in recorded] == list(range(1, required))
    stored = w.stored(intent_id)
    assert [a.approved_by for a in stored.approvals] == approved.data["approvers"]


def test_the_first_rejection_rejects_a_partly_approved_intent(w: World) -> None:
    with w.client("ada") as ada, w.client("bob") as bob, w.client("carol") as carol:
        intent_id = w.pending(ada, approvals_required=2)
        assert bob.post(f"/intents/{intent_id}/approve").json()["approval_status"] == "PENDING_APPROVAL"
        rejected = carol.post(f"/intents/{intent_id}/reject")
        assert rejected.status_code == 202, rejected.text
        assert rejected.json() == {
            "action_intent_id": intent_id,
            "approval_status": "REJECTED",
            "warnings": [],
        }
        _problem(w.harness.colleague(carol).post(f"/intents/{intent_id}/approve"), 409, "INVALID_TRANSITION")
        status = ada.get(f"/executions/{intent_id}/status").json()
        assert (status["status"], status["error_code"]) == ("CANCELLED", "INTENT_REJECTED")
    assert _attempts(w.harness, intent_id) == 0
    assert not w.ledger(intent_id, "ACTION_APPROVED")


def test_an_approver_without_the_rules_scopes_is_refused(w: World) -> None:
    with (
        w.client("ada") as ada,
        w.client("bob") as bob,
        w.client("carol", APPROVER_SCOPE) as carol,
    ):
        intent_id = w.pending(ada, approver_scopes=[APPROVER_SCOPE])
        for decision in ("approve", "reject"):
            refused = _problem(bob.post(f"/intents/{intent_id}/{decision}"), 403, "MISSING_APPROVAL_SCOPE")
            assert APPROVER_SCOPE in refused["detail"]
        assert w.stored(intent_id).approval_status.value == "PENDING_APPROVAL"
        assert w.stored(intent_id).approvals == []
        approved = carol.post(f"/intents/{intent_id}/approve")
        assert approved.status_code == 202, approved.text
        assert approved.json()["approval_status"] == "APPROVED"
        # The proposer may still withdraw their own proposal without the approver scope.
        other = w.pending(ada, approver_scopes=[APPROVER_SCOPE])
        assert ada.post(f"/intents/{other}/reject").status_code == 202


def test_once_escalated_the_second_group_may_approve(w: World) -> None:
    with w.client("ada") as ada, w.client("erin", "approvers:managers") as erin:
        intent_id = w.pending(
            ada,
            approver_scopes=[APPROVER_SCOPE],
            on_expiry="ESCALATE",
            escalation={"approver_scopes": ["approvers:managers"], "extend_seconds": 3600},
        )
        _problem(erin.post(f"/intents/{intent_id}/approve"), 403, "MISSING_APPROVAL_SCOPE")
        with w.harness.db.write() as conn:
            intent = intent_store.get_intent(conn, w.tenant, intent_id, for_update=True)
            assert intent is not None
            intent_store.save_intent(conn, intent.model_copy(update={"escalated_at": intent.created_at}))
        approved = erin.post(f"/intents/{intent_id}/approve")
        assert approved.status_code == 202, approved.text
        assert approved.json()["approval_status"] == "APPROVED"


# --- separation of duties in the three front doors -----------------------------------------------


def test_the_proposer_cannot_count_towards_their_own_m_of_n_intent(w: World) -> None:
    with w.client("ada") as ada, w.client("bob") as bob:
        intent_id = w.pending(ada, approvals_required=2)
        assert bob.post(f"/intents/{intent_id}/approve").status_code == 202
        _problem(ada.post(f"/intents/{intent_id}/approve"), 403, "SELF_APPROVAL")
        _problem(
            ada.post(f"/intents/{intent_id}/approve", json={"parameters": {"title": "mine"}}),
            403,
            "SELF_APPROVAL",
        )
        with w.client("ada", actor="agent-7") as agent:
            _problem(agent.post(f"/intents/{intent_id}/approve"), 403, "AGENT_CANNOT_APPROVE")
            _problem(
                agent.post(f"/intents/{intent_id}/approve", json={"parameters": {"title": "x"}}),
                403,
                "AGENT_CANNOT_APPROVE",
            )
    stored = w.stored(intent_id)
    assert [a.approved_by for a in stored.approvals] == ["bob"]
    assert stored.parameters == {"title": "Call the customer"}


def test_the_console_refuses_the_proposers_approval_of_an_m_of_n_intent(w: World) -> None:
    with w.client("ada@acme.example") as ada, w.client("bob") as bob:
        intent_id = w.pending(ada, approvals_required=2)
        assert bob.post(f"/intents/{intent_id}/approve").status_code == 202
    own = w.console("ada@acme.example")
    page = own.post(f"/console/intents/{intent_id}/approve", {"parameters": '{"title": "mine"}'})
    assert page.status_code == 403
    assert "proposed this intent and cannot approve it too" in page.text
    stored = w.stored(intent_id)
    assert [a.approved_by for a in stored.approvals] == ["bob"]
    assert stored.parameters == {"title": "Call the customer"}


def _mcp_call(harness: Harness, token: str, name: str, arguments: dict[str, Any]) -> Any:
    async def call() -> Any:
        async with agent_client(harness.url, token) as client:
            return await client.call_tool(name, arguments)

    return asyncio.run(call())


def test_the_agent_endpoint_counts_an_approval_and_refuses_the_proposer(w: World) -> None:
    proposer = w.token("person-ada")
    policy_id = w.policy(approvals_required=2, approver_scopes=[APPROVER_SCOPE])
    task = asyncio.run(_propose(w.harness, proposer))
    intent_id = task.task_id
    rule = w.stored(intent_id).approval_rule
    assert rule is not None
    assert rule.policy_id == policy_id
    refused = _mcp_call(
        w.harness,
        w.token("person-ada", APPROVER_SCOPE),
        "approve_action",
        {"action_intent_id": intent_id},
    )
    assert refused.is_error is True
    assert refused.structured_content["error_code"] == "SELF_APPROVAL"
    lacking = _mcp_call(w.harness, w.token("person-bob"), "approve_action", {"action_intent_id": intent_id})
    assert lacking.is_error is True
    assert lacking.structured_content["error_code"] == "MISSING_APPROVAL_SCOPE"
    counted = _mcp_call(
        w.harness,
        w.token("person-bob", APPROVER_SCOPE),
        "approve_action",
        {"action_intent_id": intent_id},
    )
    assert counted.is_error is not True
    assert counted.structured_content["approval_status"] == "PENDING_APPROVAL"
    assert counted.structured_content["approvals_required"] == 2
    done = _mcp_call(
        w.harness, w.token("person-cy", APPROVER_SCOPE), "approve_action", {"action_intent_id": intent_id}
    )
    assert done.structured_content["approval_status"] == "APPROVED"
    assert done.structured_content["action_hash"] == action_hash(w.stored(intent_id))


async def _propose(harness: Harness, token: str, title: str = "Call the customer back") -> Any:
    async with agent_client(harness.url, token) as client:
        return await client.session.call_tool(
            "create_internal_task", {"account_id": "acc-1", "title": title}, allow_claimed=True
        )


# --- edit before approve -------------------------------------------------------------------------


def test_an_edited_approval_executes_the_edited_parameters(w: World) -> None:
    with w.client("ada") as ada, w.client("bob") as bob:
        intent_id = w.pending(ada)
        before = w.stored(intent_id)
        edited = {"title": "Call the customer before noon", "description": "they asked for a morning call"}
        answer = bob.post(f"/intents/{intent_id}/approve", json={"parameters": edited, "comment": "sooner"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["approval_status"] == "APPROVED"
        final = w.harness.wait_terminal(ada, intent_id)
        assert final["status"] == "SUCCEEDED"
        assert final["parameters"] == edited
        assert final["edited_fields"] == ["description", "title"]
        read = ada.get(f"/intents/{intent_id}").json()
        assert read["parameters"] == edited
        assert read["edited_fields"] == ["description", "title"]
    assert _task_titles(w.harness, intent_id) == ["Call the customer before noon"]
    stored = w.stored(intent_id)
    assert stored.action_hash == action_hash(stored)
    assert stored.action_hash != action_hash(before)
    assert answer.json()["action_hash"] == stored.action_hash
    [entry] = w.ledger(intent_id, "INTENT_EDITED")
    assert entry.data == {
        "edited_by": "bob",
        "before": {"title": "Call the customer"},
        "after": edited,
        "edited_fields": ["description", "title"],
        "action_hash_before": action_hash(before),
        "action_hash_after": stored.action_hash,
    }
    [approved] = w.ledger(intent_id, "ACTION_APPROVED")
    assert approved.data["action_hash"] == stored.action_hash


def test_an_edit_restarts_the_count_of_an_m_of_n_intent(w: World) -> None:
    with (
        w.client("ada") as ada,
        w.client("bob") as bob,
        w.client("carol") as carol,
    ):
        intent_id = w.pending(ada, approvals_required=2)
        assert bob.post(f"/intents/{intent_id}/approve").json()["approval_status"] == "PENDING_APPROVAL"
        edit = carol.post(f"/intents/{intent_id}/approve", json={"parameters": {"title": "Email instead"}})
        assert edit.status_code == 202, edit.text
        body = edit.json()
        # Bob approved another action: only the editor's approval counts now.
        assert body["approval_status"] == "PENDING_APPROVAL"
        assert [a["approved_by"] for a in body["approvals"]] == ["carol"]
        status = ada.get(f"/executions/{intent_id}/status").json()
        assert status["parameters"] == {"title": "Email instead"}
        assert status["edited_fields"] == ["title"]
        assert [a["approved_by"] for a in status["approvals"]] == ["carol"]
        done = bob.post(f"/intents/{intent_id}/approve")
        assert done.json()["approval_status"] == "APPROVED"
        assert w.harness.wait_terminal(ada, intent_id)["status"] == "SUCCEEDED"
    assert _task_titles(w.harness, intent_id) == ["Email instead"]
    [approved] = w.ledger(intent_id, "ACTION_APPROVED")
    assert approved.data["approvers"] == ["carol", "bob"]
    assert len(w.ledger(intent_id, "APPROVAL_RECORDED")) == 2  # bob's first, then carol's


def _nested(depth: int) -> dict[str, Any]:
    return {"a": _nested(depth - 1)} if depth else {}


@pytest.mark.parametrize(
    "parameters",
    [{"description": "no title"}, {"title": 42}, {"title": "x", "description": _nested(40)}],
    ids=["required-missing", "wrong-type", "too-deep"],
)
def test_edited_parameters_that_fail_validation_change_nothing(w: World, parameters: dict[str, Any]) -> None:
    with w.client("ada") as ada, w.client("bob") as bob:
        intent_id = w.pending(ada, approvals_required=2)
        assert bob.post(f"/intents/{intent_id}/approve").status_code == 202
        before = w.stored(intent_id)
        refused = w.harness.colleague(bob).post(
            f"/intents/{intent_id}/approve", json={"parameters": parameters}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"]
        assert "parameters" in refused.json()["detail"] or "title" in refused.json()["detail"]
    assert w.stored(intent_id) == before
    assert not w.ledger(intent_id, "INTENT_EDITED")


def test_only_a_pending_intent_is_edited(w: World) -> None:
    with w.client("ada") as ada, w.client("bob") as bob:
        intent_id = w.pending(ada)
        assert bob.post(f"/intents/{intent_id}/approve").json()["approval_status"] == "APPROVED"
        _problem(
            w.harness.colleague(bob).post(
                f"/intents/{intent_id}/approve", json={"parameters": {"title": "late"}}
            ),
            409,
            "INVALID_TRANSITION",
        )
        w.harness.wait_terminal(ada, intent_id)
    assert _task_titles(w.harness, intent_id) == ["Call the customer"]


def test_the_agent_sees_the_edited_action_in_its_status(w: World) -> None:
    agent = w.token("agent-9", scopes=["intents:write", "intents:read", "executions:read"])
    task = asyncio.run(_propose(w.harness, agent, "Send the brochure"))
    with w.client("bob") as bob:
        answer = bob.post(
            f"/intents/{task.task_id}/approve",
            json={"parameters": {"title": "Send the brochure (EU edition)"}},
        )
        assert answer.status_code == 202, answer.text
    status = _mcp_call(w.harness, agent, "get_action_status", {"action_intent_id": task.task_id})
    assert status.structured_content["parameters"] == {"title": "Send the brochure (EU edition)"}
    assert status.structured_content["edited_fields"] == ["title"]


# --- edit before approve in the console ----------------------------------------------------------


def test_the_console_approves_edited_parameters_and_explains_bad_ones(w: World) -> None:
    with w.client("ada") as ada:
        intent_id = w.pending(ada, approvals_required=2)
    bob = w.console("bob@acme.example")
    page = bob.get(f"/console/executions/{intent_id}").text
    assert 'name="parameters"' in page
    assert "Call the customer" in page
    before = w.stored(intent_id)
    bad_json = bob.post(f"/console/intents/{intent_id}/approve", {"parameters": '{"title": '})
    assert bad_json.status_code == 422
    assert "not valid JSON" in bad_json.text
    not_an_object = bob.post(f"/console/intents/{intent_id}/approve", {"parameters": '["a list"]'})
    assert not_an_object.status_code == 422
    assert "must be a JSON object" in not_an_object.text
    bad_schema = bob.post(f"/console/intents/{intent_id}/approve", {"parameters": '{"title": 42}'})
    assert bad_schema.status_code == 422
    assert "parameters.title" in bad_schema.text
    assert w.stored(intent_id) == before
    # Unchanged parameters: a plain approval, no edit.
    unchanged = bob.post(
        f"/console/intents/{intent_id}/approve", {"parameters": json.dumps(before.parameters, indent=2)}
    )
    assert unchanged.status_code == 303
    assert not w.ledger(intent_id, "INTENT_EDITED")
    assert [a.approved_by for a in w.stored(intent_id).approvals] == ["bob@acme.example"]
    carol = w.console("carol@acme.example")
    edited = carol.post(
        f"/console/intents/{intent_id}/approve", {"parameters": '{"title": "Call after lunch"}'}
    )
    assert edited.status_code == 303
    stored = w.stored(intent_id)
    assert stored.parameters == {"title": "Call after lunch"}
    assert [a.approved_by for a in stored.approvals] == ["carol@acme.example"]
    [entry] = w.ledger(intent_id, "INTENT_EDITED")
    assert entry.data["edited_by"] == "carol@acme.example"


def test_another_tenants_approver_cannot_count(w: World) -> None:
    with w.client("ada") as ada, w.harness.client(f"{w.tenant}x", ALL_SCOPES, subject="mallory") as mallory:
        intent_id = w.pending(ada, approvals_required=2)
        assert mallory.post(f"/intents/{intent_id}/approve").status_code == 404
        assert (
            mallory.post(f"/intents/{intent_id}/approve", json={"parameters": {"title": "x"}}).status_code
            == 404
        )
    assert w.stored(intent_id).approvals == []
