"""Reading executions (status, an account's list, the timeline) and rerunning one."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.expiry import is_expired
from fulfill.domain.ledger import TOOL_CALL_TRY_FAILED, rerun_requested_entry
from fulfill.domain.models import (
    RERUNNABLE_STATUSES,
    ActionIntentV1,
    ApprovalStatus,
    AttemptStatus,
    ExecutionStatus,
    ExecutionStatusView,
)
from fulfill.domain.rerun import stop_without_a_call
from fulfill.domain.status import derive_status
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.intake import queued_attempt, request_for
from fulfill.engine.outbox_relay import queue_rerun
from fulfill.ports.store import UnitOfWork
from fulfill.tokens import Principal, service_token_secret
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import BadRequest, Conflict, Forbidden, NotFound

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


class ListedExecutionView(ExecutionStatusView):
    account_id: str
    action_type: str
    updated_at: str


class ExecutionPage(BaseModel):
    """One page of an account's executions, under the reference's key ``executions``."""

    executions: list[ListedExecutionView]
    next_token: str | None = None


class TimelineEntry(BaseModel):
    entry_id: str
    event_type: str
    timestamp: str
    attempt: int
    data: dict[str, Any]


class Timeline(BaseModel):
    action_intent_id: str
    entries: list[TimelineEntry]


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


def _intent_for(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, account_id: str | None
) -> ActionIntentV1:
    """The caller's intent: 404 for nothing or another tenant's, 403 for an account outside the token."""
    with rt.store.read() as uow:
        return _checked_intent(principal, uow, action_intent_id, account_id)


def _checked_intent(
    principal: Principal, uow: UnitOfWork, action_intent_id: str, account_id: str | None
) -> ActionIntentV1:
    """:func:`_intent_for` in the caller's unit of work."""
    if account_id is not None and not principal.may_access_account(account_id):
        raise Forbidden("the token does not grant access to this account")
    intent = uow.intents.get_intent(principal.tenant_id, action_intent_id)
    if intent is None or (account_id is not None and intent.account_id != account_id):
        raise NotFound("execution not found")
    if not principal.may_access_account(intent.account_id):
        raise Forbidden("the token does not grant access to this account")
    return intent


def execution_intent(rt: UseCaseContext, principal: Principal, action_intent_id: str) -> ActionIntentV1:
    """The intent behind an execution, under the same rules as its status (404, 403)."""
    return _intent_for(rt, principal, action_intent_id, None)


def execution_status(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, account_id: str | None = None
) -> ExecutionStatusView:
    # One read transaction for the intent, its attempt and its outcome.
    with rt.store.read() as uow:
        intent = _checked_intent(principal, uow, action_intent_id, account_id)
        attempt = uow.executions.get_attempt(intent.tenant_id, intent.account_id, action_intent_id)
        outcome = (
            uow.executions.get_outcome(
                intent.tenant_id, intent.account_id, action_intent_id, attempt.attempt_count
            )
            if attempt
            else None
        )
    view = derive_status(
        action_intent_id=action_intent_id,
        intent=intent,
        attempt=attempt,
        outcome=outcome,
        now_epoch=rt.clock.now(),
    )
    if view is None:
        raise NotFound("execution not found")
    return view


def timeline(rt: UseCaseContext, principal: Principal, action_intent_id: str) -> Timeline:
    intent = _intent_for(rt, principal, action_intent_id, None)
    with rt.store.read() as uow:
        entries = uow.executions.list_ledger(intent.tenant_id, action_intent_id)
    return Timeline(
        action_intent_id=action_intent_id,
        entries=[
            TimelineEntry(
                entry_id=e.entry_id,
                event_type=e.event_type,
                timestamp=e.timestamp,
                attempt=e.attempt,
                data=e.data,
            )
            for e in entries
        ],
    )


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(
            f"the limit query parameter must be a whole number from 1 to {MAX_LIMIT}", code="INVALID_LIMIT"
        )
    return int(raw)


