"""A person decides, and never on their own proposal: the HTTP API and the console, over a real
service (SQLite, and PostgreSQL on its pass).

Every intent created through the API records its proposer (``proposed_by``, the token's subject)
and where it came in (``proposed_via``); the intent and the status DTO show it. An agent's token
(an RFC 8693 ``act`` claim, or a configured marker) never approves or rejects (403
``AGENT_CANNOT_APPROVE``); nobody approves a proposal made with their own subject (403
``SELF_APPROVAL``); a proposer may reject (withdraw) their own proposal.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fulfill.store import executions as ledger_store
from fulfill.store import intents as intent_store
from fulfill.store.tables import action_intents
from tests.support.console import Console, seed_pending
from tests.support.harness import ALL_SCOPES, Harness


def _client(harness: Harness, subject: str, *, actor: str | None = None, tenant: str = "t1") -> httpx.Client:
    return harness.client(tenant, ALL_SCOPES, subject=subject, actor=actor)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _approval_status(harness: Harness, intent_id: str) -> str:
    with harness.db.read() as conn:
        intent = intent_store.get_intent(conn, "t1", intent_id)
    assert intent is not None
    return intent.approval_status.value


def test_an_intent_records_its_proposer_and_shows_it_in_the_intent_and_the_status(shared: Harness) -> None:
    with _client(shared, "ada@acme.example") as ada:
        created = shared.create_intent(ada)
        intent_id = created["action_intent_id"]
        assert (created["proposed_by"], created["proposed_via"]) == ("ada@acme.example", "api")
        read = ada.get(f"/intents/{intent_id}").json()
        assert (read["proposed_by"], read["proposed_via"]) == ("ada@acme.example", "api")
        pending = ada.get(f"/executions/{intent_id}/status").json()
        assert pending == {
            "action_intent_id": intent_id,
            "status": "PENDING",
            "proposed_by": "ada@acme.example",
        }
        # The columns hold it too, for queries and audits.
        with shared.db.read() as conn:
            row = conn.execute(
                action_intents.select().where(action_intents.c.action_intent_id == intent_id)
            ).one()
        assert (row.proposed_by, row.proposed_via) == ("ada@acme.example", "api")
        shared.approve(ada, intent_id)
        done = shared.wait_terminal(ada, intent_id)
        assert (done["status"], done["proposed_by"]) == ("SUCCEEDED", "ada@acme.example")
        [listed] = [
            item
            for item in ada.get("/accounts/acc-1/executions", params={"limit": "100"}).json()["executions"]
            if item["action_intent_id"] == intent_id
        ]
        assert listed["proposed_by"] == "ada@acme.example"


def test_nobody_approves_their_own_proposal(shared: Harness) -> None:
    with _client(shared, "ada@acme.example") as ada, _client(shared, "grace@acme.example") as grace:
        intent_id = shared.create_intent(ada)["action_intent_id"]
        refused = _problem(ada.post(f"/intents/{intent_id}/approve"), 403, "SELF_APPROVAL")
        assert "ada@acme.example" in refused["detail"]
        assert "another person" in refused["detail"]
        assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"
        # Another person of the tenant approves it; the proposer's repeat is still refused.
        approved = grace.post(f"/intents/{intent_id}/approve")
        assert approved.status_code == 202, approved.text
        _problem(ada.post(f"/intents/{intent_id}/approve"), 403, "SELF_APPROVAL")
        assert shared.wait_terminal(grace, intent_id)["status"] == "SUCCEEDED"
    assert shared.task_rows(intent_id) == 1
    with shared.db.read() as conn:
        [entry] = [
            e for e in ledger_store.list_ledger(conn, "t1", intent_id) if e.event_type == "ACTION_APPROVED"
        ]
    assert entry.data["approved_by"] == "grace@acme.example"


def test_a_proposer_may_reject_their_own_proposal(shared: Harness) -> None:
    with _client(shared, "ada@acme.example") as ada:
        intent_id = shared.create_intent(ada)["action_intent_id"]
        rejected = ada.post(f"/intents/{intent_id}/reject")
        assert rejected.status_code == 202, rejected.text
        assert rejected.json()["approval_status"] == "REJECTED"


def test_an_agent_proposes_and_never_approves_or_rejects(shared: Harness) -> None:
    """An agent's token holds intents:approve here, and still cannot decide: not on its own
    proposals, not on anyone else's."""
    with (
        _client(shared, "ada@acme.example", actor="agent-7") as agent,
        _client(shared, "grace@acme.example") as grace,
    ):
        own = shared.create_intent(agent)
        assert (own["proposed_by"], own["proposed_via"]) == ("ada@acme.example", "api")
        by_grace = shared.create_intent(grace)["action_intent_id"]
        for intent_id in (own["action_intent_id"], by_grace):
            for decision in ("approve", "reject"):
                refused = _problem(
                    agent.post(f"/intents/{intent_id}/{decision}"), 403, "AGENT_CANNOT_APPROVE"
                )
                assert "a person decides" in refused["detail"]
            assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"
        # Importing an approved intent asserts an approval: refused to an agent too.
        imported = agent.post(
            "/intents",
            json={
                "action_intent_id": f"ai_agent_import_{uuid.uuid4().hex[:8]}",
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x"},
                "approval": {
                    "approved_by": "grace@acme.example",
                    "approval_timestamp": "2026-01-02T03:04:05Z",
                },
            },
        )
        _problem(imported, 403, "AGENT_CANNOT_APPROVE")
        # Agents may cancel their own proposals.
        assert agent.post(f"/intents/{own['action_intent_id']}/cancel").status_code == 202
        # A person approves what the agent proposed on another person's behalf.
        approved = grace.post(f"/intents/{by_grace}/approve", headers=_bearer(shared, "lin@acme.example"))
        assert approved.status_code == 202, approved.text


