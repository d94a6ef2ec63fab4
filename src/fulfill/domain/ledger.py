"""Ledger entries with deterministic ids: writing the same fact twice is a no-op."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from fulfill.domain.killswitch import KillSwitchScope, StoredSwitches
from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalSource,
    ExecutionSignal,
    ExecutionStatus,
    LedgerEntry,
    PolicyDecision,
    PolicyMode,
)

if TYPE_CHECKING:
    from fulfill.domain.execution import ExecutionContext

OUTCOME_EVENT_TYPES: dict[ExecutionStatus, str] = {
    ExecutionStatus.SUCCEEDED: "ACTION_EXECUTED",
    ExecutionStatus.FAILED: "ACTION_FAILED",
    ExecutionStatus.CANCELLED: "EXECUTION_CANCELLED",
    ExecutionStatus.EXPIRED: "EXECUTION_EXPIRED",
    ExecutionStatus.AMBIGUOUS: "ACTION_AMBIGUOUS",
}


def entry_id(action_intent_id: str, attempt: int, event_type: str) -> str:
    return f"{action_intent_id}#{attempt}#{event_type}"


def ledger_entry(
    *,
    event_type: str,
    timestamp: str,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    attempt: int,
    trace_id: str,
    data: dict[str, Any],
) -> LedgerEntry:
    return LedgerEntry(
        entry_id=entry_id(action_intent_id, attempt, event_type),
        event_type=event_type,
        timestamp=timestamp,
        tenant_id=tenant_id,
        account_id=account_id,
        action_intent_id=action_intent_id,
        attempt=attempt,
        trace_id=trace_id,
        data=data,
    )


def action_approved_entry(
    *,
    timestamp: str,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    trace_id: str,
    approved_by: str | None,
    asserted_by: str,
    decision_id: str | None,
    imported: bool,
    comment: str | None = None,
    approval_source: ApprovalSource | None = None,
    policy_id: str | None = None,
    policy_version: int | None = None,
    action_hash: str | None = None,
    approvers: list[str] | None = None,
) -> LedgerEntry:
    """The approval of an intent. ``approved_by`` is who approved it: the token's subject for an
    approval given here, the body's claim for an imported one, ``policy:<policy_id>`` for an
    AUTO_APPROVE policy's; ``asserted_by`` is always who asserted the approval (the token's
    subject, or the policy), so an import names who vouched for it. ``approval_source`` says
    whether a person (HUMAN) or a policy (POLICY, with its id and version) approved;
    ``action_hash`` is the hash of the exact action approved; ``approvers`` the distinct
    approvers of an M-of-N intent. Each is left out when not given."""
    data: dict[str, Any] = {
        "action_intent_id": action_intent_id,
        "approved_by": approved_by,
        "asserted_by": asserted_by,
        "decision_id": decision_id,
        "imported": imported,
    }
    if comment is not None:
        data["comment"] = comment
    if approval_source is not None:
        data["approval_source"] = approval_source.value
    if policy_id is not None:
        data["policy_id"] = policy_id
        data["policy_version"] = policy_version
    if action_hash is not None:
        data["action_hash"] = action_hash
    if approvers is not None:
        data["approvers"] = approvers
    return ledger_entry(
        event_type="ACTION_APPROVED",
        timestamp=timestamp,
        tenant_id=tenant_id,
        account_id=account_id,
        action_intent_id=action_intent_id,
        attempt=0,
        trace_id=trace_id,
        data=data,
    )


POLICY_EVALUATED = "POLICY_EVALUATED"
DEFAULT_RULE_SUBJECT = "default"


def policy_outcome(decision: PolicyDecision, approvals_required: int, *, applied: bool) -> str:
    """What a policy's decision did to an intent (``applied``) or would have done (a SHADOW
    policy's), in the words of the ledger."""
    if decision is PolicyDecision.AUTO_APPROVE:
        return "auto-approved" if applied else "would have auto-approved"
    if decision is PolicyDecision.DENY:
        return "denied" if applied else "would have denied"
    approvals = f"{approvals_required} approval{'s' if approvals_required != 1 else ''}"
    return f"requires {approvals}" if applied else f"would have required {approvals}"


