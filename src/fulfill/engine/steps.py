"""The workflow's steps. Each takes the previous step's output model and returns its own.

Every step is idempotent when re-run after a crash: the attempt lock, the write-once outcome and
the deterministic ledger, signal and outbox ids turn a repeated write into a no-op, and the tool
call repeats with the same idempotency key. A step that must end the execution raises
:class:`ExecutionStopped` carrying the outcome to record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from dbos import DBOS
from sqlalchemy import Connection

from fulfill import metrics
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import (
    DuplicateExecution,
    ExecutionContext,
    ExecutionRequest,
    ExecutionStopped,
    OutcomeDraft,
    PreflightPassed,
    RecordedOutcome,
    StartedExecution,
    ToolCall,
    ToolResult,
    outcome_from_failed_call,
    outcome_from_step_failure,
    stop_before_tool,
    tool_run_ref,
)
from fulfill.domain.expiry import is_expired
from fulfill.domain.flowcontrol import connector_of
from fulfill.domain.idempotency import idempotency_key
from fulfill.domain.killswitch import KillSwitchDecision, evaluate_kill_switches
from fulfill.domain.ledger import (
    ledger_entry,
    outcome_entry,
    signal_entry,
    tool_call_try_failed_entry,
    unknown_outcome_entry,
)
from fulfill.domain.mapping import MappingError, map_parameters, with_trusted_arguments
from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalStatus,
    AttemptStatus,
    ExecutionPolicy,
    ExecutionStatus,
    GlobalExecutionConfig,
    TenantExecutionConfig,
)
from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.signals import build_execution_signal
from fulfill.domain.targets import UNKNOWN_OUTCOME
from fulfill.domain.time import epoch_from_iso, iso_from_epoch
from fulfill.engine.flow import Permit, WaitExpired, call_lease_seconds, call_result
from fulfill.engine.runtime import current
from fulfill.engine.step_metrics import call_connector, count_retry, timed_step
from fulfill.logging_setup import step_log_context
from fulfill.store import executions, intents, killswitches, outbox, registry, targets
from fulfill.store.db import is_transient_store_error
from fulfill.tracing import traced_step

SIGNAL_TOPIC = "SIGNAL_CREATED"

_T = TypeVar("_T")

log = logging.getLogger(__name__)


class RetryableToolFailure(Exception):
    """A transient tool failure; the workflow's one retry layer retries the step on it."""

    def __init__(self, draft: OutcomeDraft) -> None:
        super().__init__(draft)
        self.draft = draft


# --- PrepareToolCall: StartExecution ─▶ ValidatePreflight ─▶ MapActionToTool ------------------


def prepare_tool_call(request: ExecutionRequest) -> ToolCall | DuplicateExecution:
    """The workflow's first checkpoint: three steps, each with its own typed input and output.

    StartExecution writes (the attempt goes RUNNING); ValidatePreflight and MapActionToTool only
    read, so they share its checkpoint instead of paying one each. Replaying this checkpoint after
    a crash repeats them together, which is safe: StartExecution finds its own RUNNING attempt and
    the reads are taken again. A stop raises :class:`ExecutionStopped`; an unexpected failure after
    the start becomes a FAILED draft; a transient database error is raised for the step to retry.
    """
    started = start_execution(request)
    if isinstance(started, DuplicateExecution):
        return started
    context = started.context
    try:
        return map_action_to_tool(validate_preflight(context))
    except ExecutionStopped:
        raise
    except Exception as exc:
        if is_transient_store_error(exc):
            raise
        raise ExecutionStopped(outcome_from_step_failure(context, unexpected_error(exc))) from None


# --- StartExecution -------------------------------------------------------------------------


