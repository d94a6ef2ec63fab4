"""Which status a client sees (reference spec §9.4, without its PENDING-for-terminal defect).

Precedence: the outcome of the current attempt, then the attempt, then the intent. An outcome of
an earlier attempt never hides a rerun that is running now.
"""

from __future__ import annotations

from typing import Any

from fulfill.domain.expiry import is_expired
from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalGiven,
    ApprovalStatus,
    AttemptStatus,
    ExecutionAttempt,
    ExecutionStatus,
    ExecutionStatusView,
)


def derive_status(
    *,
    action_intent_id: str,
    intent: ActionIntentV1 | None,
    attempt: ExecutionAttempt | None,
    outcome: ActionOutcomeV1 | None,
    now_epoch: float,
) -> ExecutionStatusView | None:
    """The status view, or ``None`` when nothing at all exists (a 404, never a PENDING); it names
    the intent's proposer, its approvals and the action approved whatever the status, and, when
    an approver edited it, the parameters that run (which the proposer did not send)."""
    view = _derive(
        action_intent_id=action_intent_id,
        intent=intent,
        attempt=attempt,
        outcome=outcome,
        now_epoch=now_epoch,
    )
    if view is None or intent is None:
        return view
    return view.model_copy(update=_approval_fields(intent))


def _approval_fields(intent: ActionIntentV1) -> dict[str, Any]:
    fields: dict[str, Any] = {"proposed_by": intent.proposed_by, "action_hash": intent.action_hash}
    if intent.approval_rule is not None and intent.approval_rule.policy_id is not None:
        fields["approvals_required"] = intent.approval_rule.approvals_required
        fields["policy_id"] = intent.approval_rule.policy_id
        fields["approvals"] = [
            ApprovalGiven(approved_by=a.approved_by, approved_at=a.approved_at, action_hash=a.action_hash)
            for a in intent.approvals
        ]
    if intent.edited_fields:
        fields["parameters"] = intent.parameters
        fields["edited_fields"] = list(intent.edited_fields)
    return fields


def _derive(
    *,
    action_intent_id: str,
    intent: ActionIntentV1 | None,
    attempt: ExecutionAttempt | None,
    outcome: ActionOutcomeV1 | None,
    now_epoch: float,
) -> ExecutionStatusView | None:
    if outcome is not None and (attempt is None or outcome.attempt_count == attempt.attempt_count):
        return ExecutionStatusView(
            action_intent_id=action_intent_id,
            status=outcome.status,
            started_at=outcome.started_at,
            completed_at=outcome.completed_at,
            external_object_refs=list(outcome.external_object_refs),
            error_code=outcome.error_code,
            error_class=outcome.error_class,
            error_message=outcome.error_message,
            attempt_count=outcome.attempt_count,
            compensation_status=outcome.compensation_status,
        )
    if attempt is not None:
        return ExecutionStatusView(
            action_intent_id=action_intent_id,
            # Queued: accepted and locked, but not started yet.
            status=attempt.status.execution_status,
            started_at=None if attempt.status is AttemptStatus.QUEUED else attempt.started_at,
            completed_at=attempt.completed_at,
            error_class=attempt.last_error_class,
            attempt_count=attempt.attempt_count,
        )
    if intent is None:
        return None
    if intent.approval_status is ApprovalStatus.CANCELLED:
        return ExecutionStatusView(
            action_intent_id=action_intent_id,
            status=ExecutionStatus.CANCELLED,
            error_code="INTENT_CANCELLED",
            error_message="the intent was cancelled before it ran",
        )
    if intent.approval_status is ApprovalStatus.REJECTED:
        return ExecutionStatusView(
            action_intent_id=action_intent_id,
            status=ExecutionStatus.CANCELLED,
            error_code="INTENT_REJECTED",
            error_message="the intent was rejected and will not run",
        )
    if is_expired(intent.expires_at_epoch, now_epoch):
        return ExecutionStatusView(action_intent_id=action_intent_id, status=ExecutionStatus.EXPIRED)
    return ExecutionStatusView(action_intent_id=action_intent_id, status=ExecutionStatus.PENDING)
