"""The compensation steps against the in-memory store: what is undone, with which key, and how a
call to a target that does not deduplicate goes through the same sent-call protocol."""

from __future__ import annotations

import pytest

from fulfill.domain.errors import ErrorClass
from fulfill.domain.execution import CompensationRequest, RecordedOutcome
from fulfill.domain.models import CompensationStatus
from fulfill.domain.targets import UNKNOWN_OUTCOME
from fulfill.engine import compensation
from tests.support.memory_steps import Crash, World, crashing, failure, run_chain
from tests.unit.factories import make_intent


def _succeeded(world: World) -> CompensationRequest:
    recorded = run_chain(world.deps, world.accept(world.add_intent(make_intent())))
    assert isinstance(recorded, RecordedOutcome)
    outcome = recorded.outcome
    return CompensationRequest(
        tenant_id="t1", account_id="acc_1", action_intent_id="ai_1", attempt_count=outcome.attempt_count
    )


def _ledger(world: World) -> list[str]:
    return [entry.event_type for entry in world.store.uow().executions.list_ledger("t1", "ai_1")]


def test_a_succeeded_write_is_undone_with_a_key_of_its_own(world: World) -> None:
    request = _succeeded(world)
    plan = compensation.begin_compensation(world.deps, request)
    assert plan is not None
    assert plan.tool_name == "internal.delete_task"
    result = compensation.invoke_compensation(world.deps, plan)
    assert result.completed
    undo = world.gateway.calls[-1]
    assert undo.tool_name == "internal.delete_task"
    assert undo.arguments["idempotency_key"] != plan.idempotency_key
    assert compensation.finish_compensation(world.deps, result) is CompensationStatus.COMPLETED
    assert _ledger(world)[-2:] == ["COMPENSATION_STARTED", "COMPENSATION_COMPLETED"]


def test_nothing_to_undo_without_a_write(world: World) -> None:
    world.gateway.answers = [failure(ErrorClass.VALIDATION, "REFUSED")]
    assert compensation.begin_compensation(world.deps, _succeeded(world)) is None


def test_a_lost_undo_on_a_target_that_does_not_deduplicate_is_not_sent_again(world: World) -> None:
    request = _succeeded(world)
    world.confirm.add("internal.delete_task")
    plan = compensation.begin_compensation(world.deps, request)
    assert plan is not None
    with crashing(world.gateway), pytest.raises(Crash):
        compensation.invoke_compensation(world.deps, plan)
    calls = len(world.gateway.calls)
    result = compensation.invoke_compensation(world.deps, plan)
    assert not result.completed
    assert result.error is not None
    assert result.error.error_code == UNKNOWN_OUTCOME
    assert len(world.gateway.calls) == calls
    assert compensation.finish_compensation(world.deps, result) is CompensationStatus.FAILED
    assert "COMPENSATION_OUTCOME_UNKNOWN" in _ledger(world)


def test_a_transient_undo_failure_is_retried(world: World) -> None:
    request = _succeeded(world)
    plan = compensation.begin_compensation(world.deps, request)
    assert plan is not None
    world.gateway.answers = [failure(ErrorClass.DOWNSTREAM, "UNAVAILABLE")]
    with pytest.raises(compensation.RetryableCompensationFailure):
        compensation.invoke_compensation(world.deps, plan)
    assert compensation.invoke_compensation(world.deps, plan).completed