@traced_step("StartExecution")
@timed_step("StartExecution")
def start_execution(request: ExecutionRequest) -> StartedExecution | DuplicateExecution:
    """Move this request's QUEUED attempt to RUNNING (its budget starts now) and write
    EXECUTION_STARTED.

    The lock (the attempt row) was taken when the execution was accepted, and belongs to one
    attempt id. This workflow re-running the step after a crash, or a fork of it made by the
    reconciler, finds its own RUNNING attempt and carries on; anything else (a late duplicate, a
    finished attempt, a newer attempt) is a duplicate and ends as a no-op: it is never recorded as
    a failure.
    """
    rt = current()
    now = rt.clock.now()
    with rt.db.write() as conn:
        intent = intents.get_intent(conn, request.tenant_id, request.action_intent_id)
        attempt = executions.get_attempt(
            conn, request.tenant_id, request.account_id, request.action_intent_id
        )
        if (
            attempt is not None
            and attempt.attempt_id == request.attempt_id
            and attempt.status is AttemptStatus.QUEUED
        ):
            policy = intent.execution_policy if intent else ExecutionPolicy()
            started_at = iso_from_epoch(now)
            if executions.begin_attempt(
                conn, attempt, started_at=started_at, deadline_epoch=now + policy.timeout_seconds
            ):
                intents.mark_execution(
                    conn,
                    request.tenant_id,
                    request.action_intent_id,
                    status=ExecutionStatus.RUNNING,
                    at=started_at,
                )
            attempt = executions.get_attempt(
                conn, request.tenant_id, request.account_id, request.action_intent_id
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
        context = ExecutionContext(
            action_intent_id=attempt.action_intent_id,
            tenant_id=attempt.tenant_id,
            account_id=attempt.account_id,
            workflow_id=attempt.workflow_id,
            attempt_count=attempt.attempt_count,
            attempt_id=attempt.attempt_id,
            trace_id=attempt.trace_id,
            started_at=attempt.started_at,
            deadline_epoch=executions.get_deadline(conn, attempt),
            approval_source=request.approval_source,
            auto_executed=request.auto_executed,
            requested_by=request.requested_by,
            rerun_reason=request.rerun_reason,
        )
        _append_started(conn, context, intent)
    return StartedExecution(context=context)


def _append_started(conn: Connection, context: ExecutionContext, intent: ActionIntentV1 | None) -> None:
    common: dict[str, Any] = {
        "timestamp": context.started_at,
        "tenant_id": context.tenant_id,
        "account_id": context.account_id,
        "action_intent_id": context.action_intent_id,
        "attempt": context.attempt_count,
        "trace_id": context.trace_id,
    }
    if context.attempt_count > 1:
        executions.append_ledger(
            conn,
            ledger_entry(
                event_type="RERUN_STARTED",
                data={
                    "action_intent_id": context.action_intent_id,
                    "requested_by": context.requested_by,
                    "rerun_reason": context.rerun_reason,
                    "attempt_id": context.attempt_id,
                },
                **common,
            ),
        )
    executions.append_ledger(
        conn,
        ledger_entry(
            event_type="EXECUTION_STARTED",
            data={
                "action_intent_id": context.action_intent_id,
                "attempt_id": context.attempt_id,
                "attempt_count": context.attempt_count,
                "workflow_id": context.workflow_id,
                # The execution's trace (every entry carries it; the timeline shows it here).
                "trace_id": context.trace_id,
                "registry_version": intent.registry_version if intent else None,
                "decision_trace_id": intent.trace_id if intent else None,
                "approval_source": context.approval_source.value if context.approval_source else None,
                "auto_executed": context.auto_executed,
            },
            **common,
        ),
    )


# --- ValidatePreflight ----------------------------------------------------------------------


@traced_step("ValidatePreflight")
@timed_step("ValidatePreflight")
def validate_preflight(context: ExecutionContext) -> PreflightPassed:
    """The intent still exists, is approved, is not expired, and no kill switch is on."""
    rt = current()
    now = rt.clock.now()
    _check_budget(context, now)
    with rt.db.read() as conn:
        intent = intents.get_intent(conn, context.tenant_id, context.action_intent_id)
    if intent is None or intent.account_id != context.account_id:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            _validation("INTENT_NOT_FOUND", "the action intent does not exist"),
        )
    _check_still_wanted(context, intent)
    if is_expired(intent.expires_at_epoch, now):
        raise stop_before_tool(
            context,
            ExecutionStatus.EXPIRED,
            _validation(
                "INTENT_EXPIRED",
                f"the intent expired at {intent.expires_at} (now {iso_from_epoch(now)}) before it ran",
            ),
            registry_version=intent.registry_version,
            decision_trace_id=intent.trace_id,
        )
    decision = read_kill_switches(context, intent.action_type)
    if not decision.allowed:
        raise _kill_switch_stop(
            context, decision, registry_version=intent.registry_version, trace=intent.trace_id
        )
    return PreflightPassed(context=context, intent=intent)


