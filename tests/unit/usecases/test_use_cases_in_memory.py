"""The edge's use cases against the in-memory store: the kill switches of either scope through one
path (stored, revised, in the ledger, changed under the lock), and the decisions on an intent."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from fulfill.config import Settings
from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, SwitchSettings
from fulfill.domain.ledger import KILL_SWITCH_CHANGED
from fulfill.domain.models import ApprovalRule, ApprovalStatus
from fulfill.tokens import Principal
from fulfill.usecases import admin, intents
from fulfill.usecases.errors import Conflict, Forbidden, Invalid, NotFound
from fulfill.usecases.registry import seed_default_registry
from tests.support.memory_steps import FixedClock
from tests.support.memory_store import MemoryStore
from tests.unit.factories import make_intent

TENANT = KillSwitchScope.of_tenant("t1")


@dataclass
class Context:
    """What a use case reads (fulfill.usecases.context.UseCaseContext), in memory."""

    store: MemoryStore = field(default_factory=MemoryStore)
    clock: FixedClock = field(default_factory=FixedClock)
    settings: Settings = field(default_factory=Settings)
    tool_schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)

    def connector_names(self) -> set[str]:
        return set()


def principal(tenant_id: str = "t1", *scopes: str) -> Principal:
    return Principal(subject="alice", tenant_id=tenant_id, scopes=frozenset(scopes or ("admin",)), claims={})


@pytest.mark.parametrize("scope", [GLOBAL_SCOPE, TENANT])
def test_a_write_is_stored_revised_and_in_the_scopes_ledger(scope: KillSwitchScope) -> None:
    ctx = Context()
    assert admin.read_switches(ctx.store, scope).revision == 0
    first = admin.write_switches(ctx, scope, SwitchSettings(stopped=True), changed_by="alice")
    ctx.clock.advance(1)
    second = admin.write_switches(
        ctx, scope, SwitchSettings(disabled_action_types=("B", "A", "B")), changed_by="bob"
    )
    assert (first.revision, second.revision) == (1, 2)
    stored = admin.read_switches(ctx.store, scope)
    assert stored == second
    assert stored.settings == SwitchSettings(stopped=False, disabled_action_types=("A", "B"))
    history = admin.kill_switch_history(ctx.store, scope)
    assert [(entry.event_type, entry.attempt, entry.data["changed_by"]) for entry in history] == [
        (KILL_SWITCH_CHANGED, 2, "bob"),
        (KILL_SWITCH_CHANGED, 1, "alice"),
    ]
    other = KillSwitchScope.of_tenant("t2") if scope.is_global else GLOBAL_SCOPE
    assert admin.read_switches(ctx.store, other).revision == 0  # the other scope is untouched
    assert admin.kill_switch_history(ctx.store, other) == []


def test_a_change_applies_to_the_current_switches_and_keeps_what_it_does_not_touch() -> None:
    ctx = Context()
    admin.write_switches(ctx, TENANT, SwitchSettings(disabled_action_types=("A",)), changed_by="alice")
    changed = admin.change_switches(
        ctx.store,
        TENANT,
        lambda current: SwitchSettings(True, current.disabled_action_types),
        now=ctx.clock.now_iso(),
        changed_by="cli",
    )
    assert changed.settings == SwitchSettings(stopped=True, disabled_action_types=("A",))
    assert changed.public()["execution_enabled"] is False
    assert admin.kill_switch_history(ctx.store, TENANT, limit=1)[0].data["changed_by"] == "cli"


def test_a_tenant_admin_reads_and_writes_only_the_own_tenants_switches() -> None:
    ctx = Context()
    body = admin.TenantExecution(execution_enabled=False, disabled_action_types=[])
    stored = admin.put_tenant_execution(ctx, principal("t1"), "t1", body)
    assert (stored.execution_enabled, stored.revision) == (False, 1)
    assert admin.get_tenant_execution(ctx, principal("t1"), "t1") == stored
    with pytest.raises(NotFound):
        admin.get_tenant_execution(ctx, principal("t1"), "t2")
    with pytest.raises(NotFound):
        admin.put_tenant_execution(ctx, principal("t1"), "t2", body)
    assert admin.read_switches(ctx.store, KillSwitchScope.of_tenant("t2")).revision == 0


def test_the_global_answer_keeps_the_apis_names() -> None:
    ctx = Context()
    body = admin.KillSwitches(global_stop=True, disabled_action_types=["X_Y"])
    answer = admin.put_kill_switches(ctx, body, changed_by="root")
    assert answer.model_dump() == {
        "global_stop": True,
        "disabled_action_types": ["X_Y"],
        "revision": 1,
        "updated_at": ctx.clock.now_iso(),
    }
    assert admin.get_kill_switches(ctx) == answer


def _pending(ctx: Context) -> str:
    intent = make_intent(
        approval_status=ApprovalStatus.PENDING_APPROVAL, approved_by=None, approval_timestamp=None
    )
    with ctx.store.write() as uow:
        assert uow.intents.insert_intent(intent, "hash")
    return intent.action_intent_id


def test_a_rejection_is_stored_with_its_decision_in_the_ledger_once() -> None:
    ctx = Context()
    intent_id = _pending(ctx)
    who = principal("t1", "intents:approve")
    assert intents.reject_intent(ctx, who, intent_id, comment="no").approval_status is ApprovalStatus.REJECTED
    assert (
        intents.reject_intent(ctx, who, intent_id).approval_status is ApprovalStatus.REJECTED
    )  # again: no-op
    with ctx.store.read() as uow:
        stored = uow.intents.get_intent("t1", intent_id)
        ledger = uow.executions.list_ledger("t1", intent_id)
    assert stored is not None
    assert stored.approval_status is ApprovalStatus.REJECTED
    assert [(entry.event_type, entry.data.get("comment")) for entry in ledger] == [("INTENT_REJECTED", "no")]
    with pytest.raises(Conflict):
        intents.cancel_intent(ctx, who, intent_id)  # a rejected intent cannot be cancelled


def test_a_cancel_before_any_execution_ends_it_cancelled() -> None:
    ctx = Context()
    intent_id = _pending(ctx)
    change = intents.cancel_intent(ctx, principal("t1", "intents:approve"), intent_id)
    assert change.approval_status is ApprovalStatus.CANCELLED
    with ctx.store.read() as uow:
        stored = uow.intents.get_intent("t1", intent_id)
        ledger = uow.executions.list_ledger("t1", intent_id)
    assert stored is not None
    assert stored.approval_status is ApprovalStatus.CANCELLED
    assert [entry.event_type for entry in ledger] == ["INTENT_CANCELLED"]


def test_an_agent_cannot_reject_and_a_proposer_may_withdraw_their_own_proposal() -> None:
    ctx = Context()
    intent = make_intent(
        action_intent_id="ai_agent",
        approval_status=ApprovalStatus.PENDING_APPROVAL,
        approved_by=None,
        approval_timestamp=None,
        proposed_by="alice",
    )
    with ctx.store.write() as uow:
        assert uow.intents.insert_intent(intent, "hash")
    agent = Principal(subject="bob", tenant_id="t1", scopes=frozenset({"intents:approve"}), is_agent=True)
    with pytest.raises(Forbidden) as refused:
        intents.reject_intent(ctx, agent, "ai_agent")
    assert refused.value.code == "AGENT_CANNOT_APPROVE"
    assert (
        intents.get_intent(ctx, principal("t1"), "ai_agent").approval_status
        is ApprovalStatus.PENDING_APPROVAL
    )
    proposer = principal("t1", "intents:approve")  # alice
    assert intents.reject_intent(ctx, proposer, "ai_agent").approval_status is ApprovalStatus.REJECTED


def _two_approvals(ctx: Context) -> str:
    """A pending intent (proposed by alice) whose policy needs two approvers, its registry seeded."""
    seed_default_registry(ctx.store, "2026-01-01T00:00:00Z")
    intent = make_intent(
        action_intent_id="ai_two",
        approval_status=ApprovalStatus.PENDING_APPROVAL,
        approved_by=None,
        approval_timestamp=None,
        proposed_by="alice",
        approval_rule=ApprovalRule(policy_id="pol_1", policy_version=1, approvals_required=2),
    )
    with ctx.store.write() as uow:
        assert uow.intents.insert_intent(intent, "hash")
    return intent.action_intent_id


def _approver(subject: str) -> Principal:
    return Principal(subject=subject, tenant_id="t1", scopes=frozenset({"intents:approve"}), claims={})


def test_a_partial_approval_is_counted_once_and_an_edit_restarts_the_count() -> None:
    ctx = Context(
        tool_schemas={"internal.create_task": {"type": "object", "properties": {"title": {"type": "string"}}}}
    )
    intent_id = _two_approvals(ctx)
    first = intents.approve_intent(ctx, _approver("bob"), intent_id, comment="ok")
    assert first.approval_status is ApprovalStatus.PENDING_APPROVAL
    assert (first.approvals_required, [a.approved_by for a in first.approvals or []]) == (2, ["bob"])
    again = intents.approve_intent(ctx, _approver("bob"), intent_id)
    assert [a.approved_by for a in again.approvals or []] == ["bob"]
    with pytest.raises(Forbidden) as own:
        intents.approve_intent(ctx, principal("t1", "intents:approve"), intent_id)  # alice proposed it
    assert own.value.code == "SELF_APPROVAL"
    with pytest.raises(Invalid):
        intents.approve_intent(ctx, _approver("carol"), intent_id, parameters={"title": 7})
    edited = intents.approve_intent(ctx, _approver("carol"), intent_id, parameters={"title": "y"})
    assert edited.approval_status is ApprovalStatus.PENDING_APPROVAL
    assert [a.approved_by for a in edited.approvals or []] == ["carol"]
    with ctx.store.read() as uow:
        stored = uow.intents.get_intent("t1", intent_id)
        ledger = uow.executions.list_ledger("t1", intent_id)
    assert stored is not None
    assert (stored.parameters, stored.edited_fields) == ({"title": "y"}, ["title"])
    assert [entry.event_type for entry in ledger] == [
        "APPROVAL_RECORDED",
        "INTENT_EDITED",
        "APPROVAL_RECORDED",
    ]
    assert ledger[1].data["before"] == {"title": "x"}
