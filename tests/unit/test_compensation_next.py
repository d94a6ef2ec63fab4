"""What follows one try of a compensation (domain/compensation.py)."""

from __future__ import annotations

from typing import Any

import pytest

from fulfill.domain.compensation import (
    COMPENSATION_OUTCOME_UNKNOWN,
    AfterTry,
    after_compensation_try,
    compensation_unknown_entry,
)
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.models import ActionOutcomeV1
from tests.unit.factories import make_outcome

LOST = ExecutionError(error_class=ErrorClass.UNKNOWN, error_code="UNKNOWN_OUTCOME", error_message="lost")
REFUSED = ExecutionError(error_class=ErrorClass.VALIDATION, error_code="TARGET_HTTP_400", error_message="no")


def _next(**override: Any) -> Any:
    fields: dict[str, Any] = {
        "completed": False,
        "error": REFUSED,
        "try_number": 1,
        "max_tries": 3,
        "retry_base_seconds": 30.0,
        "now_epoch": 1000.0,
    }
    return after_compensation_try(**{**fields, **override})


def test_completed() -> None:
    assert _next(completed=True, error=None).after is AfterTry.COMPLETED


@pytest.mark.parametrize(("try_number", "at"), [(1, 1030.0), (2, 1060.0)])
def test_a_failure_is_tried_again_with_backoff(try_number: int, at: float) -> None:
    step = _next(try_number=try_number)
    assert (step.after, step.retry_at_epoch) == (AfterTry.RETRY, at)


def test_the_last_try_is_abandoned() -> None:
    step = _next(try_number=3)
    assert (step.after, step.retry_at_epoch) == (AfterTry.ABANDONED, None)


@pytest.mark.parametrize("try_number", [1, 2, 3])
def test_an_unknown_outcome_is_never_tried_again_whatever_the_try(try_number: int) -> None:
    step = _next(error=LOST, try_number=try_number)
    assert (step.after, step.retry_at_epoch) == (AfterTry.OUTCOME_UNKNOWN, None)


def test_the_unknown_entry_names_what_a_person_checks() -> None:
    outcome: ActionOutcomeV1 = make_outcome()
    entry = compensation_unknown_entry(
        outcome,
        "2026-01-01T00:00:00.000Z",
        tool_name="tickets.delete_ticket",
        object_id="T-1",
        idempotency_key="k" * 64,
        error=LOST,
        try_number=2,
    )
    assert entry.event_type == COMPENSATION_OUTCOME_UNKNOWN
    assert entry.data["target"] == "tickets"
    assert entry.data["remote_tool"] == "delete_ticket"
    assert (entry.data["object_id"], entry.data["idempotency_key"]) == ("T-1", "k" * 64)
    assert entry.data["write_idempotency_key"] == outcome.idempotency_key
    assert entry.data["error_code"] == "UNKNOWN_OUTCOME"


def test_the_console_timeline_says_what_to_check() -> None:
    from fulfill.console.present import timeline_steps

    entry = compensation_unknown_entry(
        make_outcome(),
        "2026-01-01T00:00:00.000Z",
        tool_name="tickets.delete_ticket",
        object_id="T-1",
        idempotency_key="k" * 64,
        error=LOST,
        try_number=1,
    )
    [step] = timeline_steps([entry.model_dump(mode="json")])
    assert step.kind == "compensation"
    assert "check the target" in step.title
    assert "tickets.delete_ticket of T-1" in step.details
    assert f"idempotency key {'k' * 64}" in step.details