def _check_still_wanted(
    context: ExecutionContext, intent: ActionIntentV1, call: ToolCall | None = None
) -> None:
    if intent.approval_status is ApprovalStatus.APPROVED:
        return
    if intent.approval_status is ApprovalStatus.CANCELLED:
        raise stop_before_tool(
            context,
            ExecutionStatus.CANCELLED,
            _validation("INTENT_CANCELLED", "the intent was cancelled before its tool call"),
            call=call,
            registry_version=intent.registry_version,
            decision_trace_id=intent.trace_id,
        )
    raise stop_before_tool(
        context,
        ExecutionStatus.FAILED,
        _validation("INTENT_NOT_APPROVED", f"the intent is {intent.approval_status.value}, not APPROVED"),
        call=call,
        registry_version=intent.registry_version,
        decision_trace_id=intent.trace_id,
    )


def read_kill_switches(
    context: ExecutionContext, action_type: str, *, call: ToolCall | None = None
) -> KillSwitchDecision:
    """Read every switch. The tool is never called while they are unknown (fail closed), but an
    outage of the database is not a switch: a read that fails for a transient reason (connection
    refused or dropped, a lock timeout) is tried again with backoff for as long as the execution's
    budget lasts, so an execution outlives a short outage and goes on once the database is back.
    Only a spent budget ends it, ``FAILED``/``TIMEOUT``, saying the switches could not be read. A
    read that fails for any other reason (a row that cannot be parsed) stops it as before
    (``LOOKUP_FAILED``): waiting would not make it readable."""
    rt = current()
    try:
        global_config, tenant_config = _while_the_budget_lasts(
            context, "the kill switches could not be read", lambda: _switch_rows(context.tenant_id), call=call
        )
    except ExecutionStopped:
        raise
    except Exception:
        return KillSwitchDecision(
            allowed=False,
            scope="LOOKUP_FAILED",
            reason="kill switches could not be read; stopping to be safe",
        )
    return evaluate_kill_switches(
        environment_stop=rt.settings.global_execution_stop,
        global_config=global_config,
        tenant_config=tenant_config,
        action_type=action_type,
    )


def _switch_rows(tenant_id: str) -> tuple[GlobalExecutionConfig, TenantExecutionConfig]:
    with current().db.read() as conn:
        return killswitches.get_global(conn), killswitches.get_tenant(conn, tenant_id)


# A read the database could not answer is tried again after these pauses (the last one repeats).
_STORE_BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)


def _while_the_budget_lasts(
    context: ExecutionContext, what: str, read: Callable[[], _T], *, call: ToolCall | None = None
) -> _T:
    """``read()``, tried again with backoff while it fails for a transient store reason and the
    budget allows; a spent budget stops the execution before its tool call (``what`` says why)."""
    tries = 0
    while True:
        try:
            return read()
        except Exception as exc:
            if not is_transient_store_error(exc):
                raise
            pause = _STORE_BACKOFF_SECONDS[min(tries, len(_STORE_BACKOFF_SECONDS) - 1)]
            left = context.deadline_epoch - current().clock.now()
            if left <= pause:
                error = ExecutionError(
                    error_class=ErrorClass.TIMEOUT,
                    error_code="EXECUTION_TIMEOUT",
                    error_message=(
                        f"the execution used up its timeout_seconds budget: {what} (the database "
                        "was unavailable); the tool was not called"
                    ),
                )
                raise stop_before_tool(context, ExecutionStatus.FAILED, error, call=call) from None
            if tries == 0:
                log.warning("%s (database unavailable); trying again while the budget lasts", what)
            tries += 1
            time.sleep(pause)


