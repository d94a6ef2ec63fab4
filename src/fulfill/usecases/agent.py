"""What an agent does through ``/agent/mcp``: see the action types it may propose, propose one
(an intent, committed in one transaction before anything is answered: PENDING_APPROVAL, or as the
tenant's approval policies decide, approved and executing, or rejected), follow it as a task, and
cancel it.

The task is the intent: its id is minted by :mod:`fulfill.domain.agent_tasks` for the caller
(tenant and subject) and the call's idempotency key, so a retried call finds the intent its
first attempt committed (the same arguments: the same task; others: an error), and a task id
presented by anyone else is answered as unknown.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fulfill.domain.agent_tasks import (
    TaskOutcome,
    action_type_of,
    is_callers_task,
    task_id_for,
    task_outcome,
    ttl_ms,
)
from fulfill.domain.models import ActionIntentV1, ExecutionStatusView, ProposedVia, RegistryEntry
from fulfill.tokens import Principal, service_token_secret
from fulfill.usecases import executions, intents
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Conflict, Forbidden, Invalid, NotFound
from fulfill.usecases.intents import ApprovalChange, CreateIntent

# How long a finished task stays readable, as far as a client is told: its intent is kept.
FINISHED_TASK_TTL_MS = 7 * 86_400 * 1000


class UnknownTask(NotFound):
    """No task of this caller has this id (whether it exists for someone else is not said)."""


class KeyReused(Conflict):
    """The idempotency key was sent before with other arguments."""


@dataclass(frozen=True)
class TaskState:
    intent: ActionIntentV1
    view: ExecutionStatusView
    outcome: TaskOutcome
    ttl_ms: int

    @property
    def task_id(self) -> str:
        return self.intent.action_intent_id


def _task_key(rt: UseCaseContext) -> bytes:
    return hashlib.sha256(b"fulfill-agent-task:" + service_token_secret(rt.settings).encode()).digest()


def proposable_entries(rt: UseCaseContext) -> list[RegistryEntry]:
    """The current (newest, not deprecated) registry version of every action type whose tool
    this process's gateway serves, by action type. Read on every listing: registry changes show
    without a restart."""
    with rt.store.read() as uow:
        entries = uow.registry.list_entries(None)
    current: dict[str, RegistryEntry] = {}
    for entry in entries:
        known = current.get(entry.action_type)
        if known is None or entry.registry_version > known.registry_version:
            current[entry.action_type] = entry
    schemas = rt.tool_schemas
    return sorted(
        (e for e in current.values() if e.deprecated_at is None and e.tool_name in schemas),
        key=lambda e: e.action_type,
    )


def proposable_entry(rt: UseCaseContext, tool_name: str) -> RegistryEntry | None:
    action_type = action_type_of(tool_name)
    return next((e for e in proposable_entries(rt) if e.action_type == action_type), None)


def propose(
    rt: UseCaseContext,
    principal: Principal,
    entry: RegistryEntry,
    arguments: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[TaskState, bool]:
    """Create the intent a tool call proposes (or find the one a retry's first attempt created);
    returns its task state once the intent is committed, and whether it was created now."""
    arguments = dict(arguments)
    account_id = arguments.pop("account_id", None)
    if not isinstance(account_id, str) or not account_id:
        raise Invalid("account_id is required", code="ACCOUNT_ID_REQUIRED")
    task_id = task_id_for(_task_key(rt), principal.tenant_id, principal.subject, idempotency_key)
    body = CreateIntent(
        action_intent_id=task_id,
        action_type=entry.action_type,
        account_id=account_id,
        parameters=arguments,
    )
    try:
        intent, created = intents.create_intent(rt, principal, body, proposed_via=ProposedVia.MCP)
    except Conflict as exc:
        if exc.code == "INTENT_BODY_MISMATCH":
            raise KeyReused(
                "this idempotency key was already used with other arguments: send a new key for a "
                "new proposal, or the same arguments to find the first one",
                code="IDEMPOTENCY_KEY_REUSED",
            ) from None
        raise
    return _state_of(rt, principal, intent), created


def task_state(rt: UseCaseContext, principal: Principal, task_id: str) -> TaskState:
    """The caller's task as the store has it now (UnknownTask for an id minted for another)."""
    return _state_of(rt, principal, _callers_intent(rt, principal, task_id))


def cancel_task(rt: UseCaseContext, principal: Principal, task_id: str) -> TaskState:
    """Cancel the caller's own task: its intent is cancelled as ``POST /intents/{id}/cancel``
    does (before approval it never runs; after, it stops or is compensated)."""
    intent = _callers_intent(rt, principal, task_id)
    intents.cancel_intent(rt, principal, intent.action_intent_id)
    return task_state(rt, principal, task_id)


def cancel_action(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, reason: str | None = None
) -> ApprovalChange:
    """``cancel_action``: an agent cancels what it proposed itself; a token that may approve
    cancels any intent of its tenant, as through the HTTP API. The ``reason`` goes into the
    cancellation's ledger entry (``comment``)."""
    if not (principal.has_scope("intents:approve") or _is_callers(rt, principal, action_intent_id)):
        raise Forbidden(
            "only the proposer of an intent, or a token with intents:approve, may cancel it",
            code="NOT_PROPOSER",
        )
    return intents.cancel_intent(rt, principal, action_intent_id, reason=reason)


def action_status(rt: UseCaseContext, principal: Principal, action_intent_id: str) -> ExecutionStatusView:
    return executions.execution_status(rt, principal, action_intent_id)


def approve(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, comment: str | None
) -> ApprovalChange:
    """As ``POST /intents/{id}/approve``: an agent's token and the proposer are refused there."""
    return intents.approve_intent(rt, principal, action_intent_id, comment=comment)


def reject(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, comment: str | None
) -> ApprovalChange:
    return intents.reject_intent(rt, principal, action_intent_id, comment=comment)


def _is_callers(rt: UseCaseContext, principal: Principal, task_id: str) -> bool:
    return is_callers_task(_task_key(rt), principal.tenant_id, principal.subject, task_id)


def _callers_intent(rt: UseCaseContext, principal: Principal, task_id: str) -> ActionIntentV1:
    if not _is_callers(rt, principal, task_id):
        raise UnknownTask("unknown task")
    with rt.store.read() as uow:
        intent = uow.intents.get_intent(principal.tenant_id, task_id)
    if intent is None or not principal.may_access_account(intent.account_id):
        raise UnknownTask("unknown task")
    return intent


def _state_of(rt: UseCaseContext, principal: Principal, intent: ActionIntentV1) -> TaskState:
    view = executions.execution_status(rt, principal, intent.action_intent_id)
    with rt.store.read() as uow:  # the status read may follow a transition: read the intent again
        current = uow.intents.get_intent(intent.tenant_id, intent.action_intent_id) or intent
    outcome = task_outcome(current.approval_status, view, current.approval_rule)
    ttl = FINISHED_TASK_TTL_MS if outcome.terminal else ttl_ms(current.expires_at_epoch, rt.clock.now())
    return TaskState(intent=current, view=view, outcome=outcome, ttl_ms=ttl)