def policy_evaluated_entry(
    intent: ActionIntentV1,
    *,
    policy_id: str | None,
    policy_version: int | None,
    policy_name: str | None,
    decision: PolicyDecision,
    mode: PolicyMode,
    applied: bool,
    outcome: str,
    error: str | None = None,
) -> LedgerEntry:
    """One policy's verdict on an intent at its creation: the deciding ENFORCE policy's (or the
    default rule's, ``policy_id`` null), or a matching SHADOW policy's (``applied`` false). An
    ``error``: the policy's ``when`` failed to evaluate, and it was decided fail-safe. One entry
    per policy (its id ends the entry's id), at the intent's creation time."""
    data: dict[str, Any] = {
        "action_intent_id": intent.action_intent_id,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "policy_name": policy_name,
        "decision": decision.value,
        "mode": mode.value,
        "applied": applied,
        "outcome": outcome,
    }
    if error is not None:
        data["error"] = error
    entry = ledger_entry(
        event_type=POLICY_EVALUATED,
        timestamp=intent.created_at,
        tenant_id=intent.tenant_id,
        account_id=intent.account_id,
        action_intent_id=intent.action_intent_id,
        attempt=0,
        trace_id=intent.trace_id,
        data=data,
    )
    return entry.model_copy(update={"entry_id": f"{entry.entry_id}#{policy_id or DEFAULT_RULE_SUBJECT}"})


def intent_decision_entry(
    intent: ActionIntentV1,
    event_type: str,
    *,
    decided_by: str,
    comment: str | None = None,
    policy_id: str | None = None,
    policy_version: int | None = None,
) -> LedgerEntry:
    """A decision on an intent (``INTENT_REJECTED``, ``INTENT_CANCELLED``), at the time of the
    intent's change: a person's, or a DENY policy's (``decided_by`` ``policy:<policy_id>``, with
    the policy's id and version)."""
    data: dict[str, Any] = {"action_intent_id": intent.action_intent_id, "decided_by": decided_by}
    if comment is not None:
        data["comment"] = comment
    if policy_id is not None:
        data["policy_id"] = policy_id
        data["policy_version"] = policy_version
    return ledger_entry(
        event_type=event_type,
        timestamp=intent.updated_at,
        tenant_id=intent.tenant_id,
        account_id=intent.account_id,
        action_intent_id=intent.action_intent_id,
        attempt=0,
        trace_id=intent.trace_id,
        data=data,
    )


APPROVAL_RECORDED = "APPROVAL_RECORDED"
INTENT_EDITED = "INTENT_EDITED"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def approval_recorded_entry(
    intent: ActionIntentV1,
    *,
    approved_by: str,
    approved_at: str,
    action_hash: str,
    approvals: int,
    approvals_required: int,
    comment: str | None = None,
) -> LedgerEntry:
    """One counted approval of an intent that needs several, which does not complete it (the one
    that does is ``ACTION_APPROVED``). One entry per approver and action approved."""
    data: dict[str, Any] = {
        "approved_by": approved_by,
        "action_hash": action_hash,
        "approvals": approvals,
        "approvals_required": approvals_required,
    }
    if comment is not None:
        data["comment"] = comment
    entry = ledger_entry(
        event_type=APPROVAL_RECORDED,
        timestamp=approved_at,
        tenant_id=intent.tenant_id,
        account_id=intent.account_id,
        action_intent_id=intent.action_intent_id,
        attempt=0,
        trace_id=intent.trace_id,
        data=data,
    )
    return entry.model_copy(
        update={"entry_id": f"{entry.entry_id}#{_digest(approved_by, action_hash, approved_at)}"}
    )


def intent_edited_entry(
    before: ActionIntentV1,
    after: ActionIntentV1,
    *,
    edited_by: str,
    edited_fields: list[str],
    action_hash_before: str,
    action_hash_after: str,
) -> LedgerEntry:
    """An approver changed the parameters before approving: both versions and both hashes."""
    entry = ledger_entry(
        event_type=INTENT_EDITED,
        timestamp=after.updated_at,
        tenant_id=after.tenant_id,
        account_id=after.account_id,
        action_intent_id=after.action_intent_id,
        attempt=0,
        trace_id=after.trace_id,
        data={
            "edited_by": edited_by,
            "before": before.parameters,
            "after": after.parameters,
            "edited_fields": edited_fields,
            "action_hash_before": action_hash_before,
            "action_hash_after": action_hash_after,
        },
    )
    suffix = _digest(edited_by, action_hash_before, action_hash_after, after.updated_at)
    return entry.model_copy(update={"entry_id": f"{entry.entry_id}#{suffix}"})