def _kill_switch_stop(
    context: ExecutionContext,
    decision: KillSwitchDecision,
    *,
    call: ToolCall | None = None,
    registry_version: int | None = None,
    trace: str | None = None,
) -> ExecutionStopped:
    metrics.KILL_SWITCH_STOPS.labels(decision.scope or "UNKNOWN").inc()
    return stop_before_tool(
        context,
        ExecutionStatus.CANCELLED,
        _validation("KILL_SWITCH_ENABLED", f"stopped by kill switch ({decision.scope}): {decision.reason}"),
        call=call,
        registry_version=registry_version,
        decision_trace_id=trace,
    )


# --- MapActionToTool ------------------------------------------------------------------------


@traced_step("MapActionToTool")
@timed_step("MapActionToTool")
def map_action_to_tool(checked: PreflightPassed) -> ToolCall:
    """Resolve the pinned registry version, map the parameters, derive the idempotency key."""
    rt = current()
    context, intent = checked.context, checked.intent
    _check_budget(context, rt.clock.now())
    with rt.db.read() as conn:
        entry = registry.get_entry(conn, intent.action_type, intent.registry_version)
    if entry is None:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            _validation(
                "TOOL_MAPPING_NOT_FOUND",
                f"no registry entry for {intent.action_type} version {intent.registry_version}",
            ),
            registry_version=intent.registry_version,
            decision_trace_id=intent.trace_id,
        )
    try:
        mapped = map_parameters(intent.parameters, entry.parameter_mapping)
        key = idempotency_key(
            tenant_id=intent.tenant_id,
            action_intent_id=intent.action_intent_id,
            tool_name=entry.tool_name,
            arguments=mapped,
            registry_version=entry.registry_version,
        )
    except MappingError as exc:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            exc.error,
            registry_version=entry.registry_version,
            decision_trace_id=intent.trace_id,
        ) from None
    except ValueError as exc:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            _validation("INVALID_PARAMETER_TYPE", f"parameters cannot be canonicalised: {exc}"),
            registry_version=entry.registry_version,
            decision_trace_id=intent.trace_id,
        ) from None
    return ToolCall(
        context=context,
        action_type=intent.action_type,
        decision_trace_id=intent.trace_id,
        registry_version=entry.registry_version,
        tool_name=entry.tool_name,
        tool_schema_version=entry.tool_schema_version,
        compensation_strategy=entry.compensation_strategy,
        compensation_tool_name=entry.compensation_tool_name,
        arguments=with_trusted_arguments(
            mapped,
            tenant_id=intent.tenant_id,
            account_id=intent.account_id,
            action_intent_id=intent.action_intent_id,
            idempotency_key=key,
        ),
        idempotency_key=key,
        retry_count=intent.execution_policy.retry_count,
    )


# --- InvokeTool -----------------------------------------------------------------------------


