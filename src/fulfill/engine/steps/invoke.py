"""InvokeTool: one ``tools/call`` through the gateway, within the budget and the connector's gate."""

from __future__ import annotations

import logging
import time

from dbos import DBOS

from fulfill import metrics
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import (
    ToolCall,
    ToolResult,
    outcome_from_failed_call,
    stop_before_tool,
    tool_run_ref,
)
from fulfill.domain.flowcontrol import connector_of
from fulfill.domain.ledger import tool_call_try_failed_entry
from fulfill.domain.models import ExecutionStatus
from fulfill.domain.ports import ToolCallOutcome
from fulfill.engine.flow import WaitExpired, call_lease_seconds, call_result
from fulfill.engine.step_metrics import call_connector, count_retry
from fulfill.engine.steps.checks import check_before_call, check_budget, recheck_while_waiting
from fulfill.engine.steps.decorator import step
from fulfill.engine.steps.deps import GatePermit, StepDeps
from fulfill.engine.steps.failures import RetryableToolFailure, timeout_error
from fulfill.engine.steps.sent_calls import SentCall, ToolCallMarks
from fulfill.ports.repositories.connectors import GateView

log = logging.getLogger(__name__)


@step("InvokeTool", retryable=(RetryableToolFailure,), failed=lambda result: not result.success)
def invoke_tool(deps: StepDeps, call: ToolCall) -> ToolResult:
    """One ``tools/call`` through the gateway, with a timeout below the remaining budget.

    Before every try (the first call, each retry, a replay after recovery) it reads the kill
    switches and the intent's cancellation again, so that a stop arriving between two tries
    stops the next one. Then the call waits, within the budget, for its connector's gate (rate
    limit, concurrency limit, circuit breaker); a call that had to wait reads them once more.
    Transient failures raise :class:`RetryableToolFailure` so that the workflow retries this
    step; business failures come back as an unsuccessful :class:`ToolResult`.

    A call to a gateway target that does not deduplicate goes through the sent-call protocol
    (``sent_calls.py``): a replay of this step after a crash returns the answer it got, or
    ``UNKNOWN_OUTCOME`` when it never got one, and never sends it again.
    """
    connector = connector_of(call.tool_name)
    count_retry(connector, "InvokeTool")
    sent = _sent_call(deps, call) if deps.needs_confirmation(call.tool_name) else None
    started = time.perf_counter()
    remaining = max(0.0, call.context.deadline_epoch - deps.clock.now())
    # A call already sent by an earlier run of this step is never sent again: its recorded
    # answer (or its unknown outcome) is the answer.
    answer = sent.answer_sent_before() if sent else None
    if answer is None:
        check_budget(call.context, deps.clock.now(), call=call)
        # The switches, the intent and the connector's gate view in one read of the store.
        view = check_before_call(deps, call, connector=connector)
        with _pass_connector_gate(deps, call, view) as permit:
            remaining = check_budget(call.context, deps.clock.now(), call=call)
            if permit.waited:
                check_before_call(deps, call)  # a stop that arrived while it waited stops it here
            configured = deps.settings.gateway_call_timeout_seconds
            timeout = min(configured, remaining)
            started = time.perf_counter()
            if sent:
                sent.mark_sent()
            answer = call_connector(
                connector,
                lambda: deps.gateway.call_tool(
                    tenant_id=call.context.tenant_id,
                    tool_name=call.tool_name,
                    arguments=call.arguments,
                    timeout_seconds=timeout,
                    on_send=permit.sent,
                ),
            )
            permit.finish(call_result(answer, timeout_cut_by_budget=timeout < configured))
        if sent:
            sent.settle(answer)
    metrics.TOOL_CALL_SECONDS.labels(call.tool_name).observe(time.perf_counter() - started)
    return _result(deps, call, answer, remaining - (time.perf_counter() - started))


def _result(deps: StepDeps, call: ToolCall, answer: ToolCallOutcome, left: float) -> ToolResult:
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
        _record_failed_try(deps, call, error)
        if error.error_class is ErrorClass.RATE_LIMIT:
            # A rate-limited system needs a longer pause than the ordinary backoff gives (at most
            # half of what is left of the budget, so that the retry still has time to run).
            deps.sleep(min(deps.settings.rate_limit_backoff_seconds, max(0.0, left) / 2))
        raise RetryableToolFailure(outcome_from_failed_call(call, error))
    metrics.TOOL_CALLS.labels(call.tool_name, "failure").inc()
    return ToolResult(
        call=call, success=False, error=error, tool_run_ref=tool_run_ref(call.context, call.tool_name)
    )


def _record_failed_try(deps: StepDeps, call: ToolCall, error: ExecutionError) -> None:
    """Put this try's transient failure on the execution's timeline. Best effort: a store that
    cannot take it now must not turn a retryable failure into another failure."""
    status = DBOS.step_status
    try_number = (status.current_attempt or 0) + 1 if status is not None else 1
    entry = tool_call_try_failed_entry(
        timestamp=deps.clock.now_iso(),
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
        with deps.store.write() as uow:
            uow.executions.append_ledger(entry)
    except Exception as exc:
        if not deps.store.is_transient(exc):
            raise
        log.warning(
            "the failed try %d of %s is not on the timeline: the store is unavailable",
            try_number,
            call.tool_name,
        )


def _sent_call(deps: StepDeps, call: ToolCall) -> SentCall:
    context = call.context

    def unavailable() -> Exception:
        error = ExecutionError(
            error_class=ErrorClass.DOWNSTREAM,
            error_code="STORE_UNAVAILABLE",
            error_message="the database was unavailable before the call was sent; it was not sent",
        )
        return RetryableToolFailure(outcome_from_failed_call(call, error))

    return SentCall(
        deps.store,
        deps.clock,
        ToolCallMarks(
            tenant_id=context.tenant_id,
            account_id=context.account_id,
            action_intent_id=context.action_intent_id,
            attempt_count=context.attempt_count,
            tool_name=call.tool_name,
            idempotency_key=call.idempotency_key,
        ),
        tool_name=call.tool_name,
        idempotency_key=call.idempotency_key,
        what=f"the call to {call.tool_name}",
        # A retryable failure did nothing: the retry may send the call again.
        keep=lambda answer: answer.success or answer.error is None or not answer.error.retryable,
        unavailable=unavailable,
        sleep=deps.sleep,
    )


def _pass_connector_gate(deps: StepDeps, call: ToolCall, view: GateView | None) -> GatePermit:
    """Wait for the connector's gate while the budget lasts; a spent budget ends the execution
    ``FAILED``/``TIMEOUT``/``EXECUTION_TIMEOUT``, saying what it waited for. While it waits, the
    kill switches and the cancellation are read about once a second. ``view``: the connector's
    gate view read with the checks just before."""
    timeout = deps.settings.gateway_call_timeout_seconds
    try:
        return deps.gate.admit(
            connector_of(call.tool_name),
            tenant_id=call.context.tenant_id,
            deadline=call.context.deadline_epoch,
            lease_seconds=call_lease_seconds(timeout),
            recheck=lambda: recheck_while_waiting(deps, call),
            view=view,
        )
    except WaitExpired as expired:
        error = timeout_error(f"the execution used up its timeout_seconds budget {expired.describe()}")
        raise stop_before_tool(call.context, ExecutionStatus.FAILED, error, call=call) from None
