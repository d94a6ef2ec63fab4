"""The rules of the agent's front door (``/agent/mcp``), free of any protocol or store.

A tool call of an agent proposes an intent; the MCP task that answers it is that intent seen
through the Tasks extension (``io.modelcontextprotocol/tasks``). Nothing about a task is stored
besides the intent: the task id *is* the intent id, minted so that it carries a keyed digest of
the caller (tenant and subject). Whoever else presents it is answered as for an id that never
existed, and a retried call with the same idempotency key mints the same id again, so it finds
the intent its first attempt committed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import (
    ApprovalRule,
    ApprovalStatus,
    ExecutionStatus,
    ExecutionStatusView,
    PolicyDecision,
)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
IDEMPOTENCY_KEY_META = "io.fulfill/idempotency-key"
ACTION_TYPE_META = "io.fulfill/action-type"
RISK_CLASS_META = "io.fulfill/risk-class"
MIN_KEY_LENGTH = 16
MAX_KEY_LENGTH = 128
POLL_INTERVAL_MS = 2000

_TASK_ID = re.compile(r"^mcp_([0-9a-f]{24})_([0-9a-f]{24})$")
_KEY = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces

TaskStatus = Literal["working", "completed", "failed", "cancelled"]


class IdempotencyKeyError(ValueError):
    """An idempotency key this door does not accept; the message says why."""


def checked_idempotency_key(meta: Mapping[str, Any] | None) -> str | None:
    """The call's idempotency key from its ``_meta``, or None when it carries none."""
    if not meta or IDEMPOTENCY_KEY_META not in meta:
        return None
    key = meta[IDEMPOTENCY_KEY_META]
    if not isinstance(key, str):
        raise IdempotencyKeyError(f"_meta {IDEMPOTENCY_KEY_META} must be a string")
    if not MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH:
        raise IdempotencyKeyError(
            f"_meta {IDEMPOTENCY_KEY_META} must be {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} characters long"
        )
    if not _KEY.match(key):
        raise IdempotencyKeyError(f"_meta {IDEMPOTENCY_KEY_META} must be printable ASCII without spaces")
    return key


def _caller_digest(secret: bytes, tenant_id: str, subject: str, nonce: str) -> str:
    message = "\n".join(("agent-task", tenant_id, subject, nonce)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:24]


def task_id_for(secret: bytes, tenant_id: str, subject: str, idempotency_key: str | None) -> str:
    """The task (and intent) id of a proposal: the same for the same caller and key, a fresh one
    without a key. Never the same for two callers, whatever their keys."""
    if idempotency_key is None:
        nonce = secrets.token_hex(12)
    else:
        nonce = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
    return f"mcp_{nonce}_{_caller_digest(secret, tenant_id, subject, nonce)}"


def is_callers_task(secret: bytes, tenant_id: str, subject: str, task_id: str) -> bool:
    """Whether ``task_id`` was minted for this caller (else it is answered as unknown)."""
    match = _TASK_ID.match(task_id) if isinstance(task_id, str) else None
    if match is None:
        return False
    expected = _caller_digest(secret, tenant_id, subject, match.group(1))
    return hmac.compare_digest(expected, match.group(2))


def tool_name_of(action_type: str) -> str:
    return action_type.lower()


def action_type_of(tool_name: str) -> str:
    return tool_name.upper()


@dataclass(frozen=True)
class TaskOutcome:
    """What a task says now: its status, a sentence for a person, and, once it is over, whether
    its tool result is an error."""

    status: TaskStatus
    message: str
    is_error: bool = False

    @property
    def terminal(self) -> bool:
        return self.status != "working"


def task_outcome(
    approval_status: ApprovalStatus, view: ExecutionStatusView, rule: ApprovalRule | None = None
) -> TaskOutcome:
    """The task status an intent and its execution status amount to (a pure rule).

    ``working`` while it waits for a person or runs; ``completed`` when it is over (with
    ``is_error`` unless it SUCCEEDED); ``cancelled`` when it was cancelled as a proposal or after
    its approval. ``failed`` is never derived here: it is for protocol errors only. ``rule``: the
    intent's approval rule; a DENY policy's rejection names the policy.
    """
    status = view.status
    if approval_status is ApprovalStatus.CANCELLED:
        return TaskOutcome("cancelled", "cancelled before it completed", is_error=True)
    if (
        approval_status is ApprovalStatus.REJECTED
        and rule is not None
        and rule.decision is PolicyDecision.DENY
    ):
        return TaskOutcome(
            "completed",
            f"denied by the approval policy '{rule.policy_name}' ({rule.policy_id}, version "
            f"{rule.policy_version}): the action was not executed",
            is_error=True,
        )
    if approval_status is ApprovalStatus.REJECTED:
        return TaskOutcome("completed", "rejected by an approver: the action was not executed", is_error=True)
    if status is ExecutionStatus.SUCCEEDED:
        return TaskOutcome("completed", "executed")
    if status is ExecutionStatus.EXPIRED:
        return TaskOutcome(
            "completed", "expired before it was approved and executed: the action was not executed", True
        )
    if status is ExecutionStatus.CANCELLED:
        return TaskOutcome("completed", f"cancelled{_because(view)}: the action was not executed", True)
    if status is ExecutionStatus.FAILED:
        return TaskOutcome("completed", f"failed{_because(view)}", is_error=True)
    if approval_status is ApprovalStatus.PENDING_APPROVAL:
        return TaskOutcome("working", "awaiting approval by a person")
    if status is ExecutionStatus.RUNNING and view.error_class is ErrorClass.RATE_LIMIT:
        return TaskOutcome("working", "approved; waiting for the connector's rate limit")
    if status is ExecutionStatus.RUNNING and view.error_class is not None:
        return TaskOutcome("working", f"approved; retrying after a {view.error_class.value} error")
    if status is ExecutionStatus.RUNNING:
        return TaskOutcome("working", "approved; running")
    return TaskOutcome("working", "approved; waiting to run")


def _because(view: ExecutionStatusView) -> str:
    parts = [part for part in (view.error_code, view.error_message) if part]
    return f" ({': '.join(parts)})" if parts else ""


def ttl_ms(expires_at_epoch: float, now: float) -> int:
    """How long the task is worth polling: until its intent expires (a positive number)."""
    return max(1, int((expires_at_epoch - now) * 1000))
