"""Resolving an AMBIGUOUS execution: a person says what happened at the target.

An execution is AMBIGUOUS when its call reached a target that does not deduplicate and the answer
was lost: the write may have happened. Nothing retries, reruns or cancels it meanwhile, and its
budget does not run. An admin of its tenant (a person: never an agent's token) resolves it:

- ``committed`` with the refs found at the target: the attempt becomes SUCCEEDED with those refs,
  which a later cancel compensates like any write;
- ``not_committed``: the attempt becomes FAILED ``NOT_COMMITTED`` and the call is sent once more as
  the next attempt (a rerun that no ``max_attempts`` bounds, with a fresh budget). It maps the same
  intent with the same registry version, so it carries the same idempotency key;
- ``abandon`` with a reason: the attempt becomes FAILED ``AMBIGUOUS_ABANDONED``, the reason its
  ``error_message``; nothing is sent.

The move is a compare-and-set on the outcome's AMBIGUOUS status, under the intent's row lock: of two
resolutions racing, one wins and the other gets 409, so ``not_committed`` sends the call once. Each
resolution is an ``EXECUTION_RESOLVED`` ledger entry naming who decided.

A reconcile probe (``engine/probes.py``) resolves through the same move (:func:`resolve_by_probe`),
``committed`` with the refs its target's lookup found or ``not_committed`` when the lookup proved the
write absent, as ``probe:<connector>``; a person and a probe racing: one wins, the other does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fulfill.domain.errors import ErrorClass
from fulfill.domain.execution import CompensationRequest
from fulfill.domain.ledger import rerun_requested_entry, resolution_entry
from fulfill.domain.models import (
    ActionOutcomeV1,
    ApprovalStatus,
    AttemptStatus,
    ExecutionStatus,
    ExecutionStatusView,
    ExternalObjectRef,
)
from fulfill.domain.status import derive_status
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.intake import queued_attempt, request_for
from fulfill.engine.outbox_relay import COMPENSATION_TOPIC, ENGINE_DESTINATION, queue_rerun
from fulfill.ports.store import UnitOfWork
from fulfill.tokens import Principal
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Conflict, Forbidden, NotFound

NOT_COMMITTED = "NOT_COMMITTED"
AMBIGUOUS_ABANDONED = "AMBIGUOUS_ABANDONED"


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Literal["committed", "not_committed", "abandon"]
    external_object_refs: list[ExternalObjectRef] = Field(default_factory=list, max_length=100)
    reason: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _fits_the_resolution(self) -> ResolveRequest:
        if self.resolution == "committed" and not self.external_object_refs:
            raise ValueError(
                "a committed resolution names the objects the call wrote (external_object_refs, at least one)"
            )
        if self.resolution != "committed" and self.external_object_refs:
            raise ValueError("external_object_refs belong only to a committed resolution")
        if self.resolution == "abandon" and not self.reason:
            raise ValueError("an abandon resolution needs a reason (it becomes the error_message)")
        return self


def resolve_execution(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, body: ResolveRequest
) -> ExecutionStatusView:
    """Resolve the caller's tenant's AMBIGUOUS execution (scope ``admin`` is checked by the route)."""
    if principal.is_agent:
        raise Forbidden(
            "an agent's token cannot resolve an ambiguous execution: a person checks the target and decides",
            code="AGENT_CANNOT_RESOLVE",
        )
    return _resolve(
        rt,
        principal.tenant_id,
        action_intent_id,
        body,
        decided_by=principal.subject,
        may_access=principal.may_access_account,
    )


def resolve_by_probe(
    rt: UseCaseContext,
    *,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    attempt_count: int,
    body: ResolveRequest,
    decided_by: str,
    also: Callable[[UnitOfWork], None],
) -> ExecutionStatusView | None:
    """A reconcile probe's resolution of one AMBIGUOUS attempt, through the same compare-and-set
    as a person's (``engine/probes.py``); ``also`` writes the probe's record in its transaction.
    None when it was not this attempt's to resolve any more: resolved meanwhile (by a person,
    another probe), or a later attempt is the current one. Nothing is then written or sent."""
    try:
        return _resolve(
            rt,
            tenant_id,
            action_intent_id,
            body,
            decided_by=decided_by,
            may_access=lambda account: account == account_id,
            attempt_count=attempt_count,
            also=also,
        )
    except (Conflict, NotFound, Forbidden):
        return None


def _resolve(
    rt: UseCaseContext,
    tenant_id: str,
    action_intent_id: str,
    body: ResolveRequest,
    *,
    decided_by: str,
    may_access: Callable[[str], bool],
    attempt_count: int | None = None,
    also: Callable[[UnitOfWork], None] | None = None,
) -> ExecutionStatusView:
    now = rt.clock.now()
    now_iso = iso_from_epoch(now)
    by_probe = attempt_count is not None
    with rt.store.write() as uow:
        intent = uow.intents.get_intent(tenant_id, action_intent_id, for_update=True)
        if intent is None:
            raise NotFound("execution not found")
        if not may_access(intent.account_id):
            raise Forbidden("the token does not grant access to this account")
        attempt = uow.executions.get_attempt(intent.tenant_id, intent.account_id, action_intent_id)
        if attempt is not None and attempt_count is not None and attempt.attempt_count != attempt_count:
            raise Conflict("a later attempt is the current one", code="CONCURRENT_CHANGE")
        outcome = (
            uow.executions.get_outcome(
                intent.tenant_id, intent.account_id, action_intent_id, attempt.attempt_count
            )
            if attempt is not None
            else None
        )
        if attempt is None or outcome is None or outcome.status is not ExecutionStatus.AMBIGUOUS:
            current = (
                outcome.status.value if outcome else (attempt.status.value if attempt else "not executed")
            )
            raise Conflict(
                f"only an AMBIGUOUS execution can be resolved (this one is {current})",
                code="NOT_AMBIGUOUS",
            )
        resolved = _resolved(outcome, body, by_probe=by_probe)
        if not uow.executions.resolve_ambiguous(resolved, now=now_iso):
            raise Conflict("the execution was resolved meanwhile; read it", code="CONCURRENT_CHANGE")
        cancelled = intent.approval_status is ApprovalStatus.CANCELLED
        next_attempt: int | None = None
        if body.resolution == "not_committed" and not cancelled:
            next_attempt = attempt.attempt_count + 1
            rerun = queued_attempt(intent, now, next_attempt)
            moved = attempt.model_copy(update={"status": AttemptStatus(resolved.status.value)})
            if not uow.executions.start_rerun(
                previous=moved, rerun=rerun, deadline_epoch=now + intent.execution_policy.timeout_seconds
            ):
                raise Conflict(
                    "the execution changed while it was resolved; read it", code="CONCURRENT_CHANGE"
                )
            uow.executions.append_ledger(
                resolution_entry(
                    resolved,
                    resolution=body.resolution,
                    decided_by=decided_by,
                    timestamp=now_iso,
                    reason=body.reason,
                    next_attempt=next_attempt,
                )
            )
            uow.executions.append_ledger(
                rerun_requested_entry(
                    intent,
                    attempt=next_attempt,
                    trace_id=rerun.trace_id,
                    timestamp=now_iso,
                    requested_by=decided_by,
                    reason="resolved not_committed: the call is sent once more under the same key",
                    after_stop=None,
                    beyond_max_attempts=next_attempt > intent.execution_policy.max_attempts,
                )
            )
            uow.intents.mark_execution(
                intent.tenant_id, action_intent_id, status=ExecutionStatus.PENDING, at=now_iso
            )
            request = request_for(rerun, requested_by=decided_by, rerun_reason="not_committed")
            queue_rerun(uow, request, now_iso=now_iso, now=now)
        else:
            uow.executions.append_ledger(
                resolution_entry(
                    resolved,
                    resolution=body.resolution,
                    decided_by=decided_by,
                    timestamp=now_iso,
                    reason=body.reason,
                )
            )
            uow.intents.mark_execution(intent.tenant_id, action_intent_id, status=resolved.status, at=now_iso)
            if cancelled and resolved.status is ExecutionStatus.SUCCEEDED:
                # Cancelled while its call was in doubt: the write it did is undone now.
                _compensate(uow, resolved, decided_by, now_iso, now)
        if also is not None:
            also(uow)
        attempt_now = uow.executions.get_attempt(intent.tenant_id, intent.account_id, action_intent_id)
        outcome_now = (
            uow.executions.get_outcome(
                intent.tenant_id, intent.account_id, action_intent_id, attempt_now.attempt_count
            )
            if attempt_now is not None
            else None
        )
    rt.outbox_wakeup.set()
    view = derive_status(
        action_intent_id=action_intent_id,
        intent=intent,
        attempt=attempt_now,
        outcome=outcome_now,
        now_epoch=now,
    )
    assert view is not None
    return view


def _resolved(outcome: ActionOutcomeV1, body: ResolveRequest, *, by_probe: bool = False) -> ActionOutcomeV1:
    if body.resolution == "committed":
        return outcome.model_copy(
            update={
                "status": ExecutionStatus.SUCCEEDED,
                "external_object_refs": list(body.external_object_refs),
                "error_code": None,
                "error_class": None,
                "error_message": None,
            }
        )
    if body.resolution == "not_committed":
        who = "a probe of the target" if by_probe else "a person"
        message = f"{who} found that the call did not write: it is sent once more under the same key"
        if body.reason:
            message = f"{message} ({body.reason})"
        return outcome.model_copy(
            update={
                "status": ExecutionStatus.FAILED,
                "error_code": NOT_COMMITTED,
                "error_class": ErrorClass.UNKNOWN,
                "error_message": message,
            }
        )
    return outcome.model_copy(
        update={
            "status": ExecutionStatus.FAILED,
            "error_code": AMBIGUOUS_ABANDONED,
            "error_class": ErrorClass.UNKNOWN,
            "error_message": body.reason,
        }
    )


def _compensate(uow: UnitOfWork, outcome: ActionOutcomeV1, by: str, now_iso: str, now: float) -> None:
    request = CompensationRequest(
        tenant_id=outcome.tenant_id,
        account_id=outcome.account_id,
        action_intent_id=outcome.action_intent_id,
        attempt_count=outcome.attempt_count,
        requested_by=by,
    )
    uow.outbox.enqueue(
        message_id=f"compensate:{request.workflow_id}",
        topic=COMPENSATION_TOPIC,
        tenant_id=outcome.tenant_id,
        payload=request.model_dump(mode="json"),
        destinations=[ENGINE_DESTINATION],
        now=now_iso,
        now_epoch=now,
    )