def _bearer(harness: Harness, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {harness.token('t1', ALL_SCOPES, subject=subject)}"}


def test_an_import_that_names_its_own_importer_as_the_approver_is_refused(shared: Harness) -> None:
    with _client(shared, "decision-system") as importer:
        body = {
            "action_type": "CREATE_INTERNAL_TASK",
            "account_id": "acc-1",
            "parameters": {"title": "x"},
            "approval": {"approved_by": "decision-system", "approval_timestamp": "2026-01-02T03:04:05Z"},
        }
        _problem(
            importer.post("/intents", json={**body, "action_intent_id": "ai_self_import"}),
            403,
            "SELF_APPROVAL",
        )
        reviewed = {**body, "approval": {**body["approval"], "approved_by": "reviewer@acme.example"}}
        created = importer.post("/intents", json={**reviewed, "action_intent_id": "ai_reviewed_import"})
        assert created.status_code == 201, created.text
        assert created.json()["proposed_by"] == "decision-system"


# --- the console: the same rule, through the same use case -------------------------------------


@pytest.fixture
def console(shared: Harness) -> Iterator[Console]:
    browser = Console(shared)
    yield browser
    browser.close()


def test_the_console_refuses_the_proposers_own_approval(shared: Harness, console: Console) -> None:
    with _client(shared, "ada@acme.example") as ada:
        intent_id = shared.create_intent(ada)["action_intent_id"]
    page = console.login(subject="ada@acme.example").post(f"/console/intents/{intent_id}/approve")
    assert page.status_code == 403
    assert "proposed this intent and cannot approve it too" in page.text
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"
    # She may still reject her own proposal there; another person approves the next one.
    assert console.post(f"/console/intents/{intent_id}/reject", {"comment": "withdrawn"}).status_code == 303
    assert _approval_status(shared, intent_id) == "REJECTED"
    with _client(shared, "ada@acme.example") as ada:
        second = shared.create_intent(ada)["action_intent_id"]
    with _ConsoleOf(shared, "grace@acme.example") as grace:
        approved = grace.post(f"/console/intents/{second}/approve", {"comment": "checked"})
    assert approved.status_code == 303
    assert _approval_status(shared, second) == "APPROVED"


class _ConsoleOf:
    """A signed-in browser of ``subject``, closed at the end of the ``with``."""

    def __init__(self, harness: Harness, subject: str) -> None:
        self.browser = Console(harness)
        self.subject = subject

    def __enter__(self) -> Console:
        return self.browser.login(subject=self.subject)

    def __exit__(self, *_: object) -> None:
        self.browser.close()


def test_the_pages_name_the_proposer_and_offer_no_approve_on_ones_own_proposal(
    shared: Harness, console: Console
) -> None:
    with _client(shared, "ada@acme.example") as ada:
        intent_id = shared.create_intent(ada)["action_intent_id"]
    approve_button = f'formaction="/console/intents/{intent_id}/approve"'
    reject_button = f'formaction="/console/intents/{intent_id}/reject"'
    with _ConsoleOf(shared, "grace@acme.example") as grace:
        page = grace.get("/console/approvals").text
        assert f'data-intent="{intent_id}"' in page
        assert '<span class="proposer">ada@acme.example</span>' in page
        assert approve_button in page
        assert approve_button in grace.get(f"/console/executions/{intent_id}").text
    for path in ("/console/approvals", f"/console/executions/{intent_id}"):
        own = console.login(subject="ada@acme.example").get(path).text
        assert '<span class="proposer">ada@acme.example</span>' in own
        assert "You proposed this: another person approves it." in own
        assert approve_button not in own
        assert reject_button in own


def test_an_intent_stored_without_a_proposer_is_approved_by_anyone_but_an_agent(shared: Harness) -> None:
    """Intents stored before the proposer was recorded (a seeded row has none): no proposed_by
    in the DTOs, and only the agent rule applies."""
    intent_id = f"ai_old_{uuid.uuid4().hex[:8]}"
    seed_pending(shared, intent_id, expires_in=3600)
    with _client(shared, "fulfill-cli") as anyone, _client(shared, "ada", actor="agent-7") as agent:
        view = anyone.get(f"/executions/{intent_id}/status").json()
        assert "proposed_by" not in view
        assert anyone.get(f"/intents/{intent_id}").json()["proposed_by"] is None
        _problem(agent.post(f"/intents/{intent_id}/approve"), 403, "AGENT_CANNOT_APPROVE")
        assert anyone.post(f"/intents/{intent_id}/approve").status_code == 202