def parse_status_filter(raw: str | None) -> ExecutionStatus | None:
    if raw is None:
        return None
    try:
        return ExecutionStatus(raw)
    except ValueError:
        allowed = ", ".join(status.value for status in ExecutionStatus)
        raise BadRequest(f"status must be one of {allowed}", code="INVALID_STATUS") from None


def list_account_executions(
    rt: UseCaseContext,
    principal: Principal,
    account_id: str,
    *,
    limit: int,
    status: ExecutionStatus | None,
    next_token: str | None,
) -> ExecutionPage:
    """Newest change first, RUNNING and PENDING included; the cursor is opaque and bound to the
    tenant, the account and the filter, so a tampered or foreign cursor is rejected."""
    if not principal.may_access_account(account_id):
        raise Forbidden("the token does not grant access to this account")
    scope = _cursor_scope(principal.tenant_id, account_id, status)
    after = _decode_cursor(rt, next_token, scope) if next_token is not None else None
    now = rt.clock.now()
    with rt.store.read() as uow:
        rows = uow.intents.list_account_executions(
            tenant_id=principal.tenant_id,
            account_id=account_id,
            status=status,
            now_epoch=now,
            after=after,
            limit=limit + 1,
        )
    page, more = rows[:limit], len(rows) > limit
    items: list[ListedExecutionView] = []
    for row in page:
        view = derive_status(
            action_intent_id=row.intent.action_intent_id,
            intent=row.intent,
            attempt=row.attempt,
            outcome=row.outcome,
            now_epoch=now,
        )
        assert view is not None  # the intent exists
        items.append(
            ListedExecutionView(
                **view.model_dump(),
                account_id=row.intent.account_id,
                action_type=row.intent.action_type,
                updated_at=row.last_update_at,
            )
        )
    token = None
    if more:
        last = page[-1]
        token = _encode_cursor(rt, (last.last_update_at, last.intent.action_intent_id), scope)
    return ExecutionPage(executions=items, next_token=token)


def _cursor_scope(tenant_id: str, account_id: str, status: ExecutionStatus | None) -> str:
    return json.dumps([tenant_id, account_id, status.value if status else None])


def _cursor_key(rt: UseCaseContext) -> bytes:
    return hashlib.sha256(b"fulfill-list-cursor:" + service_token_secret(rt.settings).encode()).digest()


