"""Compensation: undoing the external writes of a cancelled execution.

Runs as its own durable workflow (``compensate-{intent}-a{attempt}``), started when an intent is
cancelled after its write, or when the cancel arrived while the write was happening. Only
registry entries with ``compensation_strategy AUTOMATIC`` are undone automatically, through their
``compensation_tool_name``; ``MANUAL`` marks the outcome ``compensation_status PENDING`` for a
person to act on; ``NONE`` leaves it alone. Compensation tools are idempotent, so a retried or
repeated compensation deletes once.
"""

from __future__ import annotations

from sqlalchemy import Connection

from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import CompensationPlan, CompensationRequest, CompensationResult
from fulfill.domain.ledger import outcome_event
from fulfill.domain.models import (
    ActionOutcomeV1,
    CompensationStatus,
    CompensationStrategy,
    ExecutionStatus,
    LedgerEntry,
)
from fulfill.engine.runtime import current
from fulfill.store import executions, intents, registry


class RetryableCompensationFailure(Exception):
    def __init__(self, result: CompensationResult) -> None:
        super().__init__(result)
        self.result = result


def begin_compensation(request: CompensationRequest) -> CompensationPlan | None:
    """Decide what to undo and mark the outcome ``compensation_status PENDING``; None: nothing to do."""
    rt = current()
    now = rt.clock.now_iso()
    with rt.db.write() as conn:
        outcome = executions.get_outcome(
            conn, request.tenant_id, request.account_id, request.action_intent_id, request.attempt_count
        )
        intent = intents.get_intent(conn, request.tenant_id, request.action_intent_id)
        if (
            outcome is None
            or intent is None
            or outcome.status is not ExecutionStatus.SUCCEEDED
            or not outcome.external_object_refs
            or outcome.compensation_status is CompensationStatus.COMPLETED
        ):
            return None
        entry = registry.get_entry(
            conn, intent.action_type, outcome.registry_version or intent.registry_version
        )
        strategy = entry.compensation_strategy if entry else CompensationStrategy.NONE
        if strategy is CompensationStrategy.NONE:
            return None
        event_type = (
            "COMPENSATION_STARTED" if strategy is CompensationStrategy.AUTOMATIC else "COMPENSATION_REQUIRED"
        )
        _mark(
            conn,
            outcome,
            CompensationStatus.PENDING,
            error=None,
            entry=outcome_event(
                outcome,
                event_type,
                now,
                {
                    "strategy": strategy.value,
                    "compensation_tool_name": entry.compensation_tool_name if entry else None,
                    "external_object_refs": [
                        ref.model_dump(exclude_none=True) for ref in outcome.external_object_refs
                    ],
                    "requested_by": request.requested_by,
                },
            ),
        )
        if strategy is CompensationStrategy.MANUAL or entry is None or entry.compensation_tool_name is None:
            return None
        return CompensationPlan(
            request=request,
            tool_name=entry.compensation_tool_name,
            refs=outcome.external_object_refs,
            idempotency_key=outcome.idempotency_key or "",
            trace_id=outcome.trace_id,
        )


def invoke_compensation(plan: CompensationPlan) -> CompensationResult:
    """Call the compensation tool once per written object. Transient failures are retried."""
    rt = current()
    request = plan.request
    for ref in plan.refs:
        answer = rt.gateway.call_tool(
            tenant_id=request.tenant_id,
            tool_name=plan.tool_name,
            arguments={
                "object_id": ref.object_id,
                "tenant_id": request.tenant_id,
                "account_id": request.account_id,
                "action_intent_id": request.action_intent_id,
                "idempotency_key": plan.idempotency_key,
            },
            timeout_seconds=rt.settings.gateway_call_timeout_seconds,
        )
        if answer.success:
            continue
        error = answer.error or ExecutionError(
            error_class=ErrorClass.UNKNOWN,
            error_code="COMPENSATION_FAILED",
            error_message="compensation failed",
        )
        result = CompensationResult(request=request, completed=False, error=error)
        if error.retryable:
            raise RetryableCompensationFailure(result)
        return result
    return CompensationResult(request=request, completed=True)


def finish_compensation(result: CompensationResult) -> CompensationStatus:
    """Record COMPLETED or FAILED on the outcome and in the ledger."""
    rt = current()
    request = result.request
    now = rt.clock.now_iso()
    status = CompensationStatus.COMPLETED if result.completed else CompensationStatus.FAILED
    with rt.db.write() as conn:
        outcome = executions.get_outcome(
            conn, request.tenant_id, request.account_id, request.action_intent_id, request.attempt_count
        )
        if outcome is None:
            return status
        message = result.error.error_message if result.error else None
        _mark(
            conn,
            outcome,
            status,
            error=message,
            entry=outcome_event(
                outcome,
                f"COMPENSATION_{status.value}",
                now,
                {
                    "compensation_status": status.value,
                    "error_code": result.error.error_code if result.error else None,
                    "error_class": result.error.error_class.value if result.error else None,
                    "error_message": message,
                },
            ),
        )
    return status


def _mark(
    conn: Connection,
    outcome: ActionOutcomeV1,
    status: CompensationStatus,
    *,
    error: str | None,
    entry: LedgerEntry,
) -> None:
    """Compensation fields on the outcome, the ledger entry saying so, and the listing's timestamp."""
    executions.set_compensation(conn, outcome, status, error=error)
    executions.append_ledger(conn, entry)
    intents.mark_execution(conn, outcome.tenant_id, outcome.action_intent_id, status=None, at=entry.timestamp)
