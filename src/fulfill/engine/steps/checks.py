"""What every step checks before it goes on: the budget, the kill switches, the intent still wanted
and still the action that was approved.

The tool is never called while a check cannot be answered (fail closed), but an outage of the
database is not an answer: a read that fails for a transient reason is tried again with backoff
for as long as the execution's budget lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from fulfill import metrics
from fulfill.domain.action_hash import Mismatch, verify
from fulfill.domain.execution import ExecutionContext, ExecutionStopped, ToolCall, stop_before_tool
from fulfill.domain.killswitch import KillSwitchDecision, evaluate_kill_switches
from fulfill.domain.models import (
    ActionIntentV1,
    ApprovalStatus,
    ExecutionStatus,
    GlobalExecutionConfig,
    TenantExecutionConfig,
)
from fulfill.engine.steps.deps import StepDeps
from fulfill.engine.steps.failures import timeout_error, validation_error
from fulfill.ports.repositories.connectors import GateView
from fulfill.ports.store import UnitOfWork

_T = TypeVar("_T")

log = logging.getLogger(__name__)

# A read the database could not answer is tried again after these pauses (the last one repeats).
STORE_BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)


def check_budget(context: ExecutionContext, now: float, *, call: ToolCall | None = None) -> float:
    """Seconds left of ``execution_policy.timeout_seconds``; a spent budget ends the execution."""
    remaining = context.deadline_epoch - now
    if remaining > 0:
        return remaining
    error = timeout_error("the execution used up its timeout_seconds budget before finishing")
    raise stop_before_tool(context, ExecutionStatus.FAILED, error, call=call)


def check_still_wanted(
    context: ExecutionContext, intent: ActionIntentV1, call: ToolCall | None = None
) -> None:
    """The intent is still APPROVED: a cancelled one stops CANCELLED, any other state FAILED."""
    if intent.approval_status is ApprovalStatus.APPROVED:
        return
    if intent.approval_status is ApprovalStatus.CANCELLED:
        raise stop_before_tool(
            context,
            ExecutionStatus.CANCELLED,
            validation_error("INTENT_CANCELLED", "the intent was cancelled before its tool call"),
            call=call,
            registry_version=intent.registry_version,
            decision_trace_id=intent.trace_id,
        )
    raise stop_before_tool(
        context,
        ExecutionStatus.FAILED,
        validation_error(
            "INTENT_NOT_APPROVED", f"the intent is {intent.approval_status.value}, not APPROVED"
        ),
        call=call,
        registry_version=intent.registry_version,
        decision_trace_id=intent.trace_id,
    )


def check_approved_action(
    context: ExecutionContext, intent: ActionIntentV1, call: ToolCall | None = None
) -> None:
    """The intent, as it was just read, is still the action its approval approved (and so is the
    one ``call`` was built from): its recomputed hash is the recorded one. Anything else stops the
    execution ``FAILED``/``APPROVAL_MISMATCH`` before its tool call. An intent approved before
    hashes were recorded is not checked."""
    checked = verify(intent, sending=call.action_hash if call else None)
    if isinstance(checked, Mismatch):
        log.warning("%s", checked.message)
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            validation_error("APPROVAL_MISMATCH", checked.message),
            call=call,
            registry_version=intent.registry_version,
            decision_trace_id=intent.trace_id,
            action_hash=checked.actual,
        )


def read_kill_switches(
    deps: StepDeps, context: ExecutionContext, action_type: str, *, call: ToolCall | None = None
) -> KillSwitchDecision:
    """Read every switch, waiting out a database outage while the budget lasts (a spent budget
    ends the execution ``FAILED``/``TIMEOUT``, saying the switches could not be read). A read that
    fails for any other reason (a row that cannot be parsed) stops it (``LOOKUP_FAILED``):
    waiting would not make it readable."""
    switches, _ = read_switches_and_intent(deps, context, call=call, with_intent=False)
    return decide_switches(deps, switches, action_type)


Switches = tuple[GlobalExecutionConfig, TenantExecutionConfig]
"""The global switches and the tenant's (None where they are: a row that cannot be parsed)."""


def read_switches_and_intent(
    deps: StepDeps, context: ExecutionContext, *, call: ToolCall | None = None, with_intent: bool = True
) -> tuple[Switches | None, ActionIntentV1 | None]:
    """The switches (None: a row that cannot be parsed) and, ``with_intent``, the intent as it is
    now, in one read of the store: the rows :func:`read_kill_switches` and an intent read take,
    for one round of the database instead of two. An outage is waited out as
    :func:`read_kill_switches` says; an intent that cannot be parsed raises."""
    switches, intent, _ = _read_before_call(deps, context, call=call, with_intent=with_intent, connector=None)
    return switches, intent


