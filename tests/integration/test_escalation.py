"""Escalation of an approval (a policy's ``"on_expiry": "ESCALATE"``) over a real service, SQLite and
PostgreSQL: when an intent's first approval window ends unapproved, it is escalated exactly once
(``escalated_at``, an ``APPROVAL_ESCALATED`` ledger entry, and the event on the bus), stays
approvable until the extended end, then expires. Two sweepers at once escalate each intent once.

The bus is moto's EventBridge server on 127.0.0.1, as in tests/integration/test_eventbridge.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulfill.domain.models import ApprovalRule, ApprovalStatus, ExpiryAction
from fulfill.domain.time import epoch_from_iso, iso_from_epoch
from fulfill.engine.escalation import escalate_due
from fulfill.store import outbox
from fulfill.store.tables import action_intents, outbox_messages
from tests.support.eventbridge import REGION, LocalEventBridge, use_test_credentials
from tests.support.harness import ALL_SCOPES, Harness, make_settings, seed_intent
from tests.support.http_doubles import wait_for

BUS = "approvals-events"
ESCALATION_PATTERN = {"source": ["fulfill"], "detail-type": ["APPROVAL_ESCALATED"]}
PUBLIC_URL = "https://fulfill.example"
PROPOSER = "ada@acme.example"
APPROVER = "grace@acme.example"


@pytest.fixture(scope="module")
def local_bus() -> Iterator[LocalEventBridge]:
    server = LocalEventBridge()
    yield server
    server.close()


@pytest.fixture
def aws(local_bus: LocalEventBridge, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalEventBridge:
    use_test_credentials(monkeypatch, tmp_path)
    local_bus.reset()
    return local_bus


def start(tmp_path: Path, aws: LocalEventBridge, **overrides: Any) -> Harness:
    settings = make_settings(
        tmp_path,
        eventbridge_bus=BUS,
        eventbridge_region=REGION,
        eventbridge_endpoint_url=aws.url,
        public_url=PUBLIC_URL,
        **overrides,
    )
    return Harness(settings).start()


def rule(on_expiry: ExpiryAction = ExpiryAction.ESCALATE) -> ApprovalRule:
    escalating = on_expiry is ExpiryAction.ESCALATE
    return ApprovalRule(
        policy_id="pol_escalating",
        policy_version=2,
        policy_name="escalate what waits too long",
        on_expiry=on_expiry,
        escalate_to_scopes=["approvers:leads"] if escalating else [],
        escalation_extend_seconds=3_600 if escalating else None,
    )


def seed_pending(
    harness: Harness, intent_id: str, *, window_ends_in: float | None, extended_end_in: float, **fields: Any
) -> None:
    """A pending intent as the creating transaction stores it under the rule: the first window
    ends ``window_ends_in`` seconds from now, the extended one ``extended_end_in`` from now."""
    now = harness.service.clock.now()
    expires = int(now + extended_end_in)
    values: dict[str, Any] = {
        "approval_status": ApprovalStatus.PENDING_APPROVAL,
        "approved_by": None,
        "approval_timestamp": None,
        "approval_rule": rule(),
        "escalates_at_epoch": None if window_ends_in is None else int(now + window_ends_in),
        "expires_at": iso_from_epoch(expires),
        "expires_at_epoch": expires,
        "proposed_by": PROPOSER,
        "parameters": {"title": f"escalation {intent_id}"},
    }
    values.update(fields)
    seed_intent(harness, intent_id, **values)


def ledger_types(harness: Harness, intent_id: str, tenant: str = "t1") -> list[str]:
    with harness.service.store.read() as uow:
        return [entry.event_type for entry in uow.executions.list_ledger(tenant, intent_id)]


def escalation_column(harness: Harness, intent_id: str) -> Any:
    with harness.db.read() as conn:
        return (
            conn.execute(action_intents.select().where(action_intents.c.action_intent_id == intent_id))
            .one()
            .escalates_at_epoch
        )


def bus_events(aws: LocalEventBridge, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The next ``count`` events the bus's rule delivers."""
    events: list[dict[str, Any]] = []

    def enough() -> bool:
        events.extend(aws.received(BUS))
        return len(events) >= count

    wait_for(enough, timeout=timeout)
    return events


