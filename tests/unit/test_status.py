from __future__ import annotations

import pytest

from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import (
    ApprovalStatus,
    AttemptStatus,
    CompensationStatus,
    ExecutionStatus,
    ExecutionStatusView,
    ExternalObjectRef,
)
from fulfill.domain.status import derive_status
from tests.unit.factories import COMPLETED_AT, STARTED_AT, make_attempt, make_intent, make_outcome

NOW = 1_800_000_000.0
EXPIRES = 2_000_000_000


def test_nothing_at_all_is_none() -> None:
    assert (
        derive_status(action_intent_id="ai_1", intent=None, attempt=None, outcome=None, now_epoch=NOW) is None
    )


def test_outcome_of_current_attempt_wins() -> None:
    outcome = make_outcome(
        attempt_count=2,
        status=ExecutionStatus.FAILED,
        external_object_refs=[],
        error_code="RATE_LIMIT",
        error_class=ErrorClass.RATE_LIMIT,
        error_message="slow down",
        compensation_status=CompensationStatus.PENDING,
    )
    attempt = make_attempt(attempt_count=2, status=AttemptStatus.RUNNING)
    view = derive_status(
        action_intent_id="ai_1", intent=make_intent(), attempt=attempt, outcome=outcome, now_epoch=NOW
    )
    assert view == ExecutionStatusView(
        action_intent_id="ai_1",
        status=ExecutionStatus.FAILED,
        started_at=STARTED_AT,
        completed_at=COMPLETED_AT,
        external_object_refs=[],
        error_code="RATE_LIMIT",
        error_class=ErrorClass.RATE_LIMIT,
        error_message="slow down",
        attempt_count=2,
        compensation_status=CompensationStatus.PENDING,
    )


def test_success_outcome_carries_refs() -> None:
    view = derive_status(
        action_intent_id="ai_1",
        intent=None,
        attempt=make_attempt(status=AttemptStatus.SUCCEEDED, completed_at=COMPLETED_AT),
        outcome=make_outcome(),
        now_epoch=NOW,
    )
    assert view is not None
    assert view.status is ExecutionStatus.SUCCEEDED
    assert view.external_object_refs == [
        ExternalObjectRef(system="INTERNAL", object_type="task", object_id="task_1")
    ]
    assert view.attempt_count == 1
    assert view.compensation_status is CompensationStatus.NONE


def test_outcome_without_attempt_is_used() -> None:
    view = derive_status(
        action_intent_id="ai_1", intent=None, attempt=None, outcome=make_outcome(), now_epoch=NOW
    )
    assert view is not None
    assert view.status is ExecutionStatus.SUCCEEDED


def test_older_outcome_does_not_hide_running_rerun() -> None:
    old_outcome = make_outcome(attempt_count=1, status=ExecutionStatus.FAILED, external_object_refs=[])
    rerun = make_attempt(
        attempt_count=2, status=ExecutionStatus.RUNNING, started_at="2026-01-03T00:00:00.000Z"
    )
    view = derive_status(
        action_intent_id="ai_1", intent=make_intent(), attempt=rerun, outcome=old_outcome, now_epoch=NOW
    )
    assert view == ExecutionStatusView(
        action_intent_id="ai_1",
        status=ExecutionStatus.RUNNING,
        started_at="2026-01-03T00:00:00.000Z",
        attempt_count=2,
    )


@pytest.mark.parametrize(
    "status",
    [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.EXPIRED],
)
def test_terminal_attempt_without_outcome_reports_attempt_status(status: ExecutionStatus) -> None:
    attempt = make_attempt(
        status=status, completed_at=COMPLETED_AT, last_error_class=ErrorClass.DOWNSTREAM, attempt_count=3
    )
    view = derive_status(
        action_intent_id="ai_1", intent=make_intent(), attempt=attempt, outcome=None, now_epoch=NOW
    )
    assert view is not None
    assert view.status is status
    assert view.status is not ExecutionStatus.PENDING
    assert view.completed_at == COMPLETED_AT
    assert view.started_at == STARTED_AT
    assert view.error_class is ErrorClass.DOWNSTREAM
    assert view.attempt_count == 3
    assert view.external_object_refs is None


