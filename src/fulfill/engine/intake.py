"""Intake: one function turns an ACTION_APPROVED event into (at most) one workflow start.

The event is accepted verbatim in its EventBridge shape (DESIGN §4.2). It is rejected, with an
audit entry in the ledger, when it is malformed, names an unknown intent, names another tenant or
account than the stored intent (or an account the caller's token does not grant), or when the
intent is not approved. Accepting it takes the execution lock: the attempt row, QUEUED, with its
workflow id, in the same transaction that validated the event. Accepting the same event any number
of times, at once or months apart, inserts one row and so starts one execution.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from fulfill import metrics, tracing
from fulfill.domain.execution import ExecutionRequest, execution_workflow_id, request_for
from fulfill.domain.ledger import event_rejected_entry
from fulfill.domain.models import (
    ActionIntentV1,
    ApprovalSource,
    ApprovalStatus,
    AttemptStatus,
    ExecutionAttempt,
    Identifier,
)
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.runtime import Runtime
from fulfill.engine.workflow import queue_priority_in, start_execution
from fulfill.logging_setup import describe_failure, log_context
from fulfill.ports.store import UnitOfWork
from fulfill.tokens import Principal

# ``request_for`` is the domain's (``domain/execution.py``); it is re-exported here for its callers.
__all__ = [
    "ApprovedEventData",
    "EventRejected",
    "ExecutionLock",
    "IntakeResult",
    "accept_approved_event",
    "audit_rejection",
    "parse_approved_event",
    "queued_attempt",
    "request_for",
    "start_if_queued",
    "take_execution_lock",
]

log = logging.getLogger(__name__)

EVENT_SOURCE = "cc-native"
EVENT_DETAIL_TYPE = "ACTION_APPROVED"
ID_RULE = "1 to 128 characters of A-Z, a-z, 0-9 and _ . : @ -"
_ID_FIELDS = frozenset({"action_intent_id", "tenant_id", "account_id"})


class ApprovedEventData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # The same limits as every id the API takes: an event names rows that can only exist with
    # such ids, and an unbounded one would be written into the rejection's ledger entry (or fail
    # the database's column check, and with it a whole PutEvents batch).
    action_intent_id: Identifier
    tenant_id: Identifier
    account_id: Identifier
    approval_source: ApprovalSource | None = None
    auto_executed: bool | None = None

    @field_validator("approval_source", mode="before")
    @classmethod
    def _blank_source(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("auto_executed", mode="before")
    @classmethod
    def _loose_bool(cls, value: object) -> object:
        # An EventBridge input transformer turns a missing field into "" or null.
        return {"": None, "true": True, "false": False}.get(value, value) if isinstance(value, str) else value


class EventRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class IntakeResult(BaseModel):
    action_intent_id: str
    started: bool  # False when the intent already had an execution (a duplicate delivery)


def parse_approved_event(raw: Any) -> ApprovedEventData:
    """Read one event: ``{"source", "detail-type", "detail": {"data": {...}}}``.

    PutEvents entries (``Source``, ``DetailType``, ``Detail`` as a JSON string) are accepted too.
    """
    if not isinstance(raw, dict):
        raise EventRejected("MALFORMED_EVENT", "an event must be a JSON object")
    source = raw.get("source", raw.get("Source"))
    detail_type = raw.get("detail-type", raw.get("DetailType"))
    detail = raw.get("detail", raw.get("Detail"))
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            raise EventRejected("MALFORMED_EVENT", "Detail is not valid JSON") from None
    if source != EVENT_SOURCE:
        raise EventRejected("UNSUPPORTED_SOURCE", f"source must be '{EVENT_SOURCE}'")
    if detail_type != EVENT_DETAIL_TYPE:
        raise EventRejected("UNSUPPORTED_DETAIL_TYPE", f"detail-type must be '{EVENT_DETAIL_TYPE}'")
    data = detail.get("data") if isinstance(detail, dict) else None
    if not isinstance(data, dict):
        raise EventRejected("MALFORMED_EVENT", "detail.data must be an object")
    try:
        return ApprovedEventData.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()})
        ids = [field for field in fields if field in _ID_FIELDS]
        reason = f"detail.data has invalid fields: {', '.join(fields)}"
        if ids:  # the value is never quoted: it may be megabytes long
            reason += f" ({', '.join(ids)}: {ID_RULE})"
        raise EventRejected("MALFORMED_EVENT", reason) from None


def accept_approved_event(rt: Runtime, event: ApprovedEventData, *, caller: Principal | None) -> IntakeResult:
    """Take the execution lock of an approved intent and start its workflow, once.

    ``caller``: the token that delivered the event (``None`` for the service's own outbox); the
    event must name its tenant and an account it may access.
    """
    try:
        result = _accept(rt, event, caller)
    except EventRejected as rejection:
        metrics.EVENTS.labels("rejected").inc()
        audit_rejection(rt, event, rejection, caller.tenant_id if caller else None)
        raise
    metrics.EVENTS.labels("started" if result.started else "duplicate").inc()
    return result


def _accept(rt: Runtime, event: ApprovedEventData, caller: Principal | None) -> IntakeResult:
    if caller is not None and event.tenant_id != caller.tenant_id:
        raise EventRejected("TENANT_MISMATCH", "the event's tenant_id is not the tenant of the caller")
    if caller is not None and not caller.may_access_account(event.account_id):
        raise EventRejected("ACCOUNT_NOT_ALLOWED", "the caller's token does not grant access to this account")
    now = rt.clock.now()
    with rt.store.write() as uow:
        intent = uow.intents.get_intent(event.tenant_id, event.action_intent_id)
        if intent is None:
            raise EventRejected("INTENT_NOT_FOUND", "no action intent with this id exists for this tenant")
        if intent.account_id != event.account_id:
            raise EventRejected("ACCOUNT_MISMATCH", "the event's account_id is not the intent's account")
        if intent.approval_status is not ApprovalStatus.APPROVED:
            raise EventRejected("NOT_APPROVED", f"the intent is {intent.approval_status.value}, not APPROVED")
        lock = take_execution_lock(uow, intent, now)
    start_if_queued(
        lock,
        request_for(lock.attempt, approval_source=event.approval_source, auto_executed=event.auto_executed),
    )
    return IntakeResult(action_intent_id=intent.action_intent_id, started=lock.taken)


class ExecutionLock(NamedTuple):
    """An approved intent's execution lock, as :func:`take_execution_lock` found or took it."""

    attempt: ExecutionAttempt
    taken: bool  # this call inserted it
    # The execution's queue priority, read in the same transaction when its start will go to
    # the queue (``workflow.queue_priority_in``); else None, read at the start if needed.
    queue_priority: int | None = None


def take_execution_lock(uow: UnitOfWork, intent: ActionIntentV1, now: float) -> ExecutionLock:
    """Insert the QUEUED attempt of an approved intent, once.

    Runs inside the caller's transaction, the one that accepted the approval, so an accepted
    approval and its execution lock are committed together or not at all.
    """
    queued = queued_attempt(intent, now)
    if uow.executions.insert_attempt(queued, deadline_epoch=now + intent.execution_policy.timeout_seconds):
        return ExecutionLock(queued, True, queue_priority_in(uow, intent.tenant_id))
    attempt = uow.executions.get_attempt(intent.tenant_id, intent.account_id, intent.action_intent_id)
    if attempt is None:  # pragma: no cover - the row that won the insert cannot vanish
        raise RuntimeError("the execution lock disappeared")
    return ExecutionLock(attempt, False)


def start_if_queued(lock: ExecutionLock, request: ExecutionRequest) -> None:
    """After the lock is committed: enqueue its workflow.

    Whatever fails from here on, the reconciler finds the QUEUED row and starts its workflow. A
    repeated approval nudges a QUEUED attempt (the enqueue is idempotent by workflow id) and never
    starts a second one.
    """
    attempt = lock.attempt
    if lock.taken or attempt.status is AttemptStatus.QUEUED:
        if lock.taken:
            with log_context(
                action_intent_id=attempt.action_intent_id,
                tenant_id=attempt.tenant_id,
                account_id=attempt.account_id,
                trace_id=attempt.trace_id,
            ):
                log.info("execution accepted (attempt %d, %s)", attempt.attempt_count, attempt.workflow_id)
        _start_queued(request, lock.queue_priority)


def queued_attempt(intent: ActionIntentV1, now: float, attempt_count: int = 1) -> ExecutionAttempt:
    """A new QUEUED attempt of an intent: its lock, owned by a fresh attempt id."""
    now_iso = iso_from_epoch(now)
    # The execution joins the trace of the request accepting it; its id is the execution's trace id.
    trace_id, traceparent = tracing.execution_trace()
    return ExecutionAttempt(
        tenant_id=intent.tenant_id,
        account_id=intent.account_id,
        action_intent_id=intent.action_intent_id,
        attempt_count=attempt_count,
        attempt_id=f"attempt_{int(now * 1000)}_{secrets.token_hex(4)}",
        workflow_id=execution_workflow_id(intent.tenant_id, intent.action_intent_id, attempt_count),
        status=AttemptStatus.QUEUED,
        trace_id=trace_id,
        traceparent=traceparent,
        started_at=now_iso,
        updated_at=now_iso,
    )


def _start_queued(request: ExecutionRequest, priority: int | None) -> None:
    try:
        start_execution(request, priority=priority)
    except Exception as exc:
        log.warning(
            "could not enqueue %s now; the reconciler will start it: %s",
            request.workflow_id,
            describe_failure(exc),
        )


def audit_rejection(
    rt: Runtime, event: ApprovedEventData, rejection: EventRejected, caller_tenant_id: str | None
) -> None:
    """Write the rejection into the ledger of the tenant that sent it."""
    now_iso = rt.clock.now_iso()
    entry = event_rejected_entry(
        tenant_id=caller_tenant_id or event.tenant_id,
        account_id=event.account_id,
        action_intent_id=event.action_intent_id,
        event_tenant_id=event.tenant_id,
        code=rejection.code,
        message=rejection.message,
        fingerprint_of=f"{event.model_dump_json()}|{rejection.code}|{now_iso}|{caller_tenant_id}",
        timestamp=now_iso,
    )
    with rt.store.write() as uow:
        uow.executions.append_ledger(entry)
