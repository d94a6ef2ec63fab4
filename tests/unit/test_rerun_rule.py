"""Which reruns ``execution_policy.max_attempts`` bounds (domain/rerun.py)."""

from __future__ import annotations

import pytest

from fulfill.domain.models import ExecutionStatus
from fulfill.domain.rerun import stop_without_a_call
from tests.unit.factories import make_outcome

PRE_TOOL = "pre-tool-ai_1-1"
CALLED = "toolrun/trace_1/1/internal.create_task"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (ExecutionStatus.CANCELLED, "KILL_SWITCH_ENABLED"),
        (ExecutionStatus.FAILED, "STORE_UNAVAILABLE"),
        (ExecutionStatus.FAILED, "EXECUTION_TIMEOUT"),
    ],
)
def test_a_stop_from_outside_before_the_call_is_not_counted(status: ExecutionStatus, code: str) -> None:
    outcome = make_outcome(status=status, error_code=code, external_object_refs=[], tool_run_ref=PRE_TOOL)
    assert stop_without_a_call(outcome, tries_failed=0) == code


@pytest.mark.parametrize("code", ["KILL_SWITCH_ENABLED", "EXECUTION_TIMEOUT"])
def test_a_stop_between_two_tries_counts(code: str) -> None:
    # Recorded as a stop before the (next) tool call, but the attempt did try the tool.
    outcome = make_outcome(
        status=ExecutionStatus.FAILED, error_code=code, external_object_refs=[], tool_run_ref=PRE_TOOL
    )
    assert stop_without_a_call(outcome, tries_failed=1) is None


@pytest.mark.parametrize(
    ("code", "ref"),
    [
        ("STORE_UNAVAILABLE", CALLED),  # the tool was called: its try counts
        ("EXECUTION_TIMEOUT", CALLED),
        ("VALIDATION_FAILED", CALLED),  # the tool refused the call
        ("MISSING_REQUIRED_PARAMETER", PRE_TOOL),  # the intent itself is wrong: a rerun fails again
        ("UNKNOWN_OUTCOME", CALLED),
        ("EXECUTION_ABANDONED", PRE_TOOL),  # a worker died, maybe mid-call
    ],
)
def test_every_other_ending_counts(code: str, ref: str) -> None:
    outcome = make_outcome(
        status=ExecutionStatus.FAILED, error_code=code, external_object_refs=[], tool_run_ref=ref
    )
    assert stop_without_a_call(outcome, tries_failed=0) is None


def test_no_outcome_counts() -> None:
    assert stop_without_a_call(None, tries_failed=0) is None