def rerun_requested_entry(
    intent: ActionIntentV1,
    *,
    attempt: int,
    trace_id: str,
    timestamp: str,
    requested_by: str,
    reason: str | None,
    after_stop: str | None,
    beyond_max_attempts: bool,
) -> LedgerEntry:
    """An admin's rerun of an intent, as attempt ``attempt``. ``after_stop``: the error code of the
    stop from outside that ended the previous attempt before its tool call (such a rerun is not
    counted against ``max_attempts``; the entry then says whether it goes beyond them)."""
    stopped = (
        {"after_stop": after_stop, "beyond_max_attempts": beyond_max_attempts}
        if after_stop is not None
        else {}
    )
    return ledger_entry(
        event_type="RERUN_REQUESTED",
        timestamp=timestamp,
        tenant_id=intent.tenant_id,
        account_id=intent.account_id,
        action_intent_id=intent.action_intent_id,
        attempt=attempt,
        trace_id=trace_id,
        data={
            "action_intent_id": intent.action_intent_id,
            "requested_by": requested_by,
            "reason": reason,
            **stopped,
        },
    )


TOOL_CALL_TRY_FAILED = "TOOL_CALL_TRY_FAILED"


def tool_call_try_failed_entry(
    *,
    timestamp: str,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    attempt: int,
    trace_id: str,
    tool_name: str,
    try_number: int,
    max_tries: int | None,
    error_class: str,
    error_code: str,
    error_message: str,
) -> LedgerEntry:
    """One try of an attempt's tool call that failed transiently (the step is retried while tries
    remain). Its id names the try, so each try is one entry and a replay writes nothing new."""
    entry = ledger_entry(
        event_type=TOOL_CALL_TRY_FAILED,
        timestamp=timestamp,
        tenant_id=tenant_id,
        account_id=account_id,
        action_intent_id=action_intent_id,
        attempt=attempt,
        trace_id=trace_id,
        data={
            "action_intent_id": action_intent_id,
            "tool_name": tool_name,
            "try": try_number,
            "max_tries": max_tries,
            "will_retry": max_tries is None or try_number < max_tries,
            "error_class": error_class,
            "error_code": error_code,
            "error_message": error_message,
        },
    )
    return entry.model_copy(update={"entry_id": f"{entry.entry_id}#{try_number}"})


def outcome_event(
    outcome: ActionOutcomeV1, event_type: str, timestamp: str, data: dict[str, Any]
) -> LedgerEntry:
    """An entry about one attempt's outcome (its result, or what happened to it afterwards)."""
    return ledger_entry(
        event_type=event_type,
        timestamp=timestamp,
        tenant_id=outcome.tenant_id,
        account_id=outcome.account_id,
        action_intent_id=outcome.action_intent_id,
        attempt=outcome.attempt_count,
        trace_id=outcome.trace_id,
        data={"action_intent_id": outcome.action_intent_id, **data},
    )


def outcome_entry(
    outcome: ActionOutcomeV1,
    decision_trace_id: str | None,
    *,
    answer_excerpt: str | None = None,
    refs_note: str | None = None,
) -> LedgerEntry:
    """The attempt's result on the timeline; with ``answer_excerpt``, what the tool's plain-text
    answer said (bounded by the gateway), which no ref records; with ``refs_note``, why its refs
    are the gateway's fallback ref to the call itself."""
    excerpt = {"answer_excerpt": answer_excerpt} if answer_excerpt is not None else {}
    if refs_note is not None:
        excerpt["refs_note"] = refs_note
    if outcome.action_hash is not None:
        # The hash of the action the attempt ran, or refused (domain/action_hash.py).
        excerpt["action_hash"] = outcome.action_hash
    return outcome_event(
        outcome,
        OUTCOME_EVENT_TYPES[outcome.status],
        outcome.completed_at,
        {
            "status": outcome.status.value,
            "external_object_refs": [
                ref.model_dump(exclude_none=True) for ref in outcome.external_object_refs
            ],
            "error_code": outcome.error_code,
            "error_class": outcome.error_class.value if outcome.error_class else None,
            "error_message": outcome.error_message,
            "tool_name": outcome.tool_name,
            "registry_version": outcome.registry_version,
            "idempotency_key": outcome.idempotency_key,
            "decision_trace_id": decision_trace_id,
            "attempt_count": outcome.attempt_count,
            **excerpt,
        },
    )