def person(harness: Harness, subject: str, tenant: str = "t1") -> httpx.Client:
    return harness.client(tenant, ALL_SCOPES, subject=subject)


def test_an_intent_escalates_once_stays_approvable_until_the_extended_end_then_expires(
    aws: LocalEventBridge, tmp_path: Path
) -> None:
    aws.create_bus(BUS, ESCALATION_PATTERN)
    harness = start(tmp_path, aws, escalation_interval_seconds=0.2)
    try:
        # Its first window ended a second ago; the extended end is a minute away.
        seed_pending(harness, "ai-escalates", window_ends_in=-1, extended_end_in=60)
        assert escalation_column(harness, "ai-escalates") is not None
        # Its first window ended too, and the extended end is 4 seconds away.
        seed_pending(harness, "ai-runs-out", window_ends_in=-1, extended_end_in=4)
        # No ESCALATE rule: the default (one person's approval), and an EXPIRE policy.
        seed_pending(harness, "ai-default", window_ends_in=None, extended_end_in=4, approval_rule=None)
        seed_pending(
            harness,
            "ai-expire-rule",
            window_ends_in=None,
            extended_end_in=4,
            approval_rule=rule(ExpiryAction.EXPIRE),
        )
        # Not due yet: its first window ends in an hour.
        seed_pending(harness, "ai-later", window_ends_in=3_600, extended_end_in=7_200)

        with person(harness, PROPOSER) as ada, person(harness, APPROVER) as grace:

            def escalated(intent_id: str) -> dict[str, Any] | None:
                body: dict[str, Any] = ada.get(f"/intents/{intent_id}").json()
                return body if body.get("escalated_at") else None

            intent = wait_for(lambda: escalated("ai-escalates"), timeout=20)
            assert intent["approval_status"] == "PENDING_APPROVAL"
            assert intent["expires_at"] == iso_from_epoch(intent["expires_at_epoch"])
            wait_for(lambda: escalated("ai-runs-out"), timeout=20)
            # Escalated: the row no longer waits for the sweep.
            assert escalation_column(harness, "ai-escalates") is None

            # The event is on the bus, once per escalated intent, with what the second group needs.
            events = bus_events(aws, 2)
            by_intent = {event["detail"]["payload"]["action_intent_id"]: event for event in events}
            assert sorted(by_intent) == ["ai-escalates", "ai-runs-out"]
            event = by_intent["ai-escalates"]
            assert (event["source"], event["detail-type"]) == ("fulfill", "APPROVAL_ESCALATED")
            assert event["detail"] == {
                "eventType": "APPROVAL_ESCALATED",
                "source": "fulfill",
                "payload": {
                    "tenant_id": "t1",
                    "account_id": "acc-1",
                    "action_intent_id": "ai-escalates",
                    "action_type": "CREATE_INTERNAL_TASK",
                    "policy_id": "pol_escalating",
                    "policy_version": 2,
                    "escalate_to_scopes": ["approvers:leads"],
                    "escalated_at": intent["escalated_at"],
                    "expires_at": intent["expires_at"],
                    "console_url": f"{PUBLIC_URL}/console/executions/ai-escalates",
                },
                "traceId": "decision-trace",
                "tenantId": "t1",
                "ts": intent["escalated_at"],
            }

            def delivered() -> list[dict[str, Any]] | None:
                with harness.service.store.read() as uow:
                    rows = uow.outbox.deliveries_for("escalation:t1/ai-escalates")
                return rows if all(row["status"] == outbox.DELIVERED for row in rows) else None

            [delivery] = wait_for(delivered, timeout=20)
            assert (delivery["destination"], delivery["attempts"]) == (f"eventbridge:{BUS}", 1)

            # The ledger says it once, with the policy and the extended end.
            with harness.service.store.read() as uow:
                [entry] = uow.executions.list_ledger("t1", "ai-escalates")
            assert entry.event_type == "APPROVAL_ESCALATED"
            assert entry.data == {
                "action_intent_id": "ai-escalates",
                "policy_id": "pol_escalating",
                "policy_version": 2,
                "escalate_to_scopes": ["approvers:leads"],
                "expires_at": intent["expires_at"],
            }

            # Past its first window, before the extended end: approved, and it runs.
            approved = grace.post("/intents/ai-escalates/approve")
            assert approved.status_code == 202, approved.text
            done = harness.wait_terminal(ada, "ai-escalates")
            assert done["status"] == "SUCCEEDED"
            assert harness.task_rows("ai-escalates") == 1

            # Past the extended end: expired, and no longer approvable.
            wait_for(
                lambda: ada.get("/executions/ai-runs-out/status").json()["status"] == "EXPIRED" or None,
                timeout=20,
            )
            refused = grace.post("/intents/ai-runs-out/approve")
            assert refused.status_code == 409, refused.text
            assert refused.json()["code"] == "INTENT_EXPIRED"

            # The sweeps went on meanwhile: nothing escalated twice, nothing else escalated.
            escalate_due(harness.service.runtime)
            assert ledger_types(harness, "ai-escalates").count("APPROVAL_ESCALATED") == 1
            assert ledger_types(harness, "ai-runs-out") == ["APPROVAL_ESCALATED"]
            for intent_id in ("ai-default", "ai-expire-rule", "ai-later"):
                assert ada.get(f"/intents/{intent_id}").json().get("escalated_at") is None, intent_id
                assert ledger_types(harness, intent_id) == [], intent_id
            assert aws.received(BUS) == []
            assert harness.count(outbox_messages, topic="APPROVAL_ESCALATED") == 2
    finally:
        harness.stop()


