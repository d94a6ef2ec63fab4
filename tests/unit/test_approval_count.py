"""Counting an intent's approvals (domain/approval_count.py): entitlement, M of N, repeats, edits."""

from __future__ import annotations

from fulfill.domain.approval_count import (
    MISSING_APPROVAL_SCOPE,
    AlreadyCounted,
    Counted,
    Refused,
    approvals_required,
    count_approval,
    current_approvals,
    edited_fields,
    entitlement,
)
from fulfill.domain.models import ApprovalRule, ExpiryAction, IntentApproval

HASH = "v1:" + "a" * 64
OTHER = "v1:" + "b" * 64
TWO = ApprovalRule(policy_id="pol_1", policy_version=3, policy_name="two for large", approvals_required=2)


def _approval(by: str, action_hash: str = HASH) -> IntentApproval:
    return IntentApproval(approved_by=by, approved_at="2026-01-01T00:00:00.000Z", action_hash=action_hash)


def test_the_default_rule_is_one_approval_by_anyone() -> None:
    assert approvals_required(None) == 1
    counted = count_approval(None, [], _approval("ada"), set(), escalated=False, action_hash=HASH)
    assert counted == Counted((_approval("ada"),), complete=True)


def test_two_of_n_completes_on_the_second_distinct_approver() -> None:
    first = count_approval(TWO, [], _approval("ada"), set(), escalated=False, action_hash=HASH)
    assert first == Counted((_approval("ada"),), complete=False)
    assert isinstance(first, Counted)
    repeat = count_approval(TWO, first.approvals, _approval("ada"), set(), escalated=False, action_hash=HASH)
    assert repeat == AlreadyCounted((_approval("ada"),))
    second = count_approval(TWO, first.approvals, _approval("bob"), set(), escalated=False, action_hash=HASH)
    assert second == Counted((_approval("ada"), _approval("bob")), complete=True)


def test_approvals_of_another_action_do_not_count() -> None:
    stale = [_approval("ada", OTHER)]
    assert current_approvals(stale, HASH) == ()
    counted = count_approval(TWO, stale, _approval("bob"), set(), escalated=False, action_hash=HASH)
    assert counted == Counted((_approval("bob"),), complete=False)
    # The same approver again, now of the current action: counted, once.
    again = count_approval(TWO, stale, _approval("ada"), set(), escalated=False, action_hash=HASH)
    assert again == Counted((_approval("ada"),), complete=False)
    mismatch = count_approval(TWO, [], _approval("ada", OTHER), set(), escalated=False, action_hash=HASH)
    assert isinstance(mismatch, Refused)
    assert mismatch.code == "APPROVAL_MISMATCH"


def test_an_approver_needs_every_approver_scope() -> None:
    rule = TWO.model_copy(update={"approver_scopes": ["approvers:crm", "approvers:eu"]})
    refused = count_approval(rule, [], _approval("ada"), {"approvers:crm"}, escalated=False, action_hash=HASH)
    assert isinstance(refused, Refused)
    assert refused.code == MISSING_APPROVAL_SCOPE
    assert "approvers:eu" in refused.message
    assert "two for large" in refused.message
    allowed = count_approval(
        rule, [], _approval("ada"), {"approvers:crm", "approvers:eu", "x"}, escalated=False, action_hash=HASH
    )
    assert isinstance(allowed, Counted)
    assert entitlement(rule, {"approvers:crm"}, escalated=False, decision="reject") is not None


def test_once_escalated_the_second_group_qualifies_too() -> None:
    rule = TWO.model_copy(
        update={
            "approver_scopes": ["approvers:crm"],
            "on_expiry": ExpiryAction.ESCALATE,
            "escalate_to_scopes": ["approvers:managers"],
            "escalation_extend_seconds": 3600,
        }
    )
    assert entitlement(rule, {"approvers:managers"}, escalated=False) is not None
    assert entitlement(rule, {"approvers:managers"}, escalated=True) is None
    assert entitlement(rule, {"approvers:crm"}, escalated=True) is None
    refused = entitlement(rule, {"other"}, escalated=True)
    assert refused is not None
    assert "approvers:managers" in refused.message


def test_edited_fields_are_the_changed_added_and_removed_top_level_keys() -> None:
    before = {"title": "a", "notes": {"x": 1}, "due": "2026-01-01", "flag": True}
    after = {"title": "a", "notes": {"x": 2}, "owner": "bob", "flag": 1}
    assert edited_fields(before, after) == ["due", "flag", "notes", "owner"]
    assert edited_fields(before, dict(before)) == []