def signal_entry(signal: ExecutionSignal) -> LedgerEntry:
    evidence_ref = signal.evidence["evidenceRef"]
    return ledger_entry(
        event_type="SIGNAL",
        timestamp=signal.createdAt,
        tenant_id=signal.tenantId,
        account_id=signal.accountId,
        action_intent_id=signal.action_intent_id,
        attempt=signal.attempt,
        trace_id=signal.traceId,
        data={
            "signalId": signal.signalId,
            "signalType": signal.signalType,
            "confidence": signal.metadata["confidence"],
            "severity": signal.metadata["severity"],
            "evidenceRefs": [
                {"type": "s3", "location": evidence_ref["s3Uri"], "timestamp": evidence_ref["capturedAt"]}
            ],
        },
    )


OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"


def unknown_outcome_entry(outcome: ActionOutcomeV1) -> LedgerEntry:
    """A person must check the target: the call may have written there, and is not retried.

    Recorded next to the outcome of an attempt that ended AMBIGUOUS (``UNKNOWN_OUTCOME``): the tool
    call reached a target that does not deduplicate, and its answer was lost (a timeout, a
    dropped connection, or a process that stopped while the call was in flight).
    """
    tool = outcome.tool_name or ""
    target, _, remote_tool = tool.partition(".")
    return outcome_event(
        outcome,
        OUTCOME_UNKNOWN,
        outcome.completed_at,
        {
            "target": target,
            "tool_name": tool,
            "remote_tool": remote_tool,
            "idempotency_key": outcome.idempotency_key,
            "error_message": outcome.error_message,
            "action": (
                "check the target for a write carrying this idempotency key, then resolve the "
                "execution: committed (with the refs found), not_committed (sent once more under "
                "the same key) or abandon"
            ),
        },
    )


EXECUTION_RESOLVED = "EXECUTION_RESOLVED"


def resolution_entry(
    outcome: ActionOutcomeV1,
    *,
    resolution: str,
    decided_by: str,
    timestamp: str,
    reason: str | None = None,
    next_attempt: int | None = None,
) -> LedgerEntry:
    """A person resolved an AMBIGUOUS execution: who decided, what, and what follows from it.

    ``outcome`` is the attempt's outcome as the resolution left it (SUCCEEDED with the refs the
    person named, FAILED with the reason, or FAILED ``NOT_COMMITTED`` followed by ``next_attempt``).
    """
    data: dict[str, Any] = {
        "resolution": resolution,
        "decided_by": decided_by,
        "status": outcome.status.value,
        "external_object_refs": [ref.model_dump(exclude_none=True) for ref in outcome.external_object_refs],
        "idempotency_key": outcome.idempotency_key,
        "tool_name": outcome.tool_name,
    }
    if reason is not None:
        data["reason"] = reason
    if next_attempt is not None:
        data["next_attempt"] = next_attempt
    return outcome_event(outcome, EXECUTION_RESOLVED, timestamp, data)


KILL_SWITCH_CHANGED = "KILL_SWITCH_CHANGED"
# The ledger's "intent" column of kill-switch changes: a name no intent id can have (intent ids
# never contain '/'), so a change never shows up in an execution's timeline.
GLOBAL_SWITCHES_SUBJECT = "kill-switches/global"
TENANT_SWITCHES_SUBJECT = "kill-switches/tenant"
# The tenant column of changes to the global switches, which belong to no tenant.
PLATFORM_LEDGER_TENANT = ""