def _read_before_call(
    deps: StepDeps,
    context: ExecutionContext,
    *,
    call: ToolCall | None,
    with_intent: bool,
    connector: str | None,
) -> tuple[Switches | None, ActionIntentV1 | None, GateView | None]:
    """:func:`read_switches_and_intent` and, for a ``connector``, that connector's gate view for
    the context's tenant, all in the same read of the store."""

    def read() -> tuple[Switches | None, ActionIntentV1 | None, GateView | None]:
        with deps.store.read() as uow:
            switches: Switches | None
            try:
                switches = read_switches_in(uow, context.tenant_id)
            except Exception as exc:
                if deps.store.is_transient(exc):
                    raise
                switches = None
            intent = (
                uow.intents.get_intent(context.tenant_id, context.action_intent_id) if with_intent else None
            )
            view = uow.connectors.gate_view(connector, context.tenant_id) if connector is not None else None
        return switches, intent, view

    return while_the_budget_lasts(deps, context, "the kill switches could not be read", read, call=call)


def read_switches_in(uow: UnitOfWork, tenant_id: str) -> Switches:
    """The global and the tenant's switches, read in ``uow``."""
    return uow.killswitches.get_global_and_tenant(tenant_id)


def decide_switches(deps: StepDeps, switches: Switches | None, action_type: str) -> KillSwitchDecision:
    """What the switches read say about ``action_type``; unreadable switches stop (fail closed)."""
    if switches is None:
        return KillSwitchDecision(
            allowed=False,
            scope="LOOKUP_FAILED",
            reason="kill switches could not be read; stopping to be safe",
        )
    return evaluate_kill_switches(
        environment_stop=deps.settings.global_execution_stop,
        global_config=switches[0],
        tenant_config=switches[1],
        action_type=action_type,
    )


def kill_switch_stop(
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
        validation_error(
            "KILL_SWITCH_ENABLED", f"stopped by kill switch ({decision.scope}): {decision.reason}"
        ),
        call=call,
        registry_version=registry_version,
        decision_trace_id=trace,
    )


def while_the_budget_lasts(
    deps: StepDeps,
    context: ExecutionContext,
    what: str,
    read: Callable[[], _T],
    *,
    call: ToolCall | None = None,
) -> _T:
    """``read()``, tried again with backoff while it fails for a transient store reason and the
    budget allows; a spent budget stops the execution before its tool call (``what`` says why)."""
    tries = 0
    while True:
        try:
            return read()
        except Exception as exc:
            if not deps.store.is_transient(exc):
                raise
            pause = STORE_BACKOFF_SECONDS[min(tries, len(STORE_BACKOFF_SECONDS) - 1)]
            left = context.deadline_epoch - deps.clock.now()
            if left <= pause:
                error = timeout_error(
                    f"the execution used up its timeout_seconds budget: {what} (the database "
                    "was unavailable); the tool was not called"
                )
                raise stop_before_tool(context, ExecutionStatus.FAILED, error, call=call) from None
            if tries == 0:
                log.warning("%s (database unavailable); trying again while the budget lasts", what)
            tries += 1
            deps.sleep(pause)


def check_before_call(deps: StepDeps, call: ToolCall, *, connector: str | None = None) -> GateView | None:
    """The switches, the intent's cancellation and the approved action's hash, read right before
    the external call (one read of the store, which waits out a database outage while the budget
    lasts). For a ``connector``, the same read also takes that connector's gate view (its limits,
    circuit and the tenant's cap), which the call's admission then decides on: returned."""
    switches, intent, view = _read_before_call(
        deps, call.context, call=call, with_intent=True, connector=connector
    )
    _decide_before_call(deps, call, switches, intent)
    return view


def recheck_while_waiting(deps: StepDeps, call: ToolCall) -> None:
    """What a call waiting at its connector's gate re-reads about once a second: the switches and
    whether its intent is still approved, so that a stop ends the wait. With ``deps.waiting_reads``
    the read is shared by every waiting call of the process (``engine/waiting_reads.py``); a call
    whose intent is no longer approved, that is not in the shared read yet, or whose shared read
    failed for a reason other than an outage, reads its own (which also says why it stops). Once
    admitted, the call is checked again by its own read, the approved action's hash included."""
    shared = deps.waiting_reads
    if shared is None:
        check_before_call(deps, call)
        return
    context = call.context
    try:
        answer = while_the_budget_lasts(
            deps,
            context,
            "the kill switches could not be read",
            lambda: shared.read(context.tenant_id, context.action_intent_id),
            call=call,
        )
    except ExecutionStopped:
        raise
    except Exception:
        log.warning("the reads shared by waiting calls failed; this call reads its own", exc_info=True)
        answer = None
    if answer is not None:
        switches, status = answer
        decision = decide_switches(deps, switches, call.action_type)
        if not decision.allowed:
            raise kill_switch_stop(context, decision, call=call)
        if status is ApprovalStatus.APPROVED:
            return
    check_before_call(deps, call)


def _decide_before_call(
    deps: StepDeps, call: ToolCall, switches: Switches | None, intent: ActionIntentV1 | None
) -> None:
    """What the switches and the intent as read say about the call: each stop raises."""
    context = call.context
    decision = decide_switches(deps, switches, call.action_type)
    if not decision.allowed:
        raise kill_switch_stop(context, decision, call=call)
    if intent is None:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            validation_error("INTENT_NOT_FOUND", "the action intent does not exist"),
            call=call,
        )
    check_still_wanted(context, intent, call)
    check_approved_action(context, intent, call)
