"""StartExecution: the attempt goes RUNNING (its budget starts now); EXECUTION_STARTED is written."""

from __future__ import annotations

from fulfill.domain.execution import (
    DuplicateExecution,
    ExecutionContext,
    ExecutionRequest,
    PreflightReads,
    StartedExecution,
    context_for,
)
from fulfill.domain.ledger import execution_started_entries
from fulfill.domain.models import ActionIntentV1, AttemptStatus, ExecutionPolicy, ExecutionStatus
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.steps.checks import Switches, read_switches_in
from fulfill.engine.steps.decorator import step
from fulfill.engine.steps.deps import StepDeps
from fulfill.ports.store import UnitOfWork


@step("StartExecution", own_span=True)
def start_execution(deps: StepDeps, request: ExecutionRequest) -> StartedExecution | DuplicateExecution:
    """Move this request's QUEUED attempt to RUNNING (its budget starts now) and write
    EXECUTION_STARTED.

    The lock (the attempt row) was taken when the execution was accepted, and belongs to one
    attempt id. This workflow re-running the step after a crash, or a fork of it made by the
    reconciler, finds its own RUNNING attempt and carries on; anything else (a late duplicate, a
    finished attempt, a newer attempt) is a duplicate and ends as a no-op: it is never recorded as
    a failure.

    The same transaction reads what ValidatePreflight decides on (the intent, read here anyway,
    and the kill switches), so that ValidatePreflight, which runs right after in the same
    checkpoint, does not read them again (``StartedExecution.reads``). The tool call still reads
    them again right before it is sent. It also reads the registry entry the intent is pinned to,
    for MapActionToTool (an entry's version never changes: read here or a moment later, it is
    the same), so that the checkpoint reads the store in one transaction instead of two; the
    entry comes with the intent, in one statement.
    """
    now = deps.clock.now()
    with deps.store.write() as uow:
        switches = _switches(deps, uow, request.tenant_id)
        found = uow.intents.get_intent_with_entry(request.tenant_id, request.action_intent_id)
        intent, entry = found if found else (None, None)
        policy = intent.execution_policy if intent else ExecutionPolicy()
        started_at = iso_from_epoch(now)
        budget_end = now + policy.timeout_seconds
        deadline: float | None = budget_end  # None: read it (not started here)
        # The attempt goes RUNNING if it is this request's and still QUEUED, without reading it
        # first; otherwise (a re-run finding its own RUNNING attempt, a duplicate, another run of
        # this attempt that started it first) it is read as it stands.
        attempt = uow.executions.begin_attempt(
            tenant_id=request.tenant_id,
            account_id=request.account_id,
            action_intent_id=request.action_intent_id,
            attempt_id=request.attempt_id,
            started_at=started_at,
            deadline_epoch=budget_end,
        )
        if attempt is not None:
            uow.intents.mark_execution(
                request.tenant_id, request.action_intent_id, status=ExecutionStatus.RUNNING, at=started_at
            )
        else:
            deadline = None
            attempt = uow.executions.get_attempt(
                request.tenant_id, request.account_id, request.action_intent_id
            )
        if (
            attempt is None
            or attempt.attempt_id != request.attempt_id
            or attempt.attempt_count != request.attempt_count
            or attempt.status is not AttemptStatus.RUNNING
        ):
            return DuplicateExecution(
                action_intent_id=request.action_intent_id,
                existing_workflow_id=attempt.workflow_id if attempt else "",
                existing_status=attempt.status.execution_status if attempt else ExecutionStatus.PENDING,
            )
        if deadline is None:  # a re-run finding its own RUNNING attempt: its budget started before
            deadline = uow.executions.get_deadline(attempt)
        context = context_for(attempt, request, deadline_epoch=deadline)
        _append_started(uow, context, intent)
    return StartedExecution(
        context=context, reads=PreflightReads(intent=intent, switches=switches, entry=entry)
    )


def _switches(deps: StepDeps, uow: UnitOfWork, tenant_id: str) -> Switches | None:
    """The kill switches, for ValidatePreflight; None when they cannot be read for a reason other
    than an outage (a row that cannot be parsed): that stops the execution (fail closed).

    Read first in the transaction: an error of the database itself that ends the transaction
    (PostgreSQL) then fails the statements after it, so the step fails and nothing of it is
    committed, instead of a commit of a transaction that was not whole. A transient one is
    raised for the step to retry."""
    try:
        return read_switches_in(uow, tenant_id)
    except Exception as exc:
        if deps.store.is_transient(exc):
            raise
        return None


def _append_started(uow: UnitOfWork, context: ExecutionContext, intent: ActionIntentV1 | None) -> None:
    for entry in execution_started_entries(context, intent):
        uow.executions.append_ledger(entry)
