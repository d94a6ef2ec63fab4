"""Compensation: undoing the external writes of a cancelled execution.

Runs as its own durable workflow (``compensate-{tenant}/{intent}-a{attempt}-c{try}``), started
when an intent is cancelled after its write, or when the cancel arrived while the write was
happening. Only registry entries with ``compensation_strategy AUTOMATIC`` are undone
automatically, through their ``compensation_tool_name``; ``MANUAL`` marks the outcome
``compensation_status PENDING`` for a person to act on; ``NONE`` leaves it alone. Compensation
tools are idempotent, so a retried or repeated compensation deletes once.

A compensation that fails is recorded FAILED with the time of its next try; the reconciler starts
that try (a new workflow, ``-c{n+1}``) with exponential backoff, up to
``FULFILL_COMPENSATION_MAX_TRIES``. After the last one it stays FAILED with a
``COMPENSATION_ABANDONED`` ledger entry and the ``fulfill_compensations_total{result="abandoned"}``
metric, for a person to act on.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection

from fulfill import metrics
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import CompensationPlan, CompensationRequest, CompensationResult
from fulfill.domain.flowcontrol import connector_of
from fulfill.domain.ledger import outcome_event
from fulfill.domain.models import (
    ActionOutcomeV1,
    CompensationStatus,
    CompensationStrategy,
    ExecutionStatus,
    LedgerEntry,
)
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.flow import WaitExpired, call_lease_seconds, call_result
from fulfill.engine.runtime import current
from fulfill.engine.step_metrics import call_connector, count_retry, timed_step
from fulfill.store import executions, intents, registry


class RetryableCompensationFailure(Exception):
    def __init__(self, result: CompensationResult) -> None:
        super().__init__(result)
        self.result = result


@timed_step("BeginCompensation")
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
        automatic = strategy is CompensationStrategy.AUTOMATIC
        if strategy is CompensationStrategy.NONE:
            return None
        event_type = "COMPENSATION_STARTED" if automatic else "COMPENSATION_REQUIRED"
        _mark(
            conn,
            outcome,
            CompensationStatus.PENDING,
            error=None,
            now_epoch=rt.clock.now(),
            tries=request.try_number if automatic else None,
            workflow_id=request.workflow_id if automatic else None,
            entry=_for_try(
                request,
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
                    "try": request.try_number,
                },
            ),
        )
        if strategy is CompensationStrategy.MANUAL or entry is None or entry.compensation_tool_name is None:
            plan = None
        else:
            plan = CompensationPlan(
                request=request,
                tool_name=entry.compensation_tool_name,
                refs=outcome.external_object_refs,
                idempotency_key=outcome.idempotency_key or "",
                trace_id=outcome.trace_id,
            )
    metrics.COMPENSATIONS_ATTEMPTED.labels("automatic" if plan is not None else "manual").inc()
    return plan


@timed_step(
    "InvokeCompensation",
    retryable=(RetryableCompensationFailure,),
    failed=lambda result: not result.completed,
)
def invoke_compensation(plan: CompensationPlan) -> CompensationResult:
    """Call the compensation tool once per written object. Transient failures are retried."""
    rt = current()
    request = plan.request
    timeout = rt.settings.gateway_call_timeout_seconds
    connector = connector_of(plan.tool_name)
    count_retry(connector, "InvokeCompensation")
    for ref in plan.refs:
        try:
            # Through the connector's gate like every call; a compensation waits at most one
            # circuit cool-down, then counts as a transient failure (retried, then by the reconciler).
            permit = rt.flow.admit(
                connector,
                tenant_id=request.tenant_id,
                deadline=rt.clock.now() + rt.settings.circuit_cooldown_seconds + timeout,
                lease_seconds=call_lease_seconds(timeout),
            )
        except WaitExpired as expired:
            error = ExecutionError(
                error_class=ErrorClass.DOWNSTREAM,
                error_code="CONNECTOR_UNAVAILABLE",
                error_message=f"the compensation gave up {expired.describe()}",
            )
            raise RetryableCompensationFailure(
                CompensationResult(request=request, completed=False, error=error)
            ) from None
        with permit:
            answer = call_connector(
                connector,
                functools.partial(
                    rt.gateway.call_tool,
                    tenant_id=request.tenant_id,
                    tool_name=plan.tool_name,
                    arguments={
                        "object_id": ref.object_id,
                        "tenant_id": request.tenant_id,
                        "account_id": request.account_id,
                        "action_intent_id": request.action_intent_id,
                        "idempotency_key": plan.idempotency_key,
                    },
                    timeout_seconds=timeout,
                    on_send=permit.sent,
                ),
            )
            permit.finish(call_result(answer))
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


@timed_step("FinishCompensation")
def finish_compensation(result: CompensationResult) -> CompensationStatus:
    """Record COMPLETED, or FAILED with the time of the next try (or, after the last try, the
    ledger entry that asks a person to act)."""
    rt = current()
    request = result.request
    now_epoch = rt.clock.now()
    now = iso_from_epoch(now_epoch)
    status = CompensationStatus.COMPLETED if result.completed else CompensationStatus.FAILED
    settings = rt.settings
    last_try = request.try_number >= settings.compensation_max_tries
    retry_at = (
        None
        if result.completed or last_try
        else now_epoch + settings.compensation_retry_base_seconds * 2 ** (request.try_number - 1)
    )
    with rt.db.write() as conn:
        outcome = executions.get_outcome(
            conn, request.tenant_id, request.account_id, request.action_intent_id, request.attempt_count
        )
        if outcome is None:
            return status
        message = result.error.error_message if result.error else None
        error = {
            "error_code": result.error.error_code if result.error else None,
            "error_class": result.error.error_class.value if result.error else None,
            "error_message": message,
        }
        _mark(
            conn,
            outcome,
            status,
            error=message,
            now_epoch=now_epoch,
            retry_at_epoch=retry_at,
            entry=_for_try(
                request,
                outcome,
                f"COMPENSATION_{status.value}",
                now,
                {
                    "compensation_status": status.value,
                    **error,
                    "try": request.try_number,
                    "next_try_at": iso_from_epoch(retry_at) if retry_at is not None else None,
                },
            ),
        )
        if not result.completed and last_try:
            executions.append_ledger(
                conn,
                outcome_event(
                    outcome,
                    "COMPENSATION_ABANDONED",
                    now,
                    {
                        **error,
                        "tries": request.try_number,
                        "message": "compensation failed on every try; undo the external write by hand",
                        "external_object_refs": [
                            ref.model_dump(exclude_none=True) for ref in outcome.external_object_refs
                        ],
                    },
                ),
            )
    metrics.COMPENSATIONS.labels(
        "completed" if result.completed else "abandoned" if last_try else "failed"
    ).inc()
    return status


def _for_try(
    request: CompensationRequest,
    outcome: ActionOutcomeV1,
    event_type: str,
    timestamp: str,
    data: dict[str, Any],
) -> LedgerEntry:
    """A compensation ledger entry; each try has its own (the first keeps the plain id)."""
    entry = outcome_event(outcome, event_type, timestamp, data)
    if request.try_number == 1:
        return entry
    return entry.model_copy(update={"entry_id": f"{entry.entry_id}#try{request.try_number}"})


def _mark(
    conn: Connection,
    outcome: ActionOutcomeV1,
    status: CompensationStatus,
    *,
    error: str | None,
    entry: LedgerEntry,
    now_epoch: float,
    tries: int | None = None,
    workflow_id: str | None = None,
    retry_at_epoch: float | None = None,
) -> None:
    """Compensation fields on the outcome, the ledger entry saying so, and the listing's timestamp."""
    executions.set_compensation(
        conn,
        outcome,
        status,
        error=error,
        now_epoch=now_epoch,
        tries=tries,
        workflow_id=workflow_id,
        retry_at_epoch=retry_at_epoch,
    )
    executions.append_ledger(conn, entry)
    intents.mark_execution(conn, outcome.tenant_id, outcome.action_intent_id, status=None, at=entry.timestamp)
