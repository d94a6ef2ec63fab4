"""Compensation: undoing the external writes of a cancelled execution.

Runs as its own durable workflow (``compensate-{tenant}/{intent}-a{attempt}-c{try}``), started
when an intent is cancelled after its write, or when the cancel arrived while the write was
happening. Only registry entries with ``compensation_strategy AUTOMATIC`` are undone
automatically, through their ``compensation_tool_name``; ``MANUAL`` marks the outcome
``compensation_status PENDING`` for a person to act on; ``NONE`` leaves it alone. Compensation
tools are idempotent, so a retried or repeated compensation deletes once.

Each compensation call has an idempotency key of its own, derived from the write's key, the
compensation tool and the object (``domain/idempotency.compensation_idempotency_key``), the same
on every retry and every try: never the write's key, which a deduplicating target would answer
from its cache of the write, undoing nothing.

A compensation that fails is recorded FAILED with the time of its next try; the reconciler starts
that try (a new workflow, ``-c{n+1}``) with exponential backoff, up to
``FULFILL_COMPENSATION_MAX_TRIES``. After the last one it stays FAILED with a
``COMPENSATION_ABANDONED`` ledger entry and the ``fulfill_compensations_total{result="abandoned"}``
metric, for a person to act on.

A call whose answer was lost on a target that does not deduplicate (``UNKNOWN_OUTCOME``: the undo
may have happened) is never sent again, by this workflow or by the reconciler: the compensation
stays FAILED with no next try, a ``COMPENSATION_OUTCOME_UNKNOWN`` ledger entry names the target,
the object and the key to check, and ``fulfill_compensations_outcome_unknown_total`` counts it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from fulfill import metrics
from fulfill.domain.compensation import AfterTry, after_compensation_try, compensation_unknown_entry
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import CompensationPlan, CompensationRequest, CompensationResult
from fulfill.domain.flowcontrol import connector_of
from fulfill.domain.idempotency import compensation_idempotency_key
from fulfill.domain.ledger import outcome_event
from fulfill.domain.models import (
    ActionOutcomeV1,
    CompensationStatus,
    CompensationStrategy,
    ExecutionStatus,
    LedgerEntry,
)
from fulfill.domain.notifications import needs_person_notice
from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.targets import UNKNOWN_OUTCOME
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.flow import WaitExpired, call_lease_seconds, call_result
from fulfill.engine.step_metrics import call_connector, count_retry
from fulfill.engine.steps.decorator import step
from fulfill.engine.steps.deps import StepDeps
from fulfill.engine.steps.sent_calls import CompensationCallMarks, SentCall
from fulfill.ports.store import UnitOfWork
from fulfill.usecases.notifications import enqueue_notices


class RetryableCompensationFailure(Exception):
    def __init__(self, result: CompensationResult) -> None:
        super().__init__(result)
        self.result = result


@step("BeginCompensation")
def begin_compensation(deps: StepDeps, request: CompensationRequest) -> CompensationPlan | None:
    """Decide what to undo and mark the outcome ``compensation_status PENDING``; None: nothing to do."""
    now = deps.clock.now_iso()
    with deps.store.write() as uow:
        outcome = uow.executions.get_outcome(
            request.tenant_id, request.account_id, request.action_intent_id, request.attempt_count
        )
        intent = uow.intents.get_intent(request.tenant_id, request.action_intent_id)
        if (
            outcome is None
            or intent is None
            or outcome.status is not ExecutionStatus.SUCCEEDED
            or not outcome.external_object_refs
            or outcome.compensation_status is CompensationStatus.COMPLETED
        ):
            return None
        entry = uow.registry.get_entry(
            intent.action_type, outcome.registry_version or intent.registry_version
        )
        strategy = entry.compensation_strategy if entry else CompensationStrategy.NONE
        automatic = strategy is CompensationStrategy.AUTOMATIC
        if strategy is CompensationStrategy.NONE:
            return None
        event_type = "COMPENSATION_STARTED" if automatic else "COMPENSATION_REQUIRED"
        _mark(
            uow,
            outcome,
            CompensationStatus.PENDING,
            error=None,
            now_epoch=deps.clock.now(),
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


@step(
    "InvokeCompensation",
    retryable=(RetryableCompensationFailure,),
    failed=lambda result: not result.completed,
)
def invoke_compensation(deps: StepDeps, plan: CompensationPlan) -> CompensationResult:
    """Call the compensation tool once per written object, each call with its own key. Transient
    failures are retried; an unknown outcome is not (see the module's docstring).

    A call to a target that does not deduplicate goes through the sent-call protocol
    (``engine/steps/sent_calls.py``): a replay of this step after a crash, or a later try, uses
    the answer it got, or ``UNKNOWN_OUTCOME`` when the call never got one, and never sends the
    undo again."""
    request = plan.request
    connector = connector_of(plan.tool_name)
    count_retry(connector, "InvokeCompensation")
    confirm = deps.needs_confirmation(plan.tool_name)
    for ref in plan.refs:
        call = _Call(
            tool_name=plan.tool_name,
            object_id=ref.object_id,
            idempotency_key=compensation_idempotency_key(
                write_key=plan.idempotency_key, compensation_tool=plan.tool_name, object_id=ref.object_id
            ),
        )
        sent = _sent_call(deps, request, call) if confirm else None
        answer = sent.answer_sent_before() if sent else None
        if answer is None:
            answer = _send(deps, request, call, sent)
        if answer.success:
            continue
        error = answer.error or ExecutionError(
            error_class=ErrorClass.UNKNOWN,
            error_code="COMPENSATION_FAILED",
            error_message="compensation failed",
        )
        result = call.failed(request, error)
        if error.retryable:
            raise RetryableCompensationFailure(result)
        return result
    return CompensationResult(request=request, completed=True)


@dataclass(frozen=True)
class _Call:
    """One compensation call: the tool, the object it undoes, and the call's own key."""

    tool_name: str
    object_id: str
    idempotency_key: str

    def failed(self, request: CompensationRequest, error: ExecutionError) -> CompensationResult:
        return CompensationResult(
            request=request,
            completed=False,
            error=error,
            tool_name=self.tool_name,
            object_id=self.object_id,
            idempotency_key=self.idempotency_key,
        )


def _send(
    deps: StepDeps, request: CompensationRequest, call: _Call, sent: SentCall | None
) -> ToolCallOutcome:
    timeout = deps.settings.gateway_call_timeout_seconds
    connector = connector_of(call.tool_name)
    try:
        # Through the connector's gate like every call; a compensation waits at most one
        # circuit cool-down, then counts as a transient failure (retried, then by the reconciler).
        permit = deps.gate.admit(
            connector,
            tenant_id=request.tenant_id,
            deadline=deps.clock.now() + deps.settings.circuit_cooldown_seconds + timeout,
            lease_seconds=call_lease_seconds(timeout),
        )
    except WaitExpired as expired:
        error = ExecutionError(
            error_class=ErrorClass.DOWNSTREAM,
            error_code="CONNECTOR_UNAVAILABLE",
            error_message=f"the compensation gave up {expired.describe()}",
        )
        raise RetryableCompensationFailure(call.failed(request, error)) from None
    with permit:
        if sent:
            sent.mark_sent()
        answer = call_connector(
            connector,
            functools.partial(
                deps.gateway.call_tool,
                tenant_id=request.tenant_id,
                tool_name=call.tool_name,
                arguments={
                    "object_id": call.object_id,
                    "tenant_id": request.tenant_id,
                    "account_id": request.account_id,
                    "action_intent_id": request.action_intent_id,
                    "idempotency_key": call.idempotency_key,
                },
                timeout_seconds=timeout,
                on_send=permit.sent,
            ),
        )
        permit.finish(call_result(answer))
    if sent:
        sent.settle(answer)
    return answer


def _sent_call(deps: StepDeps, request: CompensationRequest, call: _Call) -> SentCall:
    def unavailable() -> Exception:
        error = ExecutionError(
            error_class=ErrorClass.DOWNSTREAM,
            error_code="STORE_UNAVAILABLE",
            error_message=(
                "the database was unavailable before the compensation call was sent; it was not sent"
            ),
        )
        return RetryableCompensationFailure(call.failed(request, error))

    return SentCall(
        deps.store,
        deps.clock,
        CompensationCallMarks(
            tenant_id=request.tenant_id,
            account_id=request.account_id,
            action_intent_id=request.action_intent_id,
            attempt_count=request.attempt_count,
            tool_name=call.tool_name,
            object_id=call.object_id,
            idempotency_key=call.idempotency_key,
        ),
        tool_name=call.tool_name,
        idempotency_key=call.idempotency_key,
        what=f"the call to {call.tool_name} for {call.object_id}",
        # Keep the answer of a call that undid (or may have undone) something; one that did
        # nothing (never sent, or refused for certain) is cleared, so that a later try may send it.
        keep=lambda answer: (
            answer.success or (answer.error is not None and answer.error.error_code == UNKNOWN_OUTCOME)
        ),
        unavailable=unavailable,
        sleep=deps.sleep,
    )


@step("FinishCompensation")
def finish_compensation(deps: StepDeps, result: CompensationResult) -> CompensationStatus:
    """Record COMPLETED, or FAILED with the time of the next try (or, after the last try, the
    ledger entry that asks a person to act)."""
    request = result.request
    now_epoch = deps.clock.now()
    now = iso_from_epoch(now_epoch)
    status = CompensationStatus.COMPLETED if result.completed else CompensationStatus.FAILED
    settings = deps.settings
    step = after_compensation_try(
        completed=result.completed,
        error=result.error,
        try_number=request.try_number,
        max_tries=settings.compensation_max_tries,
        retry_base_seconds=settings.compensation_retry_base_seconds,
        now_epoch=now_epoch,
    )
    retry_at = step.retry_at_epoch
    with deps.store.write() as uow:
        outcome = uow.executions.get_outcome(
            request.tenant_id, request.account_id, request.action_intent_id, request.attempt_count
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
            uow,
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
        if step.after is AfterTry.OUTCOME_UNKNOWN:
            unknown = compensation_unknown_entry(
                outcome,
                now,
                tool_name=result.tool_name or "",
                object_id=result.object_id,
                idempotency_key=result.idempotency_key,
                error=result.error,
                try_number=request.try_number,
            )
            uow.executions.append_ledger(_per_try(request, unknown))
            _notify_person(
                uow,
                deps,
                request,
                now,
                what="compensation-outcome-unknown",
                reason="The undo of this execution's write may or may not have happened (its answer was "
                "lost); it is never sent again by itself. Check the target and settle it by hand.",
            )
        if step.after is AfterTry.ABANDONED:
            _notify_person(
                uow,
                deps,
                request,
                now,
                what="compensation-abandoned",
                reason=f"The compensation failed on every try ({request.try_number}); undo the external "
                "write by hand.",
            )
            uow.executions.append_ledger(
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
    metrics.COMPENSATIONS.labels(step.after.value).inc()
    if step.after is AfterTry.OUTCOME_UNKNOWN:
        metrics.COMPENSATIONS_OUTCOME_UNKNOWN.inc()
    return status


def _notify_person(
    uow: UnitOfWork, deps: StepDeps, request: CompensationRequest, now: str, *, what: str, reason: str
) -> None:
    """``EXECUTION_NEEDS_PERSON`` to the tenant's channels, in this transaction."""
    intent = uow.intents.get_intent(request.tenant_id, request.action_intent_id)
    notice = needs_person_notice(
        tenant_id=request.tenant_id,
        action_intent_id=request.action_intent_id,
        account_id=request.account_id,
        action_type=intent.action_type if intent is not None else "",
        attempt=request.attempt_count,
        reason=reason,
        occurred_at=now,
        what=what,
    )
    enqueue_notices(uow, deps.settings, notice)


def _for_try(
    request: CompensationRequest,
    outcome: ActionOutcomeV1,
    event_type: str,
    timestamp: str,
    data: dict[str, Any],
) -> LedgerEntry:
    """A compensation ledger entry; each try has its own (the first keeps the plain id)."""
    return _per_try(request, outcome_event(outcome, event_type, timestamp, data))


def _per_try(request: CompensationRequest, entry: LedgerEntry) -> LedgerEntry:
    if request.try_number == 1:
        return entry
    return entry.model_copy(update={"entry_id": f"{entry.entry_id}#try{request.try_number}"})


def _mark(
    uow: UnitOfWork,
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
    uow.executions.set_compensation(
        outcome,
        status,
        error=error,
        now_epoch=now_epoch,
        tries=tries,
        workflow_id=workflow_id,
        retry_at_epoch=retry_at_epoch,
    )
    uow.executions.append_ledger(entry)
    uow.intents.mark_execution(outcome.tenant_id, outcome.action_intent_id, status=None, at=entry.timestamp)
