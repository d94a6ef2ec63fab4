"""Builders for the domain models the unit tests need; every field can be overridden."""

from __future__ import annotations

from typing import Any

from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalStatus,
    AttemptStatus,
    ExecutionAttempt,
    ExecutionPolicy,
    ExecutionStatus,
)

COMPLETED_AT = "2026-01-02T03:04:05.678Z"
STARTED_AT = "2026-01-02T03:04:00.000Z"


def make_intent(**overrides: Any) -> ActionIntentV1:
    fields: dict[str, Any] = {
        "action_intent_id": "ai_1",
        "action_type": "CREATE_INTERNAL_TASK",
        "parameters": {"title": "x"},
        "approval_status": ApprovalStatus.APPROVED,
        "execution_policy": ExecutionPolicy(),
        "expires_at": "2026-02-01T00:00:00.000Z",
        "expires_at_epoch": 2_000_000_000,
        "original_decision_id": "dec_1",
        "tenant_id": "t1",
        "account_id": "acc_1",
        "trace_id": "trace_1",
        "registry_version": 1,
        "created_at": STARTED_AT,
        "updated_at": STARTED_AT,
    }
    fields.update(overrides)
    return ActionIntentV1(**fields)


def make_attempt(**overrides: Any) -> ExecutionAttempt:
    fields: dict[str, Any] = {
        "tenant_id": "t1",
        "account_id": "acc_1",
        "action_intent_id": "ai_1",
        "attempt_count": 1,
        "attempt_id": "att_1",
        "workflow_id": "wf_1",
        "status": AttemptStatus.RUNNING,
        "trace_id": "trace_1",
        "started_at": STARTED_AT,
        "updated_at": STARTED_AT,
    }
    fields.update(overrides)
    return ExecutionAttempt(**fields)


def make_tenant_attempts(
    tenant_id: str, statuses: list[AttemptStatus], *, first: int = 0
) -> list[ExecutionAttempt]:
    """One attempt of ``tenant_id`` per status, each of its own intent (numbered from ``first``)."""
    return [
        make_attempt(
            tenant_id=tenant_id,
            action_intent_id=f"ai_{tenant_id}_{index}",
            attempt_id=f"att_{tenant_id}_{index}",
            workflow_id=f"wf_{tenant_id}_{index}",
            status=status,
        )
        for index, status in enumerate(statuses, start=first)
    ]


def make_outcome(**overrides: Any) -> ActionOutcomeV1:
    fields: dict[str, Any] = {
        "tenant_id": "t1",
        "account_id": "acc_1",
        "action_intent_id": "ai_1",
        "attempt_count": 1,
        "status": ExecutionStatus.SUCCEEDED,
        "external_object_refs": [{"system": "INTERNAL", "object_type": "task", "object_id": "task_1"}],
        "tool_name": "internal.create_task",
        "registry_version": 1,
        "tool_run_ref": "run_1",
        "idempotency_key": "k" * 64,
        "started_at": STARTED_AT,
        "completed_at": COMPLETED_AT,
        "trace_id": "trace_1",
    }
    fields.update(overrides)
    return ActionOutcomeV1(**fields)