def test_two_sweepers_at_once_escalate_each_intent_exactly_once(
    aws: LocalEventBridge, tmp_path: Path
) -> None:
    aws.create_bus(BUS, ESCALATION_PATTERN)
    # The service's own sweep stays out of the way: two sweepers are started here, side by side.
    harness = start(tmp_path, aws, escalation_interval_seconds=3_600)
    count = 30
    try:
        for n in range(count):
            seed_pending(harness, f"ai-race-{n:02d}", window_ends_in=-5, extended_end_in=600)
        barrier = threading.Barrier(2)
        escalated: list[int] = []
        failures: list[BaseException] = []

        def sweeper() -> None:
            try:
                barrier.wait(timeout=10)
                escalated.append(sum(escalate_due(harness.service.runtime) for _ in range(3)))
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=sweeper) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not failures, failures
        # Each escalation was made by exactly one of them (a second would have counted it again).
        assert len(escalated) == 2
        assert sum(escalated) == count, escalated
        for n in range(count):
            intent_id = f"ai-race-{n:02d}"
            assert ledger_types(harness, intent_id) == ["APPROVAL_ESCALATED"]
            assert escalation_column(harness, intent_id) is None
        assert harness.count(outbox_messages, topic="APPROVAL_ESCALATED") == count
        # Every escalation reaches the bus. Delivery is at least once: a put whose answer timed out
        # on a busy machine was received all the same, and is sent again.
        expected = {f"ai-race-{n:02d}" for n in range(count)}
        received: list[dict[str, Any]] = []

        def every_one_received() -> bool:
            received.extend(aws.received(BUS))
            return {event["detail"]["payload"]["action_intent_id"] for event in received} >= expected

        wait_for(every_one_received, timeout=30)
        assert {event["detail"]["payload"]["action_intent_id"] for event in received} == expected
        assert escalate_due(harness.service.runtime) == 0
    finally:
        harness.stop()