@step_log_context("InvokeTool")
@timed_step("InvokeTool", retryable=(RetryableToolFailure,), failed=lambda result: not result.success)
def invoke_tool(call: ToolCall) -> ToolResult:
    """One ``tools/call`` through the gateway, with a timeout below the remaining budget.

    Before every try (the first call, each retry, a replay after recovery) it reads the kill
    switches and the intent's cancellation again, so that a stop arriving between two tries
    stops the next one. Then the call waits, within the budget, for its connector's gate (rate
    limit, concurrency limit, circuit breaker); a call that had to wait reads them once more.
    Transient failures raise :class:`RetryableToolFailure` so that the workflow retries this
    step; business failures come back as an unsuccessful :class:`ToolResult`.

    A call to a gateway target that does not deduplicate is marked as sent before it leaves and
    settled with its answer (``remote_tool_calls``): a replay of this step after a crash returns
    that answer, or ``UNKNOWN_OUTCOME`` when the call never got one, and never sends it again.
    """
    rt = current()
    connector = connector_of(call.tool_name)
    count_retry(connector, "InvokeTool")
    confirm = rt.needs_confirmation(call.tool_name)
    started = time.perf_counter()
    remaining = max(0.0, call.context.deadline_epoch - rt.clock.now())
    # A call to a target that does not deduplicate, already sent by an earlier run of this step,
    # is never sent again: its recorded answer (or its unknown outcome) is the answer.
    answer = _answer_of_a_call_sent_before(call) if confirm else None
    if answer is None:
        _check_budget(call.context, rt.clock.now(), call=call)
        _check_before_call(call)
        with _pass_connector_gate(call) as permit:
            remaining = _check_budget(call.context, rt.clock.now(), call=call)
            if permit.waited:
                _check_before_call(call)  # a stop that arrived while it waited stops it here
            timeout = min(rt.settings.gateway_call_timeout_seconds, remaining)
            started = time.perf_counter()
            if confirm:
                _mark_call_sent(call)
            answer = call_connector(
                connector,
                lambda: rt.gateway.call_tool(
                    tenant_id=call.context.tenant_id,
                    tool_name=call.tool_name,
                    arguments=call.arguments,
                    timeout_seconds=timeout,
                    on_send=permit.sent,
                ),
            )
            permit.finish(
                call_result(answer, timeout_cut_by_budget=timeout < rt.settings.gateway_call_timeout_seconds)
            )
        if confirm:
            _settle_call(call, answer)
    metrics.TOOL_CALL_SECONDS.labels(call.tool_name).observe(time.perf_counter() - started)
    if answer.success:
        metrics.TOOL_CALLS.labels(call.tool_name, "success").inc()
        return ToolResult(
            call=call,
            success=True,
            external_object_refs=answer.external_object_refs,
            tool_run_ref=tool_run_ref(call.context, call.tool_name),
            answer_excerpt=answer.answer_excerpt,
            refs_note=answer.refs_note,
        )
    error = answer.error or ExecutionError(
        error_class=ErrorClass.UNKNOWN, error_code="TOOL_ERROR", error_message="the tool call failed"
    )
    if error.retryable:
        metrics.TOOL_CALLS.labels(call.tool_name, "retryable_failure").inc()
        _record_failed_try(call, error)
        if error.error_class is ErrorClass.RATE_LIMIT:
            # A rate-limited system needs a longer pause than the ordinary backoff gives (at most
            # half of what is left of the budget, so that the retry still has time to run).
            left = remaining - (time.perf_counter() - started)
            time.sleep(min(rt.settings.rate_limit_backoff_seconds, max(0.0, left) / 2))
        raise RetryableToolFailure(outcome_from_failed_call(call, error))
    metrics.TOOL_CALLS.labels(call.tool_name, "failure").inc()
    return ToolResult(
        call=call, success=False, error=error, tool_run_ref=tool_run_ref(call.context, call.tool_name)
    )