def test_attempt_wins_over_cancelled_intent() -> None:
    view = derive_status(
        action_intent_id="ai_1",
        intent=make_intent(approval_status=ApprovalStatus.CANCELLED),
        attempt=make_attempt(status=AttemptStatus.RUNNING),
        outcome=None,
        now_epoch=NOW,
    )
    assert view is not None
    assert view.status is ExecutionStatus.RUNNING


def test_cancelled_intent() -> None:
    view = derive_status(
        action_intent_id="ai_1",
        intent=make_intent(approval_status=ApprovalStatus.CANCELLED),
        attempt=None,
        outcome=None,
        now_epoch=NOW,
    )
    assert view is not None
    assert view.status is ExecutionStatus.CANCELLED
    assert view.error_code == "INTENT_CANCELLED"
    assert view.error_message
    assert view.attempt_count is None


def test_rejected_intent() -> None:
    view = derive_status(
        action_intent_id="ai_1",
        intent=make_intent(approval_status=ApprovalStatus.REJECTED),
        attempt=None,
        outcome=None,
        now_epoch=NOW,
    )
    assert view is not None
    assert view.status is ExecutionStatus.CANCELLED
    assert view.error_code == "INTENT_REJECTED"


def test_cancelled_wins_over_expired() -> None:
    view = derive_status(
        action_intent_id="ai_1",
        intent=make_intent(approval_status=ApprovalStatus.CANCELLED, expires_at_epoch=100),
        attempt=None,
        outcome=None,
        now_epoch=NOW,
    )
    assert view is not None
    assert view.error_code == "INTENT_CANCELLED"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (EXPIRES, ExecutionStatus.EXPIRED),  # the boundary second is expired
        (EXPIRES + 1, ExecutionStatus.EXPIRED),
        (EXPIRES - 0.001, ExecutionStatus.PENDING),
        (EXPIRES - 1, ExecutionStatus.PENDING),
    ],
)
def test_intent_expiry_boundary(now: float, expected: ExecutionStatus) -> None:
    view = derive_status(
        action_intent_id="ai_1",
        intent=make_intent(expires_at_epoch=EXPIRES),
        attempt=None,
        outcome=None,
        now_epoch=now,
    )
    assert view == ExecutionStatusView(action_intent_id="ai_1", status=expected)


@pytest.mark.parametrize("approval", [ApprovalStatus.APPROVED, ApprovalStatus.PENDING_APPROVAL])
def test_live_intent_is_pending(approval: ApprovalStatus) -> None:
    view = derive_status(
        action_intent_id="ai_9",
        intent=make_intent(approval_status=approval),
        attempt=None,
        outcome=None,
        now_epoch=NOW,
    )
    assert view == ExecutionStatusView(action_intent_id="ai_9", status=ExecutionStatus.PENDING)


def test_view_serialises_without_absent_fields() -> None:
    view = derive_status(
        action_intent_id="ai_1", intent=make_intent(), attempt=None, outcome=None, now_epoch=NOW
    )
    assert view is not None
    assert view.model_dump(exclude_none=True) == {"action_intent_id": "ai_1", "status": "PENDING"}


def test_a_queued_attempt_reads_as_pending_not_started() -> None:
    view = derive_status(
        action_intent_id="ai_1",
        intent=make_intent(approval_status=ApprovalStatus.APPROVED),
        attempt=make_attempt(status=AttemptStatus.QUEUED),
        outcome=None,
        now_epoch=NOW,
    )
    assert view is not None
    assert view.status is ExecutionStatus.PENDING
    assert view.started_at is None
    assert view.attempt_count == 1


@pytest.mark.parametrize("status", list(AttemptStatus))
def test_every_attempt_status_has_a_client_status(status: AttemptStatus) -> None:
    expected = ExecutionStatus.PENDING if status is AttemptStatus.QUEUED else ExecutionStatus(status.value)
    assert status.execution_status is expected