def test_an_escalate_policy_escalates_its_intents_and_no_other(aws: LocalEventBridge, tmp_path: Path) -> None:
    """Through a real policy: written with POST /admin/policies, decided at the intent's creation."""
    aws.create_bus(BUS, ESCALATION_PATTERN)
    harness = start(tmp_path, aws, escalation_interval_seconds=0.2)
    tenant = "t-escalation"
    try:
        lead = harness.client(tenant, [*ALL_SCOPES, "approvers:leads"], subject="lee@acme.example")
        with person(harness, PROPOSER, tenant) as ada, person(harness, APPROVER, tenant) as grace, lead:
            created = ada.post(
                "/admin/policies",
                json={
                    "name": "tasks of acc-esc escalate to the leads",
                    "match": {"account_ids": ["acc-esc"]},
                    "decision": "REQUIRE_APPROVAL",
                    "approver_scopes": ["approvers:crm"],
                    "on_expiry": "ESCALATE",
                    "escalation": {"approver_scopes": ["approvers:leads"], "extend_seconds": 60},
                },
            )
            assert created.status_code == 201, created.text
            policy = created.json()
            first_window = iso_from_epoch(harness.service.clock.now() + 5)

            def propose(account: str) -> dict[str, Any]:
                answer = ada.post(
                    "/intents",
                    json={
                        "action_type": "CREATE_INTERNAL_TASK",
                        "account_id": account,
                        "parameters": {"title": f"task of {account}"},
                        "expires_at": first_window,
                    },
                )
                assert answer.status_code == 201, answer.text
                body: dict[str, Any] = answer.json()
                return body

            escalating, plain = propose("acc-esc"), propose("acc-plain")
            # The policy's window: it escalates at the expiry asked for, and expires 60 s later.
            assert escalating["escalates_at_epoch"] == int(epoch_from_iso(first_window))
            assert escalating["expires_at_epoch"] == escalating["escalates_at_epoch"] + 60
            assert plain.get("escalates_at_epoch") is None

            # In the first window only the policy's approvers may approve; the leads may not yet.
            early = lead.post(f"/intents/{escalating['action_intent_id']}/approve")
            assert early.status_code == 403, early.text
            assert early.json()["code"] == "MISSING_APPROVAL_SCOPE"

            def escalated() -> dict[str, Any] | None:
                body: dict[str, Any] = ada.get(f"/intents/{escalating['action_intent_id']}").json()
                return body if body.get("escalated_at") else None

            intent = wait_for(escalated, timeout=20)
            [event] = bus_events(aws, 1)
            assert event["detail"]["payload"]["action_intent_id"] == escalating["action_intent_id"]
            assert (
                event["detail"]["payload"]["policy_id"],
                event["detail"]["payload"]["policy_version"],
            ) == (
                policy["policy_id"],
                1,
            )
            with harness.service.store.read() as uow:
                entries = uow.executions.list_ledger(tenant, escalating["action_intent_id"])
            [entry] = [entry for entry in entries if entry.event_type == "APPROVAL_ESCALATED"]
            assert entry.data["policy_id"] == policy["policy_id"]
            assert entry.data["escalate_to_scopes"] == ["approvers:leads"]
            assert entry.data["expires_at"] == intent["expires_at"]

            # Past its first window, and still approvable until the extended end: someone holding
            # neither group's scopes still may not approve it, the second group (the leads) now may,
            # and it runs.
            refused = grace.post(f"/intents/{escalating['action_intent_id']}/approve")
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "MISSING_APPROVAL_SCOPE"
            approved = lead.post(f"/intents/{escalating['action_intent_id']}/approve")
            assert approved.status_code == 202, approved.text
            assert harness.wait_terminal(ada, escalating["action_intent_id"])["status"] == "SUCCEEDED"

            # The intent without the policy expired at that moment instead, and was never escalated.
            wait_for(
                lambda: (
                    ada.get(f"/executions/{plain['action_intent_id']}/status").json()["status"] == "EXPIRED"
                    or None
                ),
                timeout=20,
            )
            escalate_due(harness.service.runtime)
            assert ada.get(f"/intents/{plain['action_intent_id']}").json().get("escalated_at") is None
            assert "APPROVAL_ESCALATED" not in ledger_types(harness, plain["action_intent_id"], tenant)
            assert aws.received(BUS) == []
    finally:
        harness.stop()
