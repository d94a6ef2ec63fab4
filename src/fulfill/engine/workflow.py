"""The execution state machine: one durable DBOS workflow per attempt, read top to bottom.

    (intake: the QUEUED attempt row, the execution lock, is written where ACTION_APPROVED is accepted)
    ┌ PrepareToolCall (one checkpoint) ───────────────────────┐
    │ StartExecution ─▶ ValidatePreflight ─▶ MapActionToTool │ ─▶ InvokeTool (kill switches and
    └──────┬────────────────────┬────────────────────┬────────┘    cancellation re-read before every try,
           │                    │                    │             then the connector's gate: rate,
           │                    │                    │             concurrency, circuit; engine/flow.py)
           └──── any stop or failure ────────────────┴──────────────────────┤
                                                                            ▼
                                                       RecordOutcome (always, exactly once)
                                                                            │ cancelled while writing
                                                                            ▼
                                                            the compensation workflow (below)

Workflow id ``exec-{tenant_id}/{action_intent_id}`` (a rerun: ``…-r{n}``). DBOS checkpoints each
step; after a crash the workflow resumes at the first unfinished step. ValidatePreflight and
MapActionToTool only read, so they share StartExecution's checkpoint (three checkpoints per
execution, not five). A workflow that ends in ERROR (e.g. a database outage longer than a step's
retries) is forked from its failed step by the reconciler, which also starts the workflow of a
QUEUED attempt that has none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbos import DBOS, PropagateOtelContext, Queue, SetEnqueueOptions, SetWorkflowID, StepOptions
from dbos import error as dbos_error
from opentelemetry.context import Context as OtelContext
from pydantic import BaseModel

from fulfill import tracing
from fulfill.domain.execution import (
    CompensationRequest,
    CompensationResult,
    DuplicateExecution,
    ExecutionContext,
    ExecutionRequest,
    ExecutionStopped,
    OutcomeDraft,
    ToolCall,
    outcome_from_step_failure,
    outcome_from_tool_result,
)
from fulfill.domain.fairness import MAX_QUEUE_PRIORITY, queue_priority
from fulfill.domain.retention import COMPENSATION_WORKFLOW, EXECUTION_WORKFLOW
from fulfill.engine import compensation, steps
from fulfill.engine.direct_start import DirectStarts
from fulfill.engine.runtime import Runtime, current, installed
from fulfill.engine.steps import StepDeps
from fulfill.ports.store import Store, UnitOfWork

DUPLICATE_IGNORED = "DUPLICATE_IGNORED"
EXECUTION_QUEUE = "fulfill-executions"


def step_deps(rt: Runtime | None = None) -> StepDeps:
    """What the steps need, taken from the process's runtime: the one place the engine reads it.
    Each workflow resolves this once, when it starts (or resumes), and hands it to its steps."""
    rt = rt or current()
    return StepDeps(
        store=rt.store,
        clock=rt.clock,
        gateway=rt.gateway,
        gate=rt.flow,
        settings=rt.settings,
        needs_confirmation=rt.needs_confirmation,
        wake_outbox=rt.outbox_wakeup.set,
        waiting_reads=rt.waiting_reads,
    )


def _store_step(name: str, deps: StepDeps) -> StepOptions:
    """Steps that only touch the database retry its transient errors (locks, failovers)."""
    return StepOptions(
        name=name,
        retries_allowed=True,
        max_attempts=5,
        interval_seconds=0.05,
        backoff_rate=2.0,
        should_retry=deps.store.is_transient,
    )


def _invoke_step(retry_count: int, deps: StepDeps) -> StepOptions:
    """The one retry layer for tool calls: exponential backoff, bounded by the intent's policy."""
    return StepOptions(
        name="InvokeTool",
        retries_allowed=True,
        max_attempts=retry_count + 1,
        interval_seconds=deps.settings.retry_backoff_base_seconds,
        backoff_rate=2.0,
        should_retry=lambda exc: isinstance(exc, steps.RetryableToolFailure),
    )


