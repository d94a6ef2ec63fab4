"""The approval policies' decision at an intent's creation, on the in-memory store: what is stored
for each decision, the ledger entries that record it, the execution an AUTO_APPROVE starts, the
rules for imports, and the ESCALATE window."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fulfill.domain.action_hash import action_hash
from fulfill.domain.agent_tasks import task_outcome
from fulfill.domain.execution import ExecutionRequest
from fulfill.domain.ledger import policy_outcome
from fulfill.domain.models import (
    ApprovalRule,
    ApprovalSource,
    ApprovalStatus,
    AttemptStatus,
    ExecutionAttempt,
    ExecutionStatus,
    ExecutionStatusView,
    ParameterMapping,
    PolicyDecision,
    RegistryEntry,
)
from fulfill.domain.policies import Policy, rule_of
from fulfill.tokens import Principal
from fulfill.usecases import agent, intents
from fulfill.usecases.errors import Forbidden
from fulfill.usecases.intents import Approval, CreateIntent
from tests.support.memory_store import MemoryStore, MemoryUnitOfWork
from tests.unit.usecases.test_use_cases_in_memory import Context

TOOL = "internal.create_task"
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
STAMP = "2026-01-01T00:00:00Z"


class _Effective:
    """``uow.policies`` as the decision reads it: the policies in effect, whatever the tenant."""

    def __init__(self, policies: list[Policy]) -> None:
        self._policies = policies

    def list_effective(self, tenant_id: str) -> list[Policy]:
        return [p for p in self._policies if p.tenant_id in (tenant_id, None)]


class PolicyStore(MemoryStore):
    """The in-memory store with a fixed set of policies; counts the reads of them."""

    def __init__(self) -> None:
        super().__init__()
        self.policies: list[Policy] = []
        self.reads_in_writes = 0

    @contextmanager
    def write(self) -> Iterator[MemoryUnitOfWork]:
        with super().write() as uow:
            effective = _Effective(self.policies)
            original = effective.list_effective

            def counted(tenant_id: str) -> list[Policy]:
                self.reads_in_writes += 1
                return original(tenant_id)

            effective.list_effective = counted  # type: ignore[method-assign]
            uow.policies = effective  # type: ignore[attr-defined]
            yield uow


def policy(policy_id: str, decision: str = "AUTO_APPROVE", **fields: Any) -> Policy:
    tenant_id = fields.pop("tenant_id", "t1")
    return Policy.model_validate(
        {
            "policy_id": policy_id,
            "version": fields.pop("version", 3),
            "scope": "tenant" if tenant_id else "platform",
            "tenant_id": tenant_id,
            "name": f"policy {policy_id}",
            "decision": decision,
            "created_at": STAMP,
            "updated_at": STAMP,
            "created_by": "ada",
            "updated_by": "ada",
            **fields,
        }
    )


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[ExecutionAttempt, bool, ExecutionRequest]]:
    """The executions the use case starts after its commit (none reach an engine here)."""
    calls: list[tuple[ExecutionAttempt, bool, ExecutionRequest]] = []
    monkeypatch.setattr(
        intents, "start_if_queued", lambda lock, request: calls.append((lock.attempt, lock.taken, request))
    )
    return calls


def context(*policies: Policy, required_scopes: list[str] | None = None) -> Context:
    store = PolicyStore()
    store.policies.extend(policies)
    ctx = Context(store=store, tool_schemas={TOOL: SCHEMA})
    with ctx.store.write() as uow:
        uow.registry.insert_version(
            RegistryEntry(
                action_type="CREATE_INTERNAL_TASK",
                registry_version=1,
                tool_name=TOOL,
                risk_class="MINIMAL",
                required_scopes=required_scopes or [],
                parameter_mapping={"title": ParameterMapping(tool_param="title", required=True)},
                created_at=STAMP,
            )
        )
    return ctx


def person(subject: str = "ada", *extra: str) -> Principal:
    scopes = frozenset({"intents:write", "intents:read", "intents:approve", *extra})
    return Principal(subject=subject, tenant_id="t1", scopes=scopes, claims={})


def body(**fields: Any) -> CreateIntent:
    values: dict[str, Any] = {
        "action_type": "CREATE_INTERNAL_TASK",
        "account_id": "acc-1",
        "parameters": {"title": "x"},
    }
    values.update(fields)
    return CreateIntent(**values)


def ledger(ctx: Context, intent_id: str, event_type: str) -> list[dict[str, Any]]:
    with ctx.store.read() as uow:
        entries = uow.executions.list_ledger("t1", intent_id)
    return [entry.data for entry in entries if entry.event_type == event_type]


def attempt_of(ctx: Context, intent_id: str) -> ExecutionAttempt | None:
    with ctx.store.read() as uow:
        return uow.executions.get_attempt("t1", "acc-1", intent_id)


def test_auto_approve_approves_in_the_creating_transaction_and_starts_the_execution(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(policy("pol_auto0001"))
    intent, created = intents.create_intent(ctx, person(), body())
    assert created
    assert intent.approval_status is ApprovalStatus.APPROVED
    assert intent.approved_by == "policy:pol_auto0001"
    assert intent.approval_timestamp == intent.created_at
    assert intent.action_hash == action_hash(intent)
    assert intent.approval_rule is not None
    assert (intent.approval_rule.policy_id, intent.approval_rule.policy_version) == ("pol_auto0001", 3)
    attempt = attempt_of(ctx, intent.action_intent_id)
    assert attempt is not None
    assert attempt.status is AttemptStatus.QUEUED
    [(started_attempt, taken, request)] = started
    assert (started_attempt.workflow_id, taken) == (attempt.workflow_id, True)
    assert (request.approval_source, request.auto_executed) == (ApprovalSource.POLICY, True)
    [evaluated] = ledger(ctx, intent.action_intent_id, "POLICY_EVALUATED")
    assert evaluated == {
        "action_intent_id": intent.action_intent_id,
        "policy_id": "pol_auto0001",
        "policy_version": 3,
        "policy_name": "policy pol_auto0001",
        "decision": "AUTO_APPROVE",
        "mode": "ENFORCE",
        "applied": True,
        "outcome": "auto-approved",
    }
    [approved] = ledger(ctx, intent.action_intent_id, "ACTION_APPROVED")
    assert approved["approval_source"] == "POLICY"
    assert approved["approved_by"] == approved["asserted_by"] == "policy:pol_auto0001"
    assert (approved["policy_id"], approved["policy_version"]) == ("pol_auto0001", 3)
    assert approved["action_hash"] == intent.action_hash
    assert approved["imported"] is False
    with ctx.store.read() as uow:
        stored = uow.intents.get_intent("t1", intent.action_intent_id)
    assert stored == intent


def test_deny_stores_the_intent_rejected_and_cancelled_with_the_policy_named(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(policy("pol_deny0001", "DENY"))
    intent, created = intents.create_intent(ctx, person(), body())
    assert created
    assert intent.approval_status is ApprovalStatus.REJECTED
    assert (intent.approved_by, intent.action_hash) == (None, None)
    assert attempt_of(ctx, intent.action_intent_id) is None
    assert started == []
    with ctx.store.read() as uow:
        assert uow.intents.execution_status("t1", intent.action_intent_id) == "CANCELLED"  # type: ignore[attr-defined]
    [rejected] = ledger(ctx, intent.action_intent_id, "INTENT_REJECTED")
    assert rejected == {
        "action_intent_id": intent.action_intent_id,
        "decided_by": "policy:pol_deny0001",
        "policy_id": "pol_deny0001",
        "policy_version": 3,
    }
    [evaluated] = ledger(ctx, intent.action_intent_id, "POLICY_EVALUATED")
    assert (evaluated["outcome"], evaluated["applied"]) == ("denied", True)
    assert ledger(ctx, intent.action_intent_id, "ACTION_APPROVED") == []


def test_require_approval_keeps_it_pending_with_the_rule(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(policy("pol_two00001", "REQUIRE_APPROVAL", approvals_required=2, approver_scopes=["a:b"]))
    intent, _ = intents.create_intent(ctx, person(), body())
    assert intent.approval_status is ApprovalStatus.PENDING_APPROVAL
    assert intent.approval_rule is not None
    assert (intent.approval_rule.approvals_required, intent.approval_rule.approver_scopes) == (2, ["a:b"])
    assert intent.escalates_at_epoch is None
    assert attempt_of(ctx, intent.action_intent_id) is None
    assert started == []
    [evaluated] = ledger(ctx, intent.action_intent_id, "POLICY_EVALUATED")
    assert evaluated["outcome"] == "requires 2 approvals"


def test_no_policy_is_the_default_rule_recorded_with_a_null_policy_and_shadows_only_in_the_ledger(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(policy("pol_shadow01", mode="SHADOW"), policy("pol_shadow02", "DENY", mode="SHADOW"))
    intent, _ = intents.create_intent(ctx, person(), body())
    assert intent.approval_status is ApprovalStatus.PENDING_APPROVAL
    assert intent.approval_rule is not None
    assert intent.approval_rule.policy_id is None
    assert started == []
    evaluated = ledger(ctx, intent.action_intent_id, "POLICY_EVALUATED")
    assert [(e["policy_id"], e["mode"], e["applied"], e["outcome"]) for e in evaluated] == [
        (None, "ENFORCE", True, "requires 1 approval"),
        ("pol_shadow01", "SHADOW", False, "would have auto-approved"),
        ("pol_shadow02", "SHADOW", False, "would have denied"),
    ]


def test_a_failing_expression_is_recorded_with_its_error(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(
        policy("pol_auto0001", priority=1, match={"when": "params.amount < 10"}),
        policy("pol_deny0001", "DENY", priority=2, match={"when": "params.amount > 10"}),
    )
    intent, _ = intents.create_intent(ctx, person(), body())
    assert intent.approval_status is ApprovalStatus.REJECTED
    by_policy = {e["policy_id"]: e for e in ledger(ctx, intent.action_intent_id, "POLICY_EVALUATED")}
    assert by_policy["pol_deny0001"]["outcome"] == "denied"
    assert "amount" in by_policy["pol_deny0001"]["error"]
    assert by_policy["pol_auto0001"]["applied"] is False
    assert "amount" in by_policy["pol_auto0001"]["error"]
    assert started == []


def test_a_repeat_returns_the_stored_intent_without_evaluating_again(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(policy("pol_auto0001"))
    store = ctx.store
    assert isinstance(store, PolicyStore)
    first, _ = intents.create_intent(ctx, person(), body(action_intent_id="ai_repeat"))
    reads = store.reads_in_writes
    store.policies[:] = [policy("pol_deny0001", "DENY")]
    again, created = intents.create_intent(ctx, person(), body(action_intent_id="ai_repeat"))
    assert not created
    assert again == first
    assert store.reads_in_writes == reads
    assert len(started) == 1
    assert len(ledger(ctx, "ai_repeat", "POLICY_EVALUATED")) == 1


def _imported(**fields: Any) -> CreateIntent:
    return body(approval=Approval(approved_by="upstream", approval_timestamp=STAMP), **fields)


def test_an_import_is_refused_where_the_policy_asks_more_than_one_approval_it_can_give() -> None:
    two = context(policy("pol_two00001", "REQUIRE_APPROVAL", approvals_required=2))
    with pytest.raises(Forbidden) as refused:
        intents.create_intent(two, person(), _imported())
    assert refused.value.code == "POLICY_REQUIRES_APPROVALS"
    assert "2 distinct approvals" in str(refused.value)
    scoped = context(policy("pol_crm00001", "REQUIRE_APPROVAL", approver_scopes=["approvers:crm"]))
    with pytest.raises(Forbidden) as lacking:
        intents.create_intent(scoped, person(), _imported())
    assert lacking.value.code == "POLICY_REQUIRES_APPROVALS"
    assert "approvers:crm" in str(lacking.value)
    with scoped.store.read() as uow:
        assert uow.intents.list_pending_approval(tenant_id="t1", account_ids=None, limit=10) == []
    held, _ = intents.create_intent(scoped, person("ada", "approvers:crm"), _imported())
    assert (held.approval_status, held.approved_by) == (ApprovalStatus.APPROVED, "upstream")
    [approved] = ledger(scoped, held.action_intent_id, "ACTION_APPROVED")
    assert (approved["imported"], approved["approval_source"]) == (True, "HUMAN")
    assert approved["action_hash"] == held.action_hash


def test_an_import_is_still_denied_and_an_auto_approve_keeps_the_imported_approval(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    denied, _ = intents.create_intent(context(policy("pol_deny0001", "DENY")), person(), _imported())
    assert denied.approval_status is ApprovalStatus.REJECTED
    assert (denied.approved_by, denied.approval_timestamp, denied.action_hash) == (None, None, None)
    auto_ctx = context(policy("pol_auto0001"))
    auto, _ = intents.create_intent(auto_ctx, person(), _imported())
    assert (auto.approval_status, auto.approved_by) == (ApprovalStatus.APPROVED, "upstream")
    [evaluated] = ledger(auto_ctx, auto.action_intent_id, "POLICY_EVALUATED")
    assert evaluated["outcome"] == "auto-approved; the imported approval stands"
    # An import is started by its ACTION_APPROVED event, as before.
    assert started == []
    assert attempt_of(auto_ctx, auto.action_intent_id) is None


def test_escalate_opens_the_window_at_the_first_expiry_and_extends_it_within_the_maximum() -> None:
    escalation = {
        "on_expiry": "ESCALATE",
        "escalation": {"approver_scopes": ["leads"], "extend_seconds": 3600},
    }
    ctx = context(policy("pol_esc00001", "REQUIRE_APPROVAL", **escalation))
    now = int(ctx.clock.now())
    intent, _ = intents.create_intent(ctx, person(), body(expires_at="2026-01-02T00:00:00Z"))
    assert intent.escalates_at_epoch is not None
    assert intent.expires_at_epoch == intent.escalates_at_epoch + 3600
    assert intent.expires_at.startswith("2026-01-02T01:00:00")
    # Near the platform's maximum TTL the extension stops there.
    capped_ctx = context(policy("pol_esc00001", "REQUIRE_APPROVAL", **escalation))
    capped_ctx.settings = capped_ctx.settings.model_copy(update={"max_intent_ttl_seconds": 7200})
    capped, _ = intents.create_intent(capped_ctx, person(), body())
    assert capped.escalates_at_epoch == now + 7200
    assert capped.expires_at_epoch == now + 7200


def test_the_agents_denied_task_names_the_policy(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(policy("pol_deny0001", "DENY", name="no agents here"))
    (entry,) = agent.proposable_entries(ctx)
    agent_principal = Principal(
        subject="agent-1", tenant_id="t1", scopes=frozenset({"intents:write"}), claims={}
    )
    state, _ = agent.propose(ctx, agent_principal, entry, {"account_id": "acc-1", "title": "x"}, None)
    assert state.outcome.status == "completed"
    assert state.outcome.is_error
    assert "denied by the approval policy 'no agents here' (pol_deny0001, version 3)" in state.outcome.message


def test_the_ledger_says_what_a_policy_did_or_would_have_done() -> None:
    assert policy_outcome(PolicyDecision.AUTO_APPROVE, 1, applied=True) == "auto-approved"
    assert policy_outcome(PolicyDecision.AUTO_APPROVE, 1, applied=False) == "would have auto-approved"
    assert policy_outcome(PolicyDecision.DENY, 1, applied=True) == "denied"
    assert policy_outcome(PolicyDecision.DENY, 1, applied=False) == "would have denied"
    assert policy_outcome(PolicyDecision.REQUIRE_APPROVAL, 1, applied=True) == "requires 1 approval"
    assert (
        policy_outcome(PolicyDecision.REQUIRE_APPROVAL, 3, applied=False) == "would have required 3 approvals"
    )


def test_a_person_rejecting_is_not_named_as_a_policy() -> None:
    view = ExecutionStatusView(action_intent_id="ai_1", status=ExecutionStatus.CANCELLED)
    by_person = task_outcome(ApprovalStatus.REJECTED, view, ApprovalRule())
    assert by_person.message == "rejected by an approver: the action was not executed"
    denied = task_outcome(
        ApprovalStatus.REJECTED, view, rule_of(policy("pol_deny0001", "DENY", name="night"))
    )
    assert denied.message == (
        "denied by the approval policy 'night' (pol_deny0001, version 3): the action was not executed"
    )
    assert (denied.status, denied.is_error) == ("completed", True)


def test_a_tenants_auto_approve_cannot_vouch_for_the_scopes_an_action_type_requires(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(
        policy("pol_auto0001", priority=1),
        policy("pol_two00001", "REQUIRE_APPROVAL", priority=2, approvals_required=2),
        required_scopes=["approvers:crm"],
    )
    intent, _ = intents.create_intent(ctx, person(), body())
    assert intent.approval_status is ApprovalStatus.PENDING_APPROVAL
    assert intent.approval_rule is not None
    assert intent.approval_rule.policy_id == "pol_two00001"  # the next policy decides
    assert started == []
    by_policy = {e["policy_id"]: e for e in ledger(ctx, intent.action_intent_id, "POLICY_EVALUATED")}
    held = by_policy["pol_auto0001"]
    assert (held["mode"], held["applied"]) == ("ENFORCE", False)
    assert held["outcome"].startswith("not auto-approved: approving CREATE_INTERNAL_TASK")
    assert "approvers:crm" in held["outcome"]
    assert by_policy["pol_two00001"]["outcome"] == "requires 2 approvals"
    # The platform's policy approves it: the platform sets the scopes.
    platform = context(policy("pol_plat0001", tenant_id=None), required_scopes=["approvers:crm"])
    approved, _ = intents.create_intent(platform, person(), body())
    assert approved.approved_by == "policy:pol_plat0001"
    assert len(started) == 1
