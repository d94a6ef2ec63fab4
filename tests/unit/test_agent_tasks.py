"""The pure rules of the agent's door: idempotency keys, task ids bound to their caller, and the
task status an intent amounts to."""

from __future__ import annotations

import pytest

from fulfill.domain.agent_tasks import (
    IDEMPOTENCY_KEY_META,
    IdempotencyKeyError,
    action_type_of,
    checked_idempotency_key,
    is_callers_task,
    task_id_for,
    task_outcome,
    tool_name_of,
    ttl_ms,
)
from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import ApprovalStatus, ExecutionStatus, ExecutionStatusView

SECRET = b"k" * 32


def view(status: ExecutionStatus, **fields: object) -> ExecutionStatusView:
    return ExecutionStatusView(action_intent_id="mcp_x", status=status, **fields)  # type: ignore[arg-type]


def test_a_key_is_16_to_128_printable_characters_and_optional() -> None:
    assert checked_idempotency_key(None) is None
    assert checked_idempotency_key({"other": 1}) is None
    assert checked_idempotency_key({IDEMPOTENCY_KEY_META: "a" * 16}) == "a" * 16
    assert checked_idempotency_key({IDEMPOTENCY_KEY_META: "a" * 128}) == "a" * 128
    for bad in ("a" * 15, "a" * 129, "a key with spaces!", 12345678901234567):
        with pytest.raises(IdempotencyKeyError):
            checked_idempotency_key({IDEMPOTENCY_KEY_META: bad})


def test_a_task_id_is_the_same_for_the_same_caller_and_key_and_bound_to_that_caller() -> None:
    key = "retry-key-0123456789"
    first = task_id_for(SECRET, "t1", "agent-1", key)
    assert task_id_for(SECRET, "t1", "agent-1", key) == first
    assert task_id_for(SECRET, "t1", "agent-2", key) != first
    assert task_id_for(SECRET, "t2", "agent-1", key) != first
    assert task_id_for(SECRET, "t1", "agent-1", None) != task_id_for(SECRET, "t1", "agent-1", None)
    assert is_callers_task(SECRET, "t1", "agent-1", first)
    assert not is_callers_task(SECRET, "t1", "agent-2", first)
    assert not is_callers_task(SECRET, "t2", "agent-1", first)
    assert not is_callers_task(b"other-secret", "t1", "agent-1", first)
    assert not is_callers_task(SECRET, "t1", "agent-1", "ai_123_abc")
    assert len(first) <= 128


def test_the_task_status_an_intent_amounts_to() -> None:
    pending = task_outcome(ApprovalStatus.PENDING_APPROVAL, view(ExecutionStatus.PENDING))
    assert (pending.status, pending.terminal) == ("working", False)
    assert "approval" in pending.message
    running = task_outcome(ApprovalStatus.APPROVED, view(ExecutionStatus.RUNNING))
    assert (running.status, running.message) == ("working", "approved; running")
    throttled = task_outcome(
        ApprovalStatus.APPROVED, view(ExecutionStatus.RUNNING, error_class=ErrorClass.RATE_LIMIT)
    )
    assert throttled.status == "working"
    assert "rate limit" in throttled.message
    done = task_outcome(ApprovalStatus.APPROVED, view(ExecutionStatus.SUCCEEDED))
    assert (done.status, done.is_error) == ("completed", False)
    rejected = task_outcome(ApprovalStatus.REJECTED, view(ExecutionStatus.CANCELLED))
    assert (rejected.status, rejected.is_error) == ("completed", True)
    assert "rejected" in rejected.message
    failed = task_outcome(
        ApprovalStatus.APPROVED, view(ExecutionStatus.FAILED, error_code="TOOL_ERROR", error_message="boom")
    )
    assert (failed.status, failed.is_error) == ("completed", True)
    assert "TOOL_ERROR" in failed.message
    stopped = task_outcome(
        ApprovalStatus.APPROVED, view(ExecutionStatus.CANCELLED, error_code="KILL_SWITCH_ENABLED")
    )
    assert (stopped.status, stopped.is_error) == ("completed", True)
    expired = task_outcome(ApprovalStatus.PENDING_APPROVAL, view(ExecutionStatus.EXPIRED))
    assert (expired.status, expired.is_error) == ("completed", True)
    cancelled = task_outcome(ApprovalStatus.CANCELLED, view(ExecutionStatus.SUCCEEDED))
    assert cancelled.status == "cancelled"


def test_names_and_ttl() -> None:
    assert tool_name_of("CREATE_INTERNAL_TASK") == "create_internal_task"
    assert action_type_of("create_internal_task") == "CREATE_INTERNAL_TASK"
    assert ttl_ms(100.0, 99.5) == 500
    assert ttl_ms(100.0, 200.0) == 1  # never zero or negative
