"""Notification settings and the notices' outbox messages, against the in-memory store: secrets
sealed to their tenant, one delivery per configured channel in the caller's transaction, the kill
switches' notices, and a compensation given up telling a person."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from fulfill.config import Settings
from fulfill.credentials.crypto import SecretsKeyError
from fulfill.domain.errors import ErrorClass
from fulfill.domain.execution import CompensationRequest, RecordedOutcome
from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, SwitchSettings
from fulfill.domain.notifications import (
    SECRET_SLACK_BOT_TOKEN,
    NotificationSettings,
    StoredNotifications,
    approval_needed_notice,
)
from fulfill.engine import compensation
from fulfill.usecases import admin, notifications
from fulfill.usecases.errors import Conflict, Invalid
from tests.support.memory_steps import World, failure, run_chain
from tests.support.memory_store import MemoryStore
from tests.support.salesforce import OTHER_SECRETS_KEY, SECRETS_KEY
from tests.unit.factories import make_intent
from tests.unit.usecases.test_use_cases_in_memory import Context

NOW = "2026-12-05T00:00:00.000Z"
SLACK = {"bot_token": "xoxb-1-2-3", "signing_secret": "a" * 32, "channel": "C0APPROVALS"}
HOOK = {"url": "https://hooks.example.com/x", "secret": "s" * 20}


def _settings(**values: object) -> Settings:
    return Settings(secrets_key=SECRETS_KEY, smtp_url="smtp://127.0.0.1:2525", **values)  # type: ignore[arg-type]


def _put(store: MemoryStore, tenant: str, body: dict[str, object], settings: Settings | None = None) -> None:
    notifications.put_notifications(
        store,
        settings or _settings(),
        tenant,
        NotificationSettings.model_validate(body),
        now=NOW,
        updated_by="a",
    )


def _stored(store: MemoryStore, tenant: str) -> StoredNotifications:
    stored = notifications.channels_of(store, tenant)
    assert stored is not None
    return stored


def test_secrets_are_sealed_to_their_tenant() -> None:
    store = MemoryStore()
    _put(store, "t1", {"slack": SLACK, "webhooks": [HOOK]})
    stored = _stored(store, "t1")
    assert "xoxb-1-2-3" not in repr(stored)
    assert stored.settings.slack is not None
    assert stored.settings.slack.bot_token is None
    assert notifications.open_secret(_settings(), stored, SECRET_SLACK_BOT_TOKEN) == "xoxb-1-2-3"
    # A sealed value copied onto another tenant's row does not open.
    copied = StoredNotifications(tenant_id="t2", settings=stored.settings, sealed=dict(stored.sealed))
    with pytest.raises(SecretsKeyError):
        notifications.open_secret(_settings(), copied, SECRET_SLACK_BOT_TOKEN)


def test_rekey_reseals_each_tenants_secrets_with_the_first_key_and_keeps_the_rest() -> None:
    store = MemoryStore()
    _put(store, "t1", {"slack": SLACK, "webhooks": [HOOK]})
    _put(store, "t2", {"email": {"to": ["a@example.com"]}})  # no secrets
    before = _stored(store, "t1")
    rotated = _settings().model_copy(update={"secrets_key": SecretStr(f"{OTHER_SECRETS_KEY},{SECRETS_KEY}")})
    assert notifications.rekey_secrets(store, rotated) == 3
    after = _stored(store, "t1")
    assert after.sealed.keys() == before.sealed.keys()
    assert all(after.sealed[name] != before.sealed[name] for name in before.sealed)
    assert (after.settings, after.revision) == (before.settings, before.revision)
    new_only = _settings().model_copy(update={"secrets_key": SecretStr(OTHER_SECRETS_KEY)})
    assert notifications.open_secret(new_only, after, SECRET_SLACK_BOT_TOKEN) == "xoxb-1-2-3"
    assert notifications.rekey_secrets(store, rotated) == 0
    # Without the key that sealed them: refused, nothing changed.
    _put(store, "t3", {"slack": SLACK})
    sealed = _stored(store, "t3").sealed
    with pytest.raises(SecretsKeyError):
        notifications.rekey_secrets(store, new_only)
    assert _stored(store, "t3").sealed == sealed


def test_without_the_key_or_smtp_a_put_is_a_conflict_and_nothing_is_stored() -> None:
    store = MemoryStore()
    with pytest.raises(Conflict) as raised:
        _put(store, "t1", {"slack": SLACK}, Settings(smtp_url=SecretStr("smtp://127.0.0.1:25")))
    assert raised.value.code == "SECRETS_KEY_NOT_CONFIGURED"
    assert "slack.bot_token" in raised.value.message
    assert "xoxb" not in raised.value.message
    with pytest.raises(Conflict) as smtp:
        _put(store, "t1", {"email": {"to": ["a@example.com"]}}, Settings(secrets_key=SECRETS_KEY))  # type: ignore[arg-type]
    assert smtp.value.code == "SMTP_NOT_CONFIGURED"
    with pytest.raises(Invalid):
        _put(store, "t1", {"slack": {"channel": "C0APPROVALS"}})
    assert notifications.channels_of(store, "t1") is None


def test_one_delivery_per_channel_in_the_callers_transaction() -> None:
    store = MemoryStore()
    intent = make_intent(approval_status="PENDING_APPROVAL", approved_by=None, approval_timestamp=None)
    notice = approval_needed_notice(intent, occurred_at=NOW)
    with store.write() as uow:
        assert notifications.enqueue_notices(uow, _settings(), notice) == []  # nothing configured
    _put(
        store,
        "t1",
        {
            "slack": SLACK,
            "email": {"to": ["a@example.com"]},
            "webhooks": [HOOK, {**HOOK, "url": "https://b.example.com"}],
        },
    )

    def rolled_back() -> None:
        with store.write() as uow:
            notifications.enqueue_notices(uow, _settings(), notice)
            raise RuntimeError("the caller's transaction rolls back")

    with pytest.raises(RuntimeError):
        rolled_back()
    with store.read() as uow:
        assert uow.outbox.pending_count() == 0
    with store.write() as uow:
        destinations = notifications.enqueue_notices(uow, _settings(), notice)
        again = notifications.enqueue_notices(uow, _settings(), notice)
    assert destinations == ["slack:t1", "email:t1", "notify:t1:0", "notify:t1:1"]
    assert again == []  # the same notice is one message
    with store.read() as uow:
        rows = uow.outbox.deliveries_for(notice.message_id())
    assert sorted(row["destination"] for row in rows) == sorted(destinations)
    # A service without SMTP leaves email out.
    other = make_intent(
        action_intent_id="ai_2", approval_status="PENDING_APPROVAL", approved_by=None, approval_timestamp=None
    )
    with store.write() as uow:
        without = notifications.enqueue_notices(
            uow, Settings(), approval_needed_notice(other, occurred_at=NOW)
        )
    assert "email:t1" not in without
    assert len(without) == 3


def test_only_a_pending_intent_asks_for_approval() -> None:
    store = MemoryStore()
    _put(store, "t1", {"webhooks": [HOOK]})
    approved = make_intent()
    pending = make_intent(
        action_intent_id="ai_p", approval_status="PENDING_APPROVAL", approved_by=None, approval_timestamp=None
    )
    with store.write() as uow:
        notifications.enqueue_proposal_notice(uow, _settings(), approved)
        notifications.enqueue_proposal_notice(uow, _settings(), pending)
    with store.read() as uow:
        assert uow.outbox.pending_count() == 1


def test_kill_switches_notify_their_tenant_or_every_tenant_with_channels() -> None:
    ctx = Context(settings=_settings())
    for tenant in ("t1", "t2"):
        _put(ctx.store, tenant, {"webhooks": [HOOK]})
    _put(ctx.store, "t3", {})  # no channel
    admin.write_switches(ctx, KillSwitchScope.of_tenant("t1"), SwitchSettings(stopped=True), changed_by="a")
    with ctx.store.read() as uow:
        assert uow.outbox.due_destinations(now_epoch=2e9) == ["notify:t1:0"]
    admin.write_switches(ctx, GLOBAL_SCOPE, SwitchSettings(stopped=True), changed_by="ops")
    with ctx.store.read() as uow:
        assert sorted(uow.outbox.due_destinations(now_epoch=2e9)) == ["notify:t1:0", "notify:t2:0"]
        assert uow.outbox.pending_count() == 3


def test_an_abandoned_compensation_tells_a_person(world: World) -> None:
    _put(world.store, "t1", {"webhooks": [HOOK]})
    world.settings = Settings(compensation_max_tries=1)
    recorded = run_chain(world.deps, world.accept(world.add_intent(make_intent())))
    assert isinstance(recorded, RecordedOutcome)
    request = CompensationRequest(
        tenant_id="t1", account_id="acc_1", action_intent_id="ai_1", attempt_count=1
    )
    plan = compensation.begin_compensation(world.deps, request)
    assert plan is not None
    world.gateway.answers = [failure(ErrorClass.VALIDATION, "REFUSED")]
    result = compensation.invoke_compensation(world.deps, plan)
    assert not result.completed
    compensation.finish_compensation(world.deps, result)
    with world.store.read() as uow:
        letters = uow.outbox.due_destinations(now_epoch=2e9)
        messages = [
            m for m in world.store.tables.messages.values() if m.topic == "NOTICE_EXECUTION_NEEDS_PERSON"
        ]
    assert letters == ["notify:t1:0"]
    (message,) = messages
    assert message.payload["action_intent_id"] == "ai_1"
    assert message.payload["action_type"] == "CREATE_INTERNAL_TASK"
    assert "by hand" in message.payload["summary"]


def test_an_unknown_outcome_tells_a_person(world: World) -> None:
    from fulfill.domain.execution import ToolCall, outcome_from_tool_result
    from fulfill.domain.targets import UNKNOWN_OUTCOME
    from fulfill.engine import steps
    from tests.support.memory_steps import Crash, crashing

    _put(world.store, "t1", {"webhooks": [HOOK]})
    world.confirm.add("internal.create_task")
    call = steps.prepare_tool_call(world.deps, world.accept(world.add_intent(make_intent())))
    assert isinstance(call, ToolCall)
    with crashing(world.gateway), pytest.raises(Crash):
        steps.invoke_tool(world.deps, call)
    result = steps.invoke_tool(world.deps, call)  # the replay finds the call sent, its answer lost
    recorded = steps.record_outcome(world.deps, outcome_from_tool_result(result))
    assert recorded.outcome.error_code == UNKNOWN_OUTCOME
    (message,) = [
        m for m in world.store.tables.messages.values() if m.topic == "NOTICE_EXECUTION_NEEDS_PERSON"
    ]
    assert message.payload["action_intent_id"] == "ai_1"
    assert "outcome of internal.create_task is unknown" in message.payload["summary"]
    assert call.idempotency_key in message.payload["summary"]
    with world.store.read() as uow:  # next to the signal's own destination
        assert "notify:t1:0" in uow.outbox.due_destinations(now_epoch=2e9)


@pytest.fixture
def world() -> World:
    return World()


def test_an_escalation_is_notified_with_its_buttons() -> None:
    from fulfill.domain.time import iso_from_epoch
    from fulfill.engine.escalation import escalate_due
    from fulfill.engine.runtime import Runtime
    from tests.support.memory_steps import START, FakeGateway, FixedClock
    from tests.unit.test_escalation import insert, pending

    store, clock = MemoryStore(), FixedClock(START)
    now = int(START)
    insert(
        store,
        pending(escalates_at_epoch=now - 1, expires_at_epoch=now + 600, expires_at=iso_from_epoch(now + 600)),
    )
    _put(store, "t1", {"slack": SLACK})
    rt = Runtime(settings=_settings(), clock=clock, gateway=FakeGateway(), store=store)
    assert escalate_due(rt) == 1
    assert rt.outbox_wakeup.is_set()  # no event bus: the notice alone wakes the relay
    (message,) = [m for m in store.tables.messages.values() if m.topic == "NOTICE_APPROVAL_ESCALATED"]
    assert message.payload["action_intent_id"] == "ai_1"
    assert message.payload["policy_name"] == "two approvers above 10k"
    assert "approvers:finance-leads" in message.payload["summary"]
    assert [d for (mid, d) in store.tables.deliveries if mid == message.message_id] == ["slack:t1"]