@DBOS.workflow(name=EXECUTION_WORKFLOW)
def execute_intent(request: ExecutionRequest) -> str:
    deps = step_deps()
    try:
        call = DBOS.run_step(_store_step("PrepareToolCall", deps), steps.prepare_tool_call, deps, request)
        if isinstance(call, DuplicateExecution):
            return DUPLICATE_IGNORED
        draft = _invoke(deps, call)
    except ExecutionStopped as stop:
        draft = stop.draft
    recorded = DBOS.run_step(_store_step("RecordOutcome", deps), steps.record_outcome, deps, draft)
    if recorded.cancelled_after_write:
        outcome = recorded.outcome
        start_compensation(
            CompensationRequest(
                tenant_id=outcome.tenant_id,
                account_id=outcome.account_id,
                action_intent_id=outcome.action_intent_id,
                attempt_count=outcome.attempt_count,
                requested_by="cancel-during-execution",
            )
        )
    return recorded.outcome.status.value


def _invoke(deps: StepDeps, call: ToolCall) -> OutcomeDraft:
    """InvokeTool, with every way it can end turned into the draft RecordOutcome takes."""
    try:
        result = DBOS.run_step(_invoke_step(call.retry_count, deps), steps.invoke_tool, deps, call)
    except ExecutionStopped as stop:
        return stop.draft
    except dbos_error.DBOSMaxStepRetriesExceeded as exhausted:
        return _draft_after_retries(deps, call.context, exhausted)
    except Exception as exc:
        return outcome_from_step_failure(call.context, steps.unexpected_error(exc, deps.store))
    return outcome_from_tool_result(result)


@DBOS.workflow(name=COMPENSATION_WORKFLOW)
def compensate(request: CompensationRequest) -> str:
    """Undo a cancelled execution's writes: BeginCompensation ─▶ InvokeCompensation ─▶ FinishCompensation."""
    deps = step_deps()
    plan = DBOS.run_step(
        _store_step("BeginCompensation", deps), compensation.begin_compensation, deps, request
    )
    if plan is None:
        return "NOTHING_TO_COMPENSATE"
    try:
        result = DBOS.run_step(_compensation_step(deps), compensation.invoke_compensation, deps, plan)
    except dbos_error.DBOSMaxStepRetriesExceeded as exhausted:
        last = exhausted.errors[-1] if exhausted.errors else None
        result = (
            last.result
            if isinstance(last, compensation.RetryableCompensationFailure)
            else CompensationResult(
                request=request, completed=False, error=steps.unexpected_error(last or exhausted, deps.store)
            )
        )
    except Exception as exc:
        result = CompensationResult(
            request=request, completed=False, error=steps.unexpected_error(exc, deps.store)
        )
    finish = _store_step("FinishCompensation", deps)
    return DBOS.run_step(finish, compensation.finish_compensation, deps, result).value


def _compensation_step(deps: StepDeps) -> StepOptions:
    return StepOptions(
        name="InvokeCompensation",
        retries_allowed=True,
        max_attempts=6,
        interval_seconds=deps.settings.retry_backoff_base_seconds,
        backoff_rate=2.0,
        should_retry=lambda exc: isinstance(exc, compensation.RetryableCompensationFailure),
    )


def start_execution(request: ExecutionRequest, *, priority: int | None = None) -> None:
    """Start an execution under its deterministic id: at once when this process has a free worker
    slot (``engine/direct_start.py``), else on the queue; a repeat returns the existing workflow.
    ``priority``: its queue priority, when the caller read it already (see
    :func:`queue_priority_in`); else it is read here if the start goes to the queue.

    Its spans descend from the request that accepted it (the attempt's stored trace context),
    whoever starts it and whenever: DBOS keeps that context with the workflow, for recovery too.
    """
    rt = current()
    trace_parent = tracing.context_from(request.traceparent)
    if _start_directly(rt.direct_starts, request, trace_parent):
        return
    _enqueue(
        request.workflow_id,
        execute_intent,
        request,
        trace_parent,
        priority=priority if priority is not None else _fair_priority(rt.store, request.tenant_id),
    )


