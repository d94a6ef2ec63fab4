"""The reconciler: no accepted execution and no started compensation is left behind.

Every active attempt (QUEUED or RUNNING) that has not changed for ``reconcile_grace_seconds`` is
checked against its DBOS workflow, and so is every AUTOMATIC compensation. It never decides an
outcome itself: it gets the workflow running again, and the workflow records what really happened
(the checkpointed result of InvokeTool included, so a write that happened keeps its refs).

=====================================  ========================================================
what the attempt's workflow is          what the reconciler does
=====================================  ========================================================
absent (never enqueued, or deleted)     enqueue it under the attempt's workflow id
ENQUEUED, DELAYED                       nothing: a worker will dequeue it
PENDING                                 nothing, unless far past its budget (its executor is
                                        presumed dead): cancel it, then resume it on the queue
CANCELLED, MAX_RECOVERY_ATTEMPTS_…      resume it from its last checkpoint
ERROR (a step failed past its retries)  fork it from the failed step under a new id (``…~n``),
                                        recorded on the attempt row first (the steps before it
                                        are copied); after MAX_FORKS forks, log it and leave it
SUCCESS while the attempt is active     fork it from the first step (it never recorded)
=====================================  ========================================================

Compensations: a FAILED one whose next try is due, or a PENDING one whose workflow is absent,
failed or cancelled, is started again as the next try; after the last try it is left FAILED with a
``COMPENSATION_ABANDONED`` ledger entry for a person. A FAILED one whose outcome is unknown
(``COMPENSATION_OUTCOME_UNKNOWN``) has no next try and is never started again; and a next try
never resends an undo already marked sent to a target that does not deduplicate.
"""

from __future__ import annotations

import logging

from dbos import DBOS, SetWorkflowID

from fulfill import metrics
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import CompensationRequest, CompensationResult
from fulfill.domain.models import CompensationStatus, ExecutionAttempt
from fulfill.domain.records import CompensationState
from fulfill.domain.retention import FINISHED_STATUSES
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.compensation import finish_compensation
from fulfill.engine.intake import request_for
from fulfill.engine.periodic import PeriodicPass
from fulfill.engine.runtime import Runtime
from fulfill.engine.workflow import EXECUTION_QUEUE, start_compensation, start_execution, step_deps
from fulfill.logging_setup import describe_failure

log = logging.getLogger(__name__)

