"""ValidatePreflight: the intent still exists, is approved (and is the action approved), is not
expired, and no kill switch is on."""

from __future__ import annotations

from fulfill.domain.execution import ExecutionContext, PreflightPassed, StartedExecution, stop_before_tool
from fulfill.domain.expiry import is_expired
from fulfill.domain.models import ExecutionStatus
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.steps.checks import (
    check_approved_action,
    check_budget,
    check_still_wanted,
    decide_switches,
    kill_switch_stop,
    read_switches_and_intent,
)
from fulfill.engine.steps.decorator import step
from fulfill.engine.steps.deps import StepDeps
from fulfill.engine.steps.failures import validation_error


@step("ValidatePreflight", own_span=True)
def validate_preflight(deps: StepDeps, started: StartedExecution | ExecutionContext) -> PreflightPassed:
    """The intent still exists, is approved, is the action approved (its hash), is not expired,
    and no kill switch is on. The hash is checked before the account: an account changed after
    the approval is a mismatch, not a missing intent.

    Given StartExecution's output with its ``reads`` (the intent and the switches as its
    transaction read them, right before, in the same checkpoint), it decides on those; given a
    bare context, it reads them."""
    context = started.context if isinstance(started, StartedExecution) else started
    now = deps.clock.now()
    check_budget(context, now)
    # The intent and the switches in one read; the switches are decided on after the intent's checks.
    reads = started.reads if isinstance(started, StartedExecution) else None
    if reads is not None:
        switches, intent = reads.switches, reads.intent
    else:
        switches, intent = read_switches_and_intent(deps, context)
    if intent is not None:
        check_approved_action(context, intent)
    if intent is None or intent.account_id != context.account_id:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            validation_error("INTENT_NOT_FOUND", "the action intent does not exist"),
        )
    check_still_wanted(context, intent)
    if is_expired(intent.expires_at_epoch, now):
        raise stop_before_tool(
            context,
            ExecutionStatus.EXPIRED,
            validation_error(
                "INTENT_EXPIRED",
                f"the intent expired at {intent.expires_at} (now {iso_from_epoch(now)}) before it ran",
            ),
            registry_version=intent.registry_version,
            decision_trace_id=intent.trace_id,
        )
    decision = decide_switches(deps, switches, intent.action_type)
    if not decision.allowed:
        raise kill_switch_stop(
            context, decision, registry_version=intent.registry_version, trace=intent.trace_id
        )
    return PreflightPassed(context=context, intent=intent, entry=reads.entry if reads is not None else None)
