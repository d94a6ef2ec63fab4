"""What the console says about an intent's approval: proposer, rule, approvals so far, hash."""

from __future__ import annotations

from fulfill.console.approval_facts import approval_facts
from fulfill.domain.action_hash import action_hash
from fulfill.domain.models import (
    ActionIntentV1,
    ApprovalRule,
    ApprovalStatus,
    ExecutionPolicy,
    IntentApproval,
    PolicyDecision,
)


def _intent(**fields: object) -> ActionIntentV1:
    values: dict[str, object] = {
        "action_intent_id": "ai_facts",
        "action_type": "CREATE_INTERNAL_TASK",
        "parameters": {"title": "t"},
        "approval_status": ApprovalStatus.PENDING_APPROVAL,
        "execution_policy": ExecutionPolicy(),
        "expires_at": "2026-01-02T00:00:00.000Z",
        "expires_at_epoch": 1_767_312_000,
        "tenant_id": "t1",
        "account_id": "acc-1",
        "trace_id": "trace",
        "registry_version": 1,
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
    }
    values.update(fields)
    return ActionIntentV1.model_validate(values)


def test_a_pending_intent_without_a_rule_waits_for_one_approval_bound_to_its_current_hash() -> None:
    intent = _intent(proposed_by="agent-1", proposed_via="mcp")
    facts = approval_facts(intent)
    assert facts.policy == "default: one approval"
    assert facts.policy_id is None
    assert facts.progress == "0 of 1"
    assert facts.proposed_by == "agent-1"
    assert facts.proposed_via == "the agent endpoint"
    assert facts.action_hash == action_hash(intent)
    assert not facts.hash_approved
    assert facts.short_hash == facts.action_hash[:15] + "…"


def test_a_partly_approved_m_of_n_intent_counts_its_approvals_and_names_its_policy() -> None:
    rule = ApprovalRule(policy_id="pol_x", policy_version=2, policy_name="big deals", approvals_required=3)
    given = IntentApproval(approved_by="alice", approved_at="2026-01-01T00:01:00.000Z", action_hash="v1:ab")
    facts = approval_facts(_intent(approval_rule=rule, approvals=[given]))
    assert facts.policy == "policy big deals (pol_x, version 2): REQUIRE_APPROVAL"
    assert facts.progress == "1 of 3"
    assert [a.approved_by for a in facts.approvals] == ["alice"]


def test_an_intent_a_policy_approved_shows_the_policy_as_its_approver_and_the_approved_hash() -> None:
    rule = ApprovalRule(policy_id="pol_auto", policy_version=1, decision=PolicyDecision.AUTO_APPROVE)
    facts = approval_facts(
        _intent(
            approval_rule=rule,
            approval_status=ApprovalStatus.APPROVED,
            approved_by="policy:pol_auto",
            approval_timestamp="2026-01-01T00:00:01.000Z",
            action_hash="v1:" + "f" * 64,
        )
    )
    assert facts.policy == "policy pol_auto (pol_auto, version 1): AUTO_APPROVE"
    assert facts.progress == "1 of 1"
    assert facts.approvals[0].approved_by == "policy:pol_auto"
    assert facts.hash_approved
    assert facts.short_hash == "v1:" + "f" * 12 + "…"


def test_a_rejected_intent_has_no_hash_to_show() -> None:
    facts = approval_facts(_intent(approval_status=ApprovalStatus.REJECTED))
    assert facts.action_hash is None
    assert facts.short_hash is None
    assert facts.progress == "0 of 1"