def _record_failed_try(call: ToolCall, error: ExecutionError) -> None:
    """Put this try's transient failure on the execution's timeline. Best effort: a store that
    cannot take it now must not turn a retryable failure into another failure."""
    rt = current()
    status = DBOS.step_status
    try_number = (status.current_attempt or 0) + 1 if status is not None else 1
    entry = tool_call_try_failed_entry(
        timestamp=rt.clock.now_iso(),
        tenant_id=call.context.tenant_id,
        account_id=call.context.account_id,
        action_intent_id=call.context.action_intent_id,
        attempt=call.context.attempt_count,
        trace_id=call.context.trace_id,
        tool_name=call.tool_name,
        try_number=try_number,
        max_tries=status.max_attempts if status is not None else None,
        error_class=error.error_class.value,
        error_code=error.error_code,
        error_message=error.error_message,
    )
    try:
        with rt.db.write() as conn:
            executions.append_ledger(conn, entry)
    except Exception as exc:
        if not is_transient_store_error(exc):
            raise
        log.warning(
            "the failed try %d of %s is not on the timeline: the store is unavailable",
            try_number,
            call.tool_name,
        )


def _mark_key(call: ToolCall) -> tuple[str, str, str, int]:
    context = call.context
    return (context.tenant_id, context.account_id, context.action_intent_id, context.attempt_count)


def _answer_of_a_call_sent_before(call: ToolCall) -> ToolCallOutcome | None:
    """For a target that does not deduplicate, what an earlier run of this step (before a crash,
    or before the workflow was resumed) got: the recorded answer, or, when the call was marked
    sent and never answered, an unknown outcome. None when no call was sent."""
    rt = current()
    try:
        with rt.db.read() as conn:
            mark = targets.get_remote_call(conn, *_mark_key(call))
    except Exception as exc:
        if not is_transient_store_error(exc):
            raise
        raise RetryableToolFailure(outcome_from_failed_call(call, _store_unavailable())) from None
    if mark is None:
        return None
    if mark.answer is not None:
        return mark.answer
    target = call.tool_name.split(".", 1)[0]
    return ToolCallOutcome(
        success=False,
        error=ExecutionError(
            error_class=ErrorClass.UNKNOWN,
            error_code=UNKNOWN_OUTCOME,
            error_message=(
                f"the call to {call.tool_name} was in flight when its process stopped; {target} does "
                f"not deduplicate, so it is not sent again: check {target} for idempotency key "
                f"{call.idempotency_key}"
            ),
        ),
    )


def _mark_call_sent(call: ToolCall) -> None:
    """Written before the call leaves: a replay of this step finds it and does not call again."""
    rt = current()
    context = call.context
    try:
        with rt.db.write() as conn:
            targets.mark_remote_call(
                conn,
                tenant_id=context.tenant_id,
                account_id=context.account_id,
                action_intent_id=context.action_intent_id,
                attempt_count=context.attempt_count,
                tool_name=call.tool_name,
                idempotency_key=call.idempotency_key,
                now=rt.clock.now_iso(),
            )
    except Exception as exc:
        if not is_transient_store_error(exc):
            raise
        raise RetryableToolFailure(outcome_from_failed_call(call, _store_unavailable())) from None


def _store_unavailable() -> ExecutionError:
    return ExecutionError(
        error_class=ErrorClass.DOWNSTREAM,
        error_code="STORE_UNAVAILABLE",
        error_message="the database was unavailable before the call was sent; it was not sent",
    )


def _settle_call(call: ToolCall, answer: ToolCallOutcome) -> None:
    """Record the answer on the call's mark (or drop the mark when the call was not sent, so
    that the retry may send it). If this cannot be written, the mark stays without an answer,
    and a replay of the step would report the outcome as unknown: never a second call."""
    rt = current()
    key = _mark_key(call)
    for delay in (0.0, 0.05, 0.2, 0.5):
        time.sleep(delay)
        try:
            with rt.db.write() as conn:
                if answer.success or answer.error is None or not answer.error.retryable:
                    targets.settle_remote_call(conn, *key, answer)
                else:
                    targets.clear_remote_call(conn, *key)
            return
        except Exception as exc:
            if not is_transient_store_error(exc):
                return