def _encode_cursor(rt: UseCaseContext, position: tuple[str, str], scope: str) -> str:
    body = json.dumps(list(position), separators=(",", ":")).encode()
    signature = hmac.new(_cursor_key(rt), scope.encode() + b"|" + body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(signature + body).decode().rstrip("=")


def _decode_cursor(rt: UseCaseContext, token: str, scope: str) -> tuple[str, str]:
    invalid = BadRequest("next_token is not a cursor issued for this listing", code="INVALID_CURSOR")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    signature, body = raw[:16], raw[16:]
    expected = hmac.new(_cursor_key(rt), scope.encode() + b"|" + body, hashlib.sha256).digest()[:16]
    if len(signature) != 16 or not hmac.compare_digest(signature, expected):
        raise invalid
    try:
        updated, intent_id = json.loads(body)
    except (ValueError, TypeError):
        raise invalid from None
    if not isinstance(updated, str) or not isinstance(intent_id, str):
        raise invalid
    return updated, intent_id


def _check_max_attempts(intent: ActionIntentV1, attempts_made: int) -> None:
    """``execution_policy.max_attempts`` counts every attempt, the first one included."""
    allowed = intent.execution_policy.max_attempts
    if attempts_made >= allowed:
        raise Conflict(
            f"execution_policy.max_attempts of this intent allows {allowed} "
            f"attempt{'s' if allowed != 1 else ''}, and {attempts_made} "
            f"{'have' if attempts_made != 1 else 'has'} been made; an intent that may need a rerun "
            "must be created with a higher execution_policy.max_attempts",
            code="MAX_ATTEMPTS_REACHED",
        )


def rerun_execution(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, body: RerunRequest
) -> ExecutionStatusView:
    """Start a new attempt of a FAILED or CANCELLED execution (admin only), within the intent's
    ``execution_policy.max_attempts``, except after a stop from outside the intent before its tool
    was called (a kill switch, a database outage): that rerun is always allowed and recorded
    (``after_stop`` on ``RERUN_REQUESTED``).

    The new attempt maps the same intent with the same registry version, so its idempotency key
    is the same: a write that did happen in an earlier attempt is found, not repeated.
    """
    intent = _intent_for(rt, principal, action_intent_id, None)
    if intent.approval_status is ApprovalStatus.CANCELLED:
        raise Conflict(
            "the intent was cancelled; a rerun would only be cancelled again", code="INTENT_CANCELLED"
        )
    now = rt.clock.now()
    if is_expired(intent.expires_at_epoch, now):
        raise Conflict("the intent has expired; a rerun would only expire again", code="INTENT_EXPIRED")
    now_iso = iso_from_epoch(now)
    with rt.store.write() as uow:
        attempt = uow.executions.get_attempt(intent.tenant_id, intent.account_id, action_intent_id)
        if attempt is not None and attempt.status is AttemptStatus.AMBIGUOUS:
            raise Conflict(
                "the execution is AMBIGUOUS (its call may have written at the target): a rerun could "
                "write twice; resolve it instead (not_committed sends the call once more)",
                code="EXECUTION_AMBIGUOUS",
            )
        if attempt is None or attempt.status not in RERUNNABLE_STATUSES:
            current = attempt.status.value if attempt else "not executed"
            raise Conflict(
                f"only FAILED or CANCELLED executions can be rerun (this one is {current})",
                code="NOT_RERUNNABLE",
            )
        # An attempt stopped from outside before its tool was called tried nothing: its rerun by
        # an admin is always allowed, and the ledger says so (domain/rerun.py).
        tries_failed = sum(
            1
            for entry in uow.executions.list_ledger(intent.tenant_id, action_intent_id)
            if entry.event_type == TOOL_CALL_TRY_FAILED and entry.attempt == attempt.attempt_count
        )
        stop = stop_without_a_call(
            uow.executions.get_outcome(
                intent.tenant_id, intent.account_id, action_intent_id, attempt.attempt_count
            ),
            tries_failed=tries_failed,
        )
        if stop is None:
            _check_max_attempts(intent, attempt.attempt_count)
        beyond = attempt.attempt_count >= intent.execution_policy.max_attempts
        attempt_count = attempt.attempt_count + 1
        rerun = queued_attempt(intent, now, attempt_count)
        if not uow.executions.start_rerun(
            previous=attempt, rerun=rerun, deadline_epoch=now + intent.execution_policy.timeout_seconds
        ):
            raise Conflict(
                "the execution changed while the rerun was requested; retry", code="CONCURRENT_CHANGE"
            )
        uow.intents.mark_execution(
            intent.tenant_id, action_intent_id, status=ExecutionStatus.PENDING, at=now_iso
        )
        uow.executions.append_ledger(
            rerun_requested_entry(
                intent,
                attempt=attempt_count,
                trace_id=rerun.trace_id,
                timestamp=now_iso,
                requested_by=principal.subject,
                reason=body.reason,
                after_stop=stop,
                beyond_max_attempts=beyond,
            )
        )
        request = request_for(rerun, requested_by=principal.subject, rerun_reason=body.reason)
        queue_rerun(uow, request, now_iso=now_iso, now=now)
    rt.outbox_wakeup.set()
    # Queued: its workflow starts through the outbox (and the reconciler, should that fail).
    return ExecutionStatusView(
        action_intent_id=action_intent_id, status=ExecutionStatus.PENDING, attempt_count=attempt_count
    )