def queue_priority_in(uow: UnitOfWork, tenant_id: str) -> int | None:
    """The queue priority of a tenant's execution whose lock ``uow`` has just taken, read in that
    transaction when its start will go to the queue: in a process that starts no execution
    directly (an api process, direct start switched off, or stopping), or one that has
    overflowed and not yet seen its queue empty (a burst). Reading it here saves a transaction of
    its own after the commit. None where the start is likely direct: the priority is then read
    only if it has to go to the queue after all."""
    rt = installed()
    if rt is None or (rt.direct_starts is not None and not rt.direct_starts.overflowed):
        return None
    return queue_priority(uow.executions.count_active(tenant_id, most=MAX_QUEUE_PRIORITY))


def _start_directly(
    slots: DirectStarts | None, request: ExecutionRequest, trace_parent: OtelContext | None
) -> bool:
    """Start the workflow now if a slot is free; False: enqueue it. Never from inside a workflow
    (a start there would be its child)."""
    workflow_id = request.workflow_id
    if slots is None or DBOS.workflow_id is not None or not slots.take(workflow_id):
        return False
    try:
        with SetWorkflowID(workflow_id), PropagateOtelContext(trace_parent):
            handle = DBOS.start_workflow(execute_intent, request)
    except BaseException:
        slots.release(workflow_id)
        raise
    slots.started(workflow_id, handle)
    return True


def _fair_priority(store: Store, tenant_id: str) -> int:
    """Its rank among its tenant's executions queued or running: the queue starts every tenant's
    first before anyone's second (``domain/fairness.py``). If the count cannot be read, it goes
    with the firsts (the limits still hold; only the order is less fair)."""
    try:
        with store.read() as uow:
            return queue_priority(uow.executions.count_active(tenant_id, most=MAX_QUEUE_PRIORITY))
    except Exception as exc:
        if not store.is_transient(exc):
            raise
        return queue_priority(1)


def start_compensation(request: CompensationRequest) -> None:
    _enqueue(request.workflow_id, compensate, request)


def _enqueue(
    workflow_id: str,
    workflow: Callable[[Any], str],
    argument: BaseModel,
    trace_parent: OtelContext | None = None,
    *,
    priority: int | None = None,
) -> None:
    """``trace_parent``: the span the workflow's spans descend from (None: the current one).
    ``priority``: lower starts first; None (compensations) goes before every execution."""
    with (
        SetWorkflowID(workflow_id),
        PropagateOtelContext(trace_parent),
        SetEnqueueOptions(priority=priority),
    ):
        execution_queue().enqueue(workflow, argument)


def execution_queue() -> Queue:
    """The execution queue, read from DBOS's system database once per process: an enqueue uses
    only the queue's name (DBOS reads none of its configuration then), and the row, once
    registered, is never deleted, so reading it again for every enqueue (a transaction in the
    system database) bought nothing."""
    if _EXECUTION_QUEUE:
        return _EXECUTION_QUEUE[0]
    queue = DBOS.retrieve_queue(EXECUTION_QUEUE)
    if queue is None:
        raise RuntimeError("the execution queue is not registered")
    _EXECUTION_QUEUE[:] = [queue]
    return queue


_EXECUTION_QUEUE: list[Queue] = []


def _draft_after_retries(
    deps: StepDeps, context: ExecutionContext, exhausted: dbos_error.DBOSMaxStepRetriesExceeded
) -> OutcomeDraft:
    last = exhausted.errors[-1] if exhausted.errors else None
    if isinstance(last, steps.RetryableToolFailure | ExecutionStopped):
        return last.draft
    return outcome_from_step_failure(context, steps.unexpected_error(last or exhausted, deps.store))