def _pass_connector_gate(call: ToolCall) -> Permit:
    """Wait for the connector's gate while the budget lasts; a spent budget ends the execution
    ``FAILED``/``TIMEOUT``/``EXECUTION_TIMEOUT``, saying what it waited for. While it waits, the
    kill switches and the cancellation are read about once a second."""
    rt = current()
    timeout = rt.settings.gateway_call_timeout_seconds
    try:
        return rt.flow.admit(
            connector_of(call.tool_name),
            tenant_id=call.context.tenant_id,
            deadline=call.context.deadline_epoch,
            lease_seconds=call_lease_seconds(timeout),
            recheck=lambda: _check_before_call(call),
        )
    except WaitExpired as expired:
        error = ExecutionError(
            error_class=ErrorClass.TIMEOUT,
            error_code="EXECUTION_TIMEOUT",
            error_message=f"the execution used up its timeout_seconds budget {expired.describe()}",
        )
        raise stop_before_tool(call.context, ExecutionStatus.FAILED, error, call=call) from None


def _check_before_call(call: ToolCall) -> None:
    """The switches and the intent's cancellation, read right before the external call (each read
    waits out a database outage while the budget lasts)."""
    context = call.context
    decision = read_kill_switches(context, call.action_type, call=call)
    if not decision.allowed:
        raise _kill_switch_stop(context, decision, call=call)
    intent = _while_the_budget_lasts(
        context, "the intent could not be read", lambda: _intent(context), call=call
    )
    if intent is None:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            _validation("INTENT_NOT_FOUND", "the action intent does not exist"),
            call=call,
        )
    _check_still_wanted(context, intent, call)


def _intent(context: ExecutionContext) -> ActionIntentV1 | None:
    with current().db.read() as conn:
        return intents.get_intent(conn, context.tenant_id, context.action_intent_id)


# --- RecordOutcome --------------------------------------------------------------------------


