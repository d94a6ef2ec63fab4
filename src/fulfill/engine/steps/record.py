"""RecordOutcome: every terminal record of an attempt, once, in one transaction."""

from __future__ import annotations

import logging
from typing import Any

from fulfill import metrics
from fulfill.domain.execution import OutcomeDraft, RecordedOutcome
from fulfill.domain.ledger import outcome_entry, signal_entry, unknown_outcome_entry
from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalStatus,
    ExecutionSignal,
    ExecutionStatus,
)
from fulfill.domain.notifications import Notice, needs_person_notice
from fulfill.domain.signals import build_execution_signal
from fulfill.domain.targets import UNKNOWN_OUTCOME
from fulfill.domain.time import epoch_from_iso, iso_from_epoch
from fulfill.engine.steps.decorator import step
from fulfill.engine.steps.deps import StepDeps
from fulfill.usecases.notifications import enqueue_notices

SIGNAL_TOPIC = "SIGNAL_CREATED"

log = logging.getLogger(__name__)


@step("RecordOutcome")
def record_outcome(deps: StepDeps, draft: OutcomeDraft) -> RecordedOutcome:
    """Write outcome, attempt status, ledger entries, signal and its outbox message in one transaction.

    The outcome is write-once per attempt: when it already exists, the stored one wins and
    everything else is derived from it again, so a repeated RecordOutcome changes nothing. The
    result says whether the intent was cancelled while its write was happening, in which case the
    workflow hands the write to compensation.
    """
    now = deps.clock.now()
    context = draft.context
    with deps.store.write() as uow:
        outcome = _outcome(draft, completed_at=iso_from_epoch(now))
        inserted = uow.executions.insert_outcome(outcome)
        if not inserted:
            stored = uow.executions.get_outcome(
                context.tenant_id, context.account_id, context.action_intent_id, context.attempt_count
            )
            assert stored is not None
            outcome = stored
        uow.executions.finish_attempt(
            tenant_id=outcome.tenant_id,
            account_id=outcome.account_id,
            action_intent_id=outcome.action_intent_id,
            attempt_count=outcome.attempt_count,
            status=outcome.status,
            error_class=outcome.error_class,
            idempotency_key=outcome.idempotency_key,
            completed_at=outcome.completed_at,
        )
        # Locked: a cancel either sees this outcome or is seen by it, never neither. A first
        # record marks the intent and reads it locked in one statement; a repeat only locks it.
        if inserted:
            intent = uow.intents.lock_and_mark_execution(
                context.tenant_id, context.action_intent_id, status=outcome.status, at=outcome.completed_at
            )
        else:
            intent = uow.intents.get_intent(context.tenant_id, context.action_intent_id, for_update=True)
        decision_trace_id = draft.decision_trace_id or (intent.trace_id if intent else None)
        # The ledger entries in their order, appended together (one statement) once all are known.
        entries = [
            outcome_entry(
                outcome, decision_trace_id, answer_excerpt=draft.answer_excerpt, refs_note=draft.refs_note
            )
        ]
        if outcome.error_code == UNKNOWN_OUTCOME:
            entries.append(unknown_outcome_entry(outcome))
            # A person must check the target: tell the tenant's channels, with the rest of it.
            enqueue_notices(uow, deps.settings, _unknown_outcome_notice(outcome, intent))
        signal = build_execution_signal(outcome, intent)
        uow.executions.insert_signal(signal)
        entries.append(signal_entry(signal))
        uow.executions.append_ledger_entries(entries)
        uow.outbox.enqueue(
            message_id=f"signal:{outcome.tenant_id}/{signal.signalId}",
            topic=SIGNAL_TOPIC,
            tenant_id=outcome.tenant_id,
            payload=_signal_message(signal),
            destinations=deps.settings.signal_destinations,
            now=outcome.completed_at,
            now_epoch=now,
        )
    if inserted:
        _observe(deps, outcome, now)
    cancelled = intent is not None and intent.approval_status is ApprovalStatus.CANCELLED
    return RecordedOutcome(outcome=outcome, cancelled_after_write=cancelled and _wrote(outcome))


def _unknown_outcome_notice(outcome: ActionOutcomeV1, intent: ActionIntentV1 | None) -> Notice:
    return needs_person_notice(
        tenant_id=outcome.tenant_id,
        action_intent_id=outcome.action_intent_id,
        account_id=outcome.account_id,
        action_type=intent.action_type if intent is not None else "",
        attempt=outcome.attempt_count,
        reason=(
            f"the outcome of {outcome.tool_name} is unknown (its answer was lost): check the target "
            f"for a write carrying idempotency key {outcome.idempotency_key}, then resolve the "
            "AMBIGUOUS execution (committed, not_committed or abandon)"
        ),
        occurred_at=outcome.completed_at,
        what="unknown-outcome",
    )


def _outcome(draft: OutcomeDraft, *, completed_at: str) -> ActionOutcomeV1:
    context = draft.context
    status = draft.status
    if status is ExecutionStatus.FAILED and draft.error and draft.error.error_code == UNKNOWN_OUTCOME:
        # It may have written: not a failure, a state a person (or a probe) resolves.
        status = ExecutionStatus.AMBIGUOUS
    return ActionOutcomeV1(
        tenant_id=context.tenant_id,
        account_id=context.account_id,
        action_intent_id=context.action_intent_id,
        attempt_count=context.attempt_count,
        status=status,
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
        completed_at=completed_at,
        trace_id=context.trace_id,
        approval_source=context.approval_source,
        auto_executed=context.auto_executed,
        action_hash=draft.action_hash,
    )


def _signal_message(signal: ExecutionSignal) -> dict[str, Any]:
    """The outbox message announcing a signal (the event-bus envelope, DESIGN §4)."""
    return {
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
    }


def _observe(deps: StepDeps, outcome: ActionOutcomeV1, now: float) -> None:
    """Metrics and the log line of an outcome recorded for the first time; the relay is woken up."""
    metrics.EXECUTIONS.labels(
        outcome.status.value, outcome.error_class.value if outcome.error_class else ""
    ).inc()
    if deps.settings.metrics_tenant_labels:
        metrics.TENANT_EXECUTIONS.labels(outcome.tenant_id, outcome.status.value).inc()
    metrics.EXECUTION_SECONDS.observe(max(0.0, now - epoch_from_iso(outcome.started_at)))
    if deps.settings.signal_destinations:
        deps.wake_outbox()
    log.info(
        "execution ended %s%s", outcome.status.value, f" ({outcome.error_code})" if outcome.error_code else ""
    )


def _wrote(outcome: ActionOutcomeV1) -> bool:
    return outcome.status is ExecutionStatus.SUCCEEDED and bool(outcome.external_object_refs)