def kill_switch_entry(stored: StoredSwitches, *, changed_by: str) -> LedgerEntry:
    """Who changed a scope's kill switches, when, and to what: one entry per stored revision.
    The global switches' entries belong to no tenant (platform scope)."""
    scope = stored.scope
    return ledger_entry(
        event_type=KILL_SWITCH_CHANGED,
        timestamp=stored.updated_at or "",
        tenant_id=switches_ledger_tenant(scope),
        account_id="",
        action_intent_id=switches_ledger_subject(scope),
        attempt=stored.revision,
        trace_id="",
        data={"scope": scope.name, "changed_by": changed_by, **stored.settings.fields(scope)},
    )


def switches_ledger_tenant(scope: KillSwitchScope) -> str:
    return PLATFORM_LEDGER_TENANT if scope.tenant_id is None else scope.tenant_id


def switches_ledger_subject(scope: KillSwitchScope) -> str:
    return GLOBAL_SWITCHES_SUBJECT if scope.is_global else TENANT_SWITCHES_SUBJECT


def execution_started_entries(context: ExecutionContext, intent: ActionIntentV1 | None) -> list[LedgerEntry]:
    """What StartExecution writes: ``RERUN_STARTED`` for a rerun, then ``EXECUTION_STARTED`` (with
    the hash of the approved action the attempt is bound to, when its approval recorded one)."""
    common: dict[str, Any] = {
        "timestamp": context.started_at,
        "tenant_id": context.tenant_id,
        "account_id": context.account_id,
        "action_intent_id": context.action_intent_id,
        "attempt": context.attempt_count,
        "trace_id": context.trace_id,
    }
    entries: list[LedgerEntry] = []
    if context.attempt_count > 1:
        entries.append(
            ledger_entry(
                event_type="RERUN_STARTED",
                data={
                    "action_intent_id": context.action_intent_id,
                    "requested_by": context.requested_by,
                    "rerun_reason": context.rerun_reason,
                    "attempt_id": context.attempt_id,
                },
                **common,
            )
        )
    entries.append(
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
                # The tool is called only while the intent still hashes to it.
                **({"action_hash": intent.action_hash} if intent and intent.action_hash else {}),
            },
            **common,
        )
    )
    return entries


def event_rejected_entry(
    *,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    event_tenant_id: str,
    code: str,
    message: str,
    fingerprint_of: str,
    timestamp: str,
) -> LedgerEntry:
    """An approval event intake refused, in the ledger of the tenant that sent it. Each refusal is
    its own entry (a fingerprint of the event, the reason and the time ends its id): a refused
    event sent twice is two facts."""
    fingerprint = hashlib.sha256(fingerprint_of.encode()).hexdigest()[:16]
    entry = ledger_entry(
        event_type="EVENT_REJECTED",
        timestamp=timestamp,
        tenant_id=tenant_id,
        account_id=account_id,
        action_intent_id=action_intent_id,
        attempt=0,
        trace_id=f"intake-{fingerprint}",
        data={
            "reason": code,
            "message": message,
            "event_tenant_id": event_tenant_id,
            "event_account_id": account_id,
        },
    )
    return entry.model_copy(update={"entry_id": f"{entry.entry_id}#{fingerprint}"})


def approval_escalated_entry(intent: ActionIntentV1) -> LedgerEntry:
    """``APPROVAL_ESCALATED``: the intent's first approval window ended unapproved, so its policy's
    second approver group was asked, until the extended end (``expires_at``). Once per intent."""
    rule = intent.approval_rule
    assert rule is not None
    assert intent.escalated_at is not None
    return ledger_entry(
        event_type="APPROVAL_ESCALATED",
        timestamp=intent.escalated_at,
        tenant_id=intent.tenant_id,
        account_id=intent.account_id,
        action_intent_id=intent.action_intent_id,
        attempt=0,
        trace_id=intent.trace_id,
        data={
            "action_intent_id": intent.action_intent_id,
            "policy_id": rule.policy_id,
            "policy_version": rule.policy_version,
            "escalate_to_scopes": list(rule.escalate_to_scopes),
            "expires_at": intent.expires_at,
        },
    )
