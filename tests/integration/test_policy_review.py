"""Approval policies under hostile use, over a real service (SQLite, and PostgreSQL on its pass):
an edit before approve cannot move an intent out from under a stricter policy, a token limited to
some accounts writes only policies limited to those accounts, and the engine's own tokens manage
no policy.

Each test works in a tenant of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx

from fulfill.client import default_limits
from fulfill.domain.action_hash import action_hash
from fulfill.domain.models import ActionIntentV1
from fulfill.store import executions as ledger_store
from fulfill.store import intents as intent_store
from fulfill.tokens import mint_service_token
from tests.support.harness import ALL_SCOPES, Harness

TENANT_SCOPES = [scope for scope in ALL_SCOPES if scope != "platform:admin"]


# Wires need two approvals.
WIRES: dict[str, Any] = {
    "decision": "REQUIRE_APPROVAL",
    "approvals_required": 2,
    "match": {"when": "params.title.startsWith('Wire')"},
}


def _tenant() -> str:
    return f"rv-{uuid.uuid4().hex[:10]}"


@contextmanager
def _people(harness: Harness, tenant: str, *subjects: str) -> Iterator[tuple[httpx.Client, ...]]:
    """A client of the tenant for each subject (all the tenant's scopes but platform:admin)."""
    with ExitStack() as stack:
        yield tuple(
            stack.enter_context(harness.client(tenant, TENANT_SCOPES, subject=subject))
            for subject in subjects
        )


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _policy(admin: httpx.Client, **fields: Any) -> str:
    body: dict[str, Any] = {"name": "p", "match": {"action_types": ["CREATE_INTERNAL_TASK"]}, **fields}
    created = admin.post("/admin/policies", json=body)
    assert created.status_code == 201, created.text
    policy_id: str = created.json()["policy_id"]
    return policy_id


def _stored(harness: Harness, tenant: str, intent_id: str) -> ActionIntentV1:
    with harness.db.read() as conn:
        intent = intent_store.get_intent(conn, tenant, intent_id)
    assert intent is not None
    return intent


def _events(harness: Harness, tenant: str, intent_id: str) -> list[str]:
    with harness.db.read() as conn:
        return [e.event_type for e in ledger_store.list_ledger(conn, tenant, intent_id)]


# --- edit before approve under the policies ---------------------------------------------------------


def test_an_edit_that_would_fall_under_another_policy_is_refused_and_changes_nothing(shared: Harness) -> None:
    """Two approvals for wires; a task proposed as a call gets the default rule (one approval). An
    approver editing it into a wire, and approving it alone, would execute what needs two."""
    tenant = _tenant()
    with _people(shared, tenant, "admin", "ada", "bob") as (admin, ada, bob):
        wires = _policy(admin, **WIRES)
        _policy(admin, decision="DENY", match={"when": "params.title.contains('offshore')"}, priority=1)
        intent_id = shared.create_intent(ada, parameters={"title": "Call the customer"})["action_intent_id"]
        before = _stored(shared, tenant, intent_id)
        assert before.approval_rule is not None
        assert before.approval_rule.policy_id is None
        for title, policy in (("Wire 1,000,000", wires), ("Call offshore", None)):
            refused = bob.post(f"/intents/{intent_id}/approve", json={"parameters": {"title": title}})
            body = _problem(refused, 409, "EDIT_CHANGES_POLICY")
            assert "propose" in body["detail"]
            if policy is not None:
                assert policy in body["detail"]
        assert _stored(shared, tenant, intent_id) == before
        assert "INTENT_EDITED" not in _events(shared, tenant, intent_id)
        # An edit the same rule applies to is taken, and counts as the editor's approval.
        taken = bob.post(f"/intents/{intent_id}/approve", json={"parameters": {"title": "Call at noon"}})
        assert taken.status_code == 202, taken.text
        assert taken.json()["approval_status"] == "APPROVED"
        assert shared.wait_terminal(ada, intent_id)["status"] == "SUCCEEDED"


def test_an_edit_cannot_leave_the_policy_that_asks_for_two(shared: Harness) -> None:
    """The reverse: out from under a two-approval rule into the default one, alone."""
    tenant = _tenant()
    with _people(shared, tenant, "admin", "ada", "bob") as (admin, ada, bob):
        wires = _policy(admin, **WIRES)
        intent_id = shared.create_intent(ada, parameters={"title": "Wire 10"})["action_intent_id"]
        assert _stored(shared, tenant, intent_id).approval_rule.policy_id == wires  # type: ignore[union-attr]
        refused = bob.post(f"/intents/{intent_id}/approve", json={"parameters": {"title": "Call"}})
        _problem(refused, 409, "EDIT_CHANGES_POLICY")
        # Still under the same policy (a new version of it included): the edit is taken.
        replaced = admin.put(f"/admin/policies/{wires}", json={"name": "p2", **WIRES})
        assert replaced.status_code == 200, replaced.text
        taken = bob.post(f"/intents/{intent_id}/approve", json={"parameters": {"title": "Wire 20"}})
        assert taken.status_code == 202, taken.text
        assert taken.json()["approval_status"] == "PENDING_APPROVAL"
        assert [a["approved_by"] for a in taken.json()["approvals"]] == ["bob"]


# --- tokens limited to some accounts --------------------------------------------------------------


def test_a_token_limited_to_some_accounts_writes_only_policies_limited_to_them(shared: Harness) -> None:
    tenant = _tenant()
    body = {"name": "n", "decision": "AUTO_APPROVE"}
    with (
        shared.client(tenant, TENANT_SCOPES) as admin,
        shared.client(tenant, TENANT_SCOPES, account_ids=["acc-1", "acc-2"]) as narrow,
    ):
        for match in ({}, {"account_ids": ["acc-1", "acc-3"]}, {"action_types": ["CREATE_INTERNAL_TASK"]}):
            _problem(
                narrow.post("/admin/policies", json={**body, "match": match}), 403, "POLICY_OUTSIDE_ACCOUNTS"
            )
        mine = narrow.post("/admin/policies", json={**body, "match": {"account_ids": ["acc-2"]}})
        assert mine.status_code == 201, mine.text
        mine_id = mine.json()["policy_id"]
        wide_id = _policy(admin, decision="DENY", match={"account_ids": ["acc-3"]})
        # Replacing or deleting: the stored policy and the new body both stay within the accounts.
        widened = {**body, "match": {"account_ids": ["acc-2", "acc-3"]}}
        _problem(narrow.put(f"/admin/policies/{mine_id}", json=widened), 403, "POLICY_OUTSIDE_ACCOUNTS")
        narrowed = {**body, "match": {"account_ids": ["acc-2"]}}
        _problem(narrow.put(f"/admin/policies/{wide_id}", json=narrowed), 403, "POLICY_OUTSIDE_ACCOUNTS")
        _problem(narrow.delete(f"/admin/policies/{wide_id}"), 403, "POLICY_OUTSIDE_ACCOUNTS")
        assert narrow.put(f"/admin/policies/{mine_id}", json={**narrowed, "name": "m"}).status_code == 200
        assert narrow.delete(f"/admin/policies/{mine_id}").status_code == 204
        assert admin.get(f"/admin/policies/{wide_id}").json()["version"] == 1
        # An unlimited admin writes tenant-wide policies.
        assert admin.post("/admin/policies", json=body).status_code == 201


# --- tokens that are not a person's ------------------------------------------------------------------


def test_the_engines_service_token_manages_no_policy(shared: Harness) -> None:
    tenant = _tenant()
    token = mint_service_token(
        shared.settings, tenant_id=tenant, account_id="acc-1", action_intent_id="ai_1", idempotency_key="k"
    )
    with (
        shared.client(tenant, TENANT_SCOPES) as admin,
        httpx.Client(
            limits=default_limits(), base_url=shared.url, headers={"Authorization": f"Bearer {token}"}
        ) as engine,
    ):
        policy_id = _policy(admin, decision="DENY")
        body = {"name": "n", "decision": "AUTO_APPROVE"}
        for response in (
            engine.get("/admin/policies"),
            engine.post("/admin/policies", json=body),
            engine.get(f"/admin/policies/{policy_id}"),
            engine.put(f"/admin/policies/{policy_id}", json=body),
            engine.delete(f"/admin/policies/{policy_id}"),
            engine.post("/admin/policies/simulate", json={"policy": body}),
        ):
            assert response.status_code == 403, response.text
        assert admin.get(f"/admin/policies/{policy_id}").json()["version"] == 1


def test_hostile_parameters_under_a_numeric_rule_are_stored_and_fail_safe(shared: Harness) -> None:
    tenant = _tenant()
    with _people(shared, tenant, "admin", "ada") as (admin, ada):
        two = _policy(
            admin, decision="REQUIRE_APPROVAL", approvals_required=2, match={"when": "params.amount > 100000"}
        )
        auto = _policy(
            admin, decision="AUTO_APPROVE", match={"when": "params.amount <= 100000"}, priority=200
        )
        for amount, expected in (
            ("1000000", two),  # a string: the expression fails, fail-safe
            (True, two),
            (None, two),
            (10**30, two),
            (1e300, two),
            (100000.5, two),
            (-(10**30), auto),
        ):
            created = ada.post(
                "/intents",
                json={
                    "action_type": "CREATE_INTERNAL_TASK",
                    "account_id": "acc-1",
                    "parameters": {"title": "t", "amount": amount, "ключ ✓": "é"},
                },
            )
            assert created.status_code == 201, (amount, created.text)
            intent = _stored(shared, tenant, created.json()["action_intent_id"])
            assert intent.approval_rule is not None
            assert intent.approval_rule.policy_id == expected, amount


def test_an_edit_racing_another_approvers_approval_never_counts_an_approval_of_the_old_action(
    shared: Harness,
) -> None:
    """Bob edits a two-approval intent while Carol approves it: under the intent's row lock either
    Carol approved the old action (then the edit clears it) or the edited one (then it completes).
    Whatever the order, what runs is the edited action, approved by two people who saw it."""
    tenant = _tenant()
    with _people(shared, tenant, "admin", "ada", "bob", "carol") as (admin, ada, bob, carol):
        _policy(admin, decision="REQUIRE_APPROVAL", approvals_required=2)
        for round_ in range(4):
            intent_id = shared.create_intent(ada, parameters={"title": "Call"})["action_intent_id"]
            edited = {"title": f"Email {round_}"}
            with ThreadPoolExecutor(max_workers=2) as pool:
                edit = pool.submit(bob.post, f"/intents/{intent_id}/approve", json={"parameters": edited})
                approve = pool.submit(carol.post, f"/intents/{intent_id}/approve")
                answers = [edit.result(), approve.result()]
            assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
            stored = _stored(shared, tenant, intent_id)
            if stored.approval_status.value == "PENDING_APPROVAL":  # Carol approved the old action
                assert [a.approved_by for a in stored.approvals] == ["bob"]
                assert carol.post(f"/intents/{intent_id}/approve").json()["approval_status"] == "APPROVED"
                stored = _stored(shared, tenant, intent_id)
            assert stored.approval_status.value == "APPROVED"
            assert stored.parameters == edited
            assert sorted(a.approved_by for a in stored.approvals) == ["bob", "carol"]
            assert {a.action_hash for a in stored.approvals} == {stored.action_hash}
            assert stored.action_hash == action_hash(stored)
            assert shared.wait_terminal(ada, intent_id)["status"] == "SUCCEEDED"


def test_a_token_whose_tenant_id_is_no_identifier_is_refused_not_a_500(shared: Harness) -> None:
    """Not the platform's owner key ("#platform") nor anything else a tenant's data is not keyed by."""
    with shared.client("#platform", TENANT_SCOPES) as odd:
        for answer in (
            odd.post("/admin/policies", json={"name": "n", "decision": "DENY"}),
            odd.get("/admin/policies"),
        ):
            _problem(answer, 401, "TOKEN_CLAIM_MALFORMED")