_WAITING = {"ENQUEUED", "DELAYED"}
_RESUMABLE = {"CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}
_DEAD = frozenset(FINISHED_STATUSES)  # will not run again unless resumed or forked
# An attempt whose workflow keeps failing is forked at most this many times (ids ``…~1`` … ``…~N``).
MAX_FORKS = 10
# A compensation workflow still PENDING after this many grace periods is presumed abandoned.
_STUCK_COMPENSATION_GRACES = 10


def reconcile_once(rt: Runtime) -> int:
    """Check every attempt and compensation that may be left behind; returns how many it acted on."""
    now = rt.clock.now()
    grace = rt.settings.reconcile_grace_seconds
    with rt.store.read() as uow:
        attempts = uow.executions.active_attempts_unchanged_since(iso_from_epoch(now - grace))
        compensations = uow.executions.compensations_to_check(
            now_epoch=now, unchanged_before_epoch=now - grace
        )
    acted = 0
    for attempt, deadline in attempts:
        try:
            action = _reconcile_attempt(rt, attempt, deadline, now)
        except Exception as exc:
            log.error("could not reconcile %s: %s", attempt.workflow_id, describe_failure(exc))
            continue
        if action is not None:
            metrics.RECONCILED.labels("execution", action).inc()
            log.warning("reconciler: %s %s (%s)", action, attempt.workflow_id, attempt.status.value)
            acted += 1
    for state in compensations:
        try:
            action = _reconcile_compensation(rt, state, now)
        except Exception as exc:
            log.error("could not reconcile compensation %s: %s", state.workflow_id, describe_failure(exc))
            continue
        if action is not None:
            metrics.RECONCILED.labels("compensation", action).inc()
            acted += 1
    return acted


def _reconcile_attempt(rt: Runtime, attempt: ExecutionAttempt, deadline: float, now: float) -> str | None:
    status = DBOS.get_workflow_status(attempt.workflow_id)
    if status is None:
        # Accepted, but its workflow never got enqueued (or its record is gone): start it. The
        # enqueue is idempotent by id, and StartExecution only runs for the lock's own attempt.
        start_execution(request_for(attempt))
        return "started"
    state = status.status
    if state in _WAITING:
        return None
    if state == "PENDING":
        if now <= deadline + rt.settings.reconcile_grace_seconds:
            return None
        DBOS.cancel_workflow(attempt.workflow_id)
        DBOS.resume_workflow(attempt.workflow_id, queue_name=EXECUTION_QUEUE)
        return "resumed-stuck"
    if state in _RESUMABLE:
        DBOS.resume_workflow(attempt.workflow_id, queue_name=EXECUTION_QUEUE)
        return "resumed"
    return _fork(rt, attempt, from_failed_step=state == "ERROR", now=now)


def _fork(rt: Runtime, attempt: ExecutionAttempt, *, from_failed_step: bool, now: float) -> str | None:
    """Continue a dead workflow under a new id: the attempt row is moved to that id first, so a
    crash in between leaves an active attempt whose workflow is absent (started on the next pass)."""
    steps = DBOS.list_workflow_steps(attempt.workflow_id)
    start_step = 1
    if from_failed_step and steps:
        last = steps[-1]
        start_step = last["function_id"] if last["error"] is not None else last["function_id"] + 1
    base, _, forks = attempt.workflow_id.partition("~")
    if forks and int(forks) >= MAX_FORKS:
        log.error(
            "%s failed again after %d forks; leaving it for a person (see its DBOS steps)",
            attempt.workflow_id,
            MAX_FORKS,
        )
        return None
    fork_id = f"{base}~{int(forks or 0) + 1}"
    with rt.store.write() as uow:
        if not uow.executions.move_attempt(attempt, workflow_id=fork_id, now=iso_from_epoch(now)):
            return None  # finished or moved meanwhile
    if start_step <= 1:
        start_execution(request_for(attempt.model_copy(update={"workflow_id": fork_id})))
        return "restarted"
    with SetWorkflowID(fork_id):
        DBOS.fork_workflow(attempt.workflow_id, start_step, queue_name=EXECUTION_QUEUE)
    return "forked"


def _reconcile_compensation(rt: Runtime, state: CompensationState, now: float) -> str | None:
    outcome = state.outcome
    request = CompensationRequest(
        tenant_id=outcome.tenant_id,
        account_id=outcome.account_id,
        action_intent_id=outcome.action_intent_id,
        attempt_count=outcome.attempt_count,
        requested_by="reconciler",
        try_number=max(state.tries, 1),
    )
    if outcome.compensation_status is CompensationStatus.PENDING:
        status = DBOS.get_workflow_status(state.workflow_id) if state.workflow_id else None
        if status is not None and status.status not in _DEAD:
            stuck = now - rt.settings.reconcile_grace_seconds * _STUCK_COMPENSATION_GRACES
            if status.status != "PENDING" or (status.updated_at or 0) / 1000 > stuck:
                return None
            DBOS.cancel_workflow(status.workflow_id)
        if request.try_number >= rt.settings.compensation_max_tries:
            finish_compensation(
                step_deps(rt),
                CompensationResult(
                    request=request,
                    completed=False,
                    error=ExecutionError(
                        error_class=ErrorClass.UNKNOWN,
                        error_code="COMPENSATION_WORKFLOW_LOST",
                        error_message="the compensation's workflow stopped before it finished",
                    ),
                ),
            )
            return "abandoned"
    start_compensation(request.model_copy(update={"try_number": request.try_number + 1}))
    return "retried"


class Reconciler(PeriodicPass):
    """Runs :func:`reconcile_once` every ``reconcile_interval_seconds``."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(
            "reconciler", lambda: reconcile_once(rt), lambda: rt.settings.reconcile_interval_seconds
        )
