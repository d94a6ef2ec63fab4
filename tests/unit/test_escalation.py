"""Escalation of an approval: which intents are due (pure), what escalating one writes, and the sweep
over the in-memory store (the SQL store and two sweepers at once: tests/integration/test_escalation.py).
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from fulfill.config import Settings
from fulfill.domain.escalation import (
    escalated,
    escalation_due,
    escalation_message,
    intent_console_url,
    select_due,
)
from fulfill.domain.ledger import approval_escalated_entry
from fulfill.domain.models import ActionIntentV1, ApprovalRule, ApprovalStatus, ExpiryAction
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.escalation import escalate, escalate_due
from fulfill.engine.eventbridge import EventBridgePublisher, escalation_entry
from fulfill.engine.runtime import Runtime
from tests.support.memory_steps import START, FakeGateway, FixedClock
from tests.support.memory_store import MemoryStore
from tests.support.memory_store.outbox import MemoryOutboxRepository
from tests.unit.factories import make_intent

NOW = 2_000_000_000
WINDOW_END = NOW - 10
EXTENDED_END = NOW + 3_600


def escalating_rule(**overrides: Any) -> ApprovalRule:
    fields: dict[str, Any] = {
        "policy_id": "pol_big",
        "policy_version": 3,
        "policy_name": "two approvers above 10k",
        "on_expiry": ExpiryAction.ESCALATE,
        "escalate_to_scopes": ["approvers:finance-leads"],
        "escalation_extend_seconds": 3_600,
    }
    fields.update(overrides)
    return ApprovalRule(**fields)


def pending(**overrides: Any) -> ActionIntentV1:
    fields: dict[str, Any] = {
        "approval_status": ApprovalStatus.PENDING_APPROVAL,
        "approval_rule": escalating_rule(),
        "escalates_at_epoch": WINDOW_END,
        "expires_at_epoch": EXTENDED_END,
        "expires_at": iso_from_epoch(EXTENDED_END),
    }
    fields.update(overrides)
    return make_intent(**fields)


# --- what is due (pure) -----------------------------------------------------------------------


def test_an_escalating_intent_is_due_once_its_first_window_ended() -> None:
    assert escalation_due(pending(), NOW)
    # The boundary second itself ends the window (as it ends an expiry).
    assert escalation_due(pending(escalates_at_epoch=NOW), NOW)
    assert not escalation_due(pending(escalates_at_epoch=NOW + 1), NOW)


@pytest.mark.parametrize(
    ("why", "overrides"),
    [
        ("no rule (the default: one person, it expires)", {"approval_rule": None}),
        ("an EXPIRE rule", {"approval_rule": escalating_rule(on_expiry=ExpiryAction.EXPIRE)}),
        ("no first window recorded", {"escalates_at_epoch": None}),
        ("already escalated", {"escalated_at": iso_from_epoch(WINDOW_END + 1)}),
        ("approved", {"approval_status": ApprovalStatus.APPROVED}),
        ("rejected", {"approval_status": ApprovalStatus.REJECTED}),
        ("cancelled", {"approval_status": ApprovalStatus.CANCELLED}),
        ("the extended end passed too", {"expires_at_epoch": NOW}),
    ],
)
def test_an_intent_is_not_due(why: str, overrides: dict[str, Any]) -> None:
    assert not escalation_due(pending(**overrides), NOW), why


def test_the_selection_keeps_the_due_ones_longest_overdue_first() -> None:
    late = pending(action_intent_id="ai_late", escalates_at_epoch=NOW - 100)
    later = pending(action_intent_id="ai_later", escalates_at_epoch=NOW - 500)
    on_time = pending(action_intent_id="ai_on_time", escalates_at_epoch=NOW)
    not_yet = pending(action_intent_id="ai_not_yet", escalates_at_epoch=NOW + 5)
    done = pending(action_intent_id="ai_done", escalated_at=iso_from_epoch(NOW - 50))
    plain = pending(action_intent_id="ai_plain", approval_rule=None)
    selected = select_due([late, not_yet, done, on_time, plain, later], NOW)
    assert [intent.action_intent_id for intent in selected] == ["ai_later", "ai_late", "ai_on_time"]
    assert select_due([], NOW) == []


# --- what escalating writes ----------------------------------------------------------------


def test_the_escalated_intent_the_ledger_entry_and_the_event() -> None:
    at = iso_from_epoch(NOW)
    intent = escalated(pending(), now=at)
    assert (intent.escalated_at, intent.updated_at) == (at, at)
    assert intent.expires_at_epoch == EXTENDED_END  # the extended end was fixed at creation
    assert not escalation_due(intent, NOW)

    entry = approval_escalated_entry(intent)
    assert (entry.event_type, entry.entry_id, entry.attempt, entry.timestamp) == (
        "APPROVAL_ESCALATED",
        "ai_1#0#APPROVAL_ESCALATED",
        0,
        at,
    )
    assert entry.data == {
        "action_intent_id": "ai_1",
        "policy_id": "pol_big",
        "policy_version": 3,
        "escalate_to_scopes": ["approvers:finance-leads"],
        "expires_at": iso_from_epoch(EXTENDED_END),
    }

    url = intent_console_url("https://fulfill.example/", intent)
    assert url == "https://fulfill.example/console/executions/ai_1"
    message = escalation_message(intent, console_url=url)
    assert message == {
        "eventType": "APPROVAL_ESCALATED",
        "source": "fulfill",
        "payload": {
            "tenant_id": "t1",
            "account_id": "acc_1",
            "action_intent_id": "ai_1",
            "action_type": "CREATE_INTERNAL_TASK",
            "policy_id": "pol_big",
            "policy_version": 3,
            "escalate_to_scopes": ["approvers:finance-leads"],
            "escalated_at": at,
            "expires_at": iso_from_epoch(EXTENDED_END),
            "console_url": "https://fulfill.example/console/executions/ai_1",
        },
        "traceId": "trace_1",
        "tenantId": "t1",
        "ts": at,
    }
    # Without a public URL there is no link, and the key is left out.
    assert intent_console_url("", intent) is None
    assert "console_url" not in escalation_message(intent, console_url=None)["payload"]

    put = escalation_entry(message, "approvals-bus")
    assert (put["Source"], put["DetailType"], put["EventBusName"]) == (
        "fulfill",
        "APPROVAL_ESCALATED",
        "approvals-bus",
    )
    assert json.loads(put["Detail"]) == message


def test_the_event_bus_publisher_knows_the_escalation_topic_and_no_unknown_one() -> None:
    publisher = EventBridgePublisher(Settings())
    assert (
        publisher.publish("SOMETHING_ELSE", {}, "bus")
        == "no EventBridge event is defined for topic SOMETHING_ELSE"
    )


# --- the sweep over a store -------------------------------------------------------------------


def runtime(store: MemoryStore, clock: FixedClock, **settings: Any) -> Runtime:
    return Runtime(settings=Settings(**settings), clock=clock, gateway=FakeGateway(), store=store)


def stored(store: MemoryStore, intent_id: str) -> ActionIntentV1:
    with store.read() as uow:
        intent = uow.intents.get_intent("t1", intent_id)
    assert intent is not None
    return intent


def insert(store: MemoryStore, *intents: ActionIntentV1) -> None:
    with store.write() as uow:
        for intent in intents:
            assert uow.intents.insert_intent(intent, "hash")


def test_the_sweep_escalates_each_due_intent_once_and_tells_the_bus() -> None:
    store, clock = MemoryStore(), FixedClock(START)
    now = int(START)
    window = {
        "escalates_at_epoch": now - 1,
        "expires_at_epoch": now + 600,
        "expires_at": iso_from_epoch(now + 600),
    }
    due = pending(action_intent_id="ai_due", **window)
    not_yet = pending(action_intent_id="ai_not_yet", **{**window, "escalates_at_epoch": now + 60})
    plain = pending(action_intent_id="ai_plain", approval_rule=None, escalates_at_epoch=None)
    insert(store, due, not_yet, plain)
    rt = runtime(store, clock, eventbridge_bus="approvals-bus", public_url="https://fulfill.example")

    assert escalate_due(rt) == 1
    assert stored(store, "ai_due").escalated_at == iso_from_epoch(START)
    assert rt.outbox_wakeup.is_set()
    with store.read() as uow:
        ledger = [entry.event_type for entry in uow.executions.list_ledger("t1", "ai_due")]
        message = cast(MemoryOutboxRepository, uow.outbox).message("escalation:t1/ai_due")
    assert ledger == ["APPROVAL_ESCALATED"]
    assert message is not None
    assert message.topic == "APPROVAL_ESCALATED"
    assert message.payload["payload"]["console_url"] == "https://fulfill.example/console/executions/ai_due"
    assert store.tables.deliveries[("escalation:t1/ai_due", "eventbridge:approvals-bus")].status == "PENDING"

    # Once: the next passes find nothing, and escalating it again by hand does nothing.
    assert escalate_due(rt) == 0
    assert escalate(rt, "t1", "ai_due") is False
    with store.read() as uow:
        assert len(uow.executions.list_ledger("t1", "ai_due")) == 1

    # The second one escalates when its own window ends; the plain one never does.
    clock.advance(60)
    assert escalate_due(rt) == 1
    assert stored(store, "ai_not_yet").escalated_at == iso_from_epoch(START + 60)
    clock.advance(10_000)
    assert escalate_due(rt) == 0
    assert stored(store, "ai_plain").escalated_at is None
    with store.read() as uow:
        assert uow.executions.list_ledger("t1", "ai_plain") == []


def test_no_bus_no_message_but_the_escalation_and_its_ledger_entry_stand() -> None:
    store, clock = MemoryStore(), FixedClock(START)
    now = int(START)
    insert(
        store,
        pending(escalates_at_epoch=now - 1, expires_at_epoch=now + 600, expires_at=iso_from_epoch(now + 600)),
    )
    rt = runtime(store, clock)
    assert escalate_due(rt) == 1
    assert stored(store, "ai_1").escalated_at is not None
    assert not rt.outbox_wakeup.is_set()
    assert store.tables.messages == {}
    with store.read() as uow:
        assert [entry.event_type for entry in uow.executions.list_ledger("t1", "ai_1")] == [
            "APPROVAL_ESCALATED"
        ]


def test_an_intent_decided_or_expired_before_the_sweep_is_left_alone() -> None:
    store, clock = MemoryStore(), FixedClock(START)
    now = int(START)
    window = {
        "escalates_at_epoch": now - 1,
        "expires_at_epoch": now + 600,
        "expires_at": iso_from_epoch(now + 600),
    }
    insert(
        store,
        pending(action_intent_id="ai_approved", **window),
        pending(action_intent_id="ai_expired", **{**window, "expires_at_epoch": now}),
    )
    with store.write() as uow:
        intent = uow.intents.get_intent("t1", "ai_approved", for_update=True)
        assert intent is not None
        assert uow.intents.transition_approval(
            intent, to_status=ApprovalStatus.APPROVED, now=iso_from_epoch(now)
        )
    rt = runtime(store, clock, eventbridge_bus="approvals-bus")
    assert escalate_due(rt) == 0
    assert escalate(rt, "t1", "ai_approved") is False
    assert escalate(rt, "t1", "ai_expired") is False
    assert escalate(rt, "t1", "ai_missing") is False
    assert store.tables.messages == {}