@step_log_context("RecordOutcome")
@timed_step("RecordOutcome")
def record_outcome(draft: OutcomeDraft) -> RecordedOutcome:
    """Write outcome, attempt status, ledger entries, signal and its outbox message in one transaction.

    The outcome is write-once per attempt: when it already exists, the stored one wins and
    everything else is derived from it again, so a repeated RecordOutcome changes nothing. The
    result says whether the intent was cancelled while its write was happening, in which case the
    workflow hands the write to compensation.
    """
    rt = current()
    now = rt.clock.now()
    context = draft.context
    with rt.db.write() as conn:
        outcome = ActionOutcomeV1(
            tenant_id=context.tenant_id,
            account_id=context.account_id,
            action_intent_id=context.action_intent_id,
            attempt_count=context.attempt_count,
            status=draft.status,
            external_object_refs=draft.external_object_refs,
            error_code=draft.error.error_code if draft.error else None,
            error_class=draft.error.error_class if draft.error else None,
            error_message=draft.error.error_message if draft.error else None,
            tool_name=draft.tool_name,
            tool_schema_version=draft.tool_schema_version,
            registry_version=draft.registry_version,
            tool_run_ref=draft.tool_run_ref,
            idempotency_key=draft.idempotency_key,
            started_at=context.started_at,
            completed_at=iso_from_epoch(now),
            trace_id=context.trace_id,
            approval_source=context.approval_source,
            auto_executed=context.auto_executed,
        )
        inserted = executions.insert_outcome(conn, outcome)
        if not inserted:
            stored = executions.get_outcome(
                conn, context.tenant_id, context.account_id, context.action_intent_id, context.attempt_count
            )
            assert stored is not None
            outcome = stored
        executions.finish_attempt(
            conn,
            tenant_id=outcome.tenant_id,
            account_id=outcome.account_id,
            action_intent_id=outcome.action_intent_id,
            attempt_count=outcome.attempt_count,
            status=outcome.status,
            error_class=outcome.error_class,
            idempotency_key=outcome.idempotency_key,
            completed_at=outcome.completed_at,
        )
        # Locked: a cancel either sees this outcome or is seen by it, never neither.
        intent = intents.get_intent(conn, context.tenant_id, context.action_intent_id, for_update=True)
        if inserted:
            intents.mark_execution(
                conn,
                context.tenant_id,
                context.action_intent_id,
                status=outcome.status,
                at=outcome.completed_at,
            )
        decision_trace_id = draft.decision_trace_id or (intent.trace_id if intent else None)
        executions.append_ledger(
            conn,
            outcome_entry(
                outcome, decision_trace_id, answer_excerpt=draft.answer_excerpt, refs_note=draft.refs_note
            ),
        )
        if outcome.error_code == UNKNOWN_OUTCOME:
            executions.append_ledger(conn, unknown_outcome_entry(outcome))
        signal = build_execution_signal(outcome, intent)
        executions.insert_signal(conn, signal)
        executions.append_ledger(conn, signal_entry(signal))
        outbox.enqueue(
            conn,
            message_id=f"signal:{outcome.tenant_id}/{signal.signalId}",
            topic=SIGNAL_TOPIC,
            tenant_id=outcome.tenant_id,
            payload={
                "eventType": SIGNAL_TOPIC,
                "source": "fulfill",
                "payload": {
                    "signalId": signal.signalId,
                    "signalType": signal.signalType,
                    "accountId": signal.accountId,
                },
                "traceId": signal.traceId,
                "tenantId": signal.tenantId,
                "ts": signal.createdAt,
                "signal": signal.model_dump(mode="json"),
            },
            destinations=rt.settings.signal_destinations,
            now=outcome.completed_at,
            now_epoch=now,
        )
    if inserted:
        metrics.EXECUTIONS.labels(
            outcome.status.value, outcome.error_class.value if outcome.error_class else ""
        ).inc()
        if rt.settings.metrics_tenant_labels:
            metrics.TENANT_EXECUTIONS.labels(outcome.tenant_id, outcome.status.value).inc()
        metrics.EXECUTION_SECONDS.observe(max(0.0, now - epoch_from_iso(outcome.started_at)))
        if rt.settings.signal_destinations:
            rt.outbox_wakeup.set()
    if inserted:
        log.info(
            "execution ended %s%s",
            outcome.status.value,
            f" ({outcome.error_code})" if outcome.error_code else "",
        )
    cancelled = intent is not None and intent.approval_status is ApprovalStatus.CANCELLED
    return RecordedOutcome(outcome=outcome, cancelled_after_write=cancelled and _wrote(outcome))


def _wrote(outcome: ActionOutcomeV1) -> bool:
    return outcome.status is ExecutionStatus.SUCCEEDED and bool(outcome.external_object_refs)


# --- shared ---------------------------------------------------------------------------------


def unexpected_error(exc: BaseException) -> ExecutionError:
    """What an execution records for a failure no step classified."""
    if is_transient_store_error(exc):
        return ExecutionError(
            error_class=ErrorClass.DOWNSTREAM,
            error_code="STORE_UNAVAILABLE",
            error_message="the database stayed unavailable through every retry",
        )
    return ExecutionError(
        error_class=ErrorClass.UNKNOWN,
        error_code="EXECUTION_FAILED",
        error_message=f"the execution failed unexpectedly ({type(exc).__name__})",
    )


def _validation(code: str, message: str) -> ExecutionError:
    return ExecutionError(error_class=ErrorClass.VALIDATION, error_code=code, error_message=message)


def _check_budget(context: ExecutionContext, now: float, *, call: ToolCall | None = None) -> float:
    """Seconds left of ``execution_policy.timeout_seconds``; a spent budget ends the execution."""
    remaining = context.deadline_epoch - now
    if remaining > 0:
        return remaining
    error = ExecutionError(
        error_class=ErrorClass.TIMEOUT,
        error_code="EXECUTION_TIMEOUT",
        error_message="the execution used up its timeout_seconds budget before finishing",
    )
    raise stop_before_tool(context, ExecutionStatus.FAILED, error, call=call)
