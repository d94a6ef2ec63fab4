"""Counting the approvals of one intent: who is entitled, and when the last one needed is given.

An intent's :class:`~fulfill.domain.models.ApprovalRule` (fixed when it was created) says how many
distinct people must approve it (M of N) and which scopes each of them must hold. Once the intent
is escalated (``escalated_at`` set), holding every ``escalate_to_scopes`` qualifies too. The rule
here is pure; the approval use case applies it under the intent's row lock, so that concurrent
approvals are counted one after the other and exactly one of them completes the intent.

Only approvals of the current action count: each one carries the hash of the action it approved
(domain/action_hash.py), and an approval of another hash (given before an edit) is not counted.
A repeat by someone already counted changes nothing (:class:`AlreadyCounted`).

Agents and proposers are refused before this (domain/approvers.py); the registry version's
``required_scopes`` are checked there too.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from fulfill.domain.idempotency import canonical_json
from fulfill.domain.models import ApprovalRule, IntentApproval

MISSING_APPROVAL_SCOPE = "MISSING_APPROVAL_SCOPE"


@dataclass(frozen=True)
class Counted:
    """The approval is counted: ``approvals`` is the round's approvals with it, oldest first;
    ``complete`` when it is the last one needed (the intent becomes APPROVED)."""

    approvals: tuple[IntentApproval, ...]
    complete: bool


@dataclass(frozen=True)
class AlreadyCounted:
    """The approver's approval of this exact action is already counted: nothing changes."""

    approvals: tuple[IntentApproval, ...]


@dataclass(frozen=True)
class Refused:
    code: str
    message: str


def approvals_required(rule: ApprovalRule | None) -> int:
    """How many distinct people must approve (the default rule: one)."""
    return rule.approvals_required if rule is not None else 1


def current_approvals(approvals: Sequence[IntentApproval], action_hash: str) -> tuple[IntentApproval, ...]:
    """The approvals of the current action, oldest first (one per approver)."""
    seen: set[str] = set()
    kept: list[IntentApproval] = []
    for approval in approvals:
        if approval.action_hash == action_hash and approval.approved_by not in seen:
            seen.add(approval.approved_by)
            kept.append(approval)
    return tuple(kept)


def entitlement(
    rule: ApprovalRule | None, scopes: Collection[str], *, escalated: bool, decision: str = "approve"
) -> Refused | None:
    """May a holder of ``scopes`` decide on an intent of ``rule``? None when yes. Either every
    ``approver_scopes`` is held, or (once the intent is escalated) every ``escalate_to_scopes``."""
    if rule is None or not rule.approver_scopes:
        return None
    missing = sorted(set(rule.approver_scopes) - set(scopes))
    if not missing:
        return None
    if escalated and rule.escalate_to_scopes and set(rule.escalate_to_scopes) <= set(scopes):
        return None
    named = f"policy {rule.policy_name or rule.policy_id}" if rule.policy_id else "its approval rule"
    also = (
        f" (or, since it was escalated, {', '.join(sorted(rule.escalate_to_scopes))})"
        if escalated and rule.escalate_to_scopes
        else ""
    )
    return Refused(
        MISSING_APPROVAL_SCOPE,
        f"to {decision} this intent, {named} needs an approver holding "
        f"{', '.join(sorted(rule.approver_scopes))}{also}; the token lacks {', '.join(missing)}",
    )


def count_approval(
    rule: ApprovalRule | None,
    approvals: Sequence[IntentApproval],
    approval: IntentApproval,
    scopes: Collection[str],
    *,
    escalated: bool,
    action_hash: str,
) -> Counted | AlreadyCounted | Refused:
    """Count ``approval`` (given by a holder of ``scopes``) towards ``rule`` for the action whose
    hash is ``action_hash``, after ``approvals`` (the round's approvals so far)."""
    refused = entitlement(rule, scopes, escalated=escalated)
    if refused is not None:
        return refused
    if approval.action_hash != action_hash:
        return Refused(
            "APPROVAL_MISMATCH",
            "the approval is of another action than the intent's current one; read the intent again",
        )
    so_far = current_approvals(approvals, action_hash)
    if any(given.approved_by == approval.approved_by for given in so_far):
        return AlreadyCounted(so_far)
    counted = (*so_far, approval)
    return Counted(counted, complete=len(counted) >= approvals_required(rule))


def edited_fields(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """The top-level parameters an edit changed, added or removed, sorted."""
    return sorted(
        name
        for name in set(before) | set(after)
        if name not in before
        or name not in after
        or canonical_json(before[name]) != canonical_json(after[name])
    )
