"""The sent-call protocol, for calls that must never be sent twice: mark, read the mark on a
replay, settle; and what it says when it gives up."""

from __future__ import annotations

import logging

import pytest

from fulfill.domain.errors import ErrorClass
from fulfill.domain.execution import RecordedOutcome, ToolCall, outcome_from_tool_result
from fulfill.domain.models import ExecutionPolicy, ExecutionStatus
from fulfill.domain.targets import UNKNOWN_OUTCOME
from fulfill.engine import steps
from tests.support.memory_steps import Crash, World, crashing, failure, run_chain
from tests.unit.factories import make_intent

TOOL = "internal.create_task"


def _call(world: World, **fields: object) -> ToolCall:
    world.confirm.add(TOOL)
    intent = world.add_intent(make_intent(**fields))
    call = steps.prepare_tool_call(world.deps, world.accept(intent))
    assert isinstance(call, ToolCall)
    return call


def _mark(world: World) -> object:
    return world.store.tables.remote_calls.get(("t1", "acc_1", "ai_1", 1))


def test_a_call_lost_in_a_crash_is_never_sent_again(world: World) -> None:
    call = _call(world)
    with crashing(world.gateway), pytest.raises(Crash):
        steps.invoke_tool(world.deps, call)
    assert len(world.gateway.calls) == 1
    # The replayed step finds the mark without an answer: the outcome is unknown, nothing is sent.
    result = steps.invoke_tool(world.deps, call)
    assert not result.success
    assert result.error is not None
    assert result.error.error_code == UNKNOWN_OUTCOME
    assert f"check internal for idempotency key {call.idempotency_key}" in result.error.error_message
    assert len(world.gateway.calls) == 1
    recorded = steps.record_outcome(world.deps, outcome_from_tool_result(result))
    assert recorded.outcome.error_code == UNKNOWN_OUTCOME
    assert recorded.outcome.status is ExecutionStatus.AMBIGUOUS
    ledger = [e.event_type for e in world.store.uow().executions.list_ledger("t1", "ai_1")]
    assert "OUTCOME_UNKNOWN" in ledger
    assert "ACTION_AMBIGUOUS" in ledger


def test_a_replay_after_the_answer_gives_the_same_answer_without_calling(world: World) -> None:
    call = _call(world)
    first = steps.invoke_tool(world.deps, call)
    assert first.success
    assert steps.invoke_tool(world.deps, call) == first
    assert len(world.gateway.calls) == 1


def test_a_retryable_failure_clears_the_mark_so_the_retry_sends_it(world: World) -> None:
    world.gateway.answers = [failure(ErrorClass.DOWNSTREAM, "UNAVAILABLE")]
    world.confirm.add(TOOL)
    recorded = run_chain(
        world.deps,
        world.accept(world.add_intent(make_intent(execution_policy=ExecutionPolicy(retry_count=1)))),
    )
    assert isinstance(recorded, RecordedOutcome)
    assert recorded.outcome.status is ExecutionStatus.SUCCEEDED
    assert len(world.gateway.calls) == 2


def test_a_refusal_for_certain_keeps_its_answer(world: World) -> None:
    world.gateway.answers = [failure(ErrorClass.VALIDATION, "REFUSED")]
    call = _call(world)
    assert not steps.invoke_tool(world.deps, call).success
    assert not steps.invoke_tool(world.deps, call).success
    assert len(world.gateway.calls) == 1


def test_a_mark_that_cannot_be_written_means_the_call_is_not_sent(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    call = _call(world)
    original = world.store.write

    def failing_write() -> object:  # every write fails: the first one is the mark
        world.store.fail_next(1)
        return original()

    world.store.write = failing_write  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING), pytest.raises(steps.RetryableToolFailure) as raised:
        steps.invoke_tool(world.deps, call)
    assert raised.value.draft.error is not None
    assert raised.value.draft.error.error_code == "STORE_UNAVAILABLE"
    assert world.gateway.calls == []
    assert "is not sent: its mark could not be written" in caplog.text


def test_an_answer_that_cannot_be_written_leaves_the_outcome_unknown(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    call = _call(world)

    def store_goes_down() -> None:
        world.store.fail_next(10)

    world.gateway.before_answer = store_goes_down
    with caplog.at_level(logging.WARNING):
        assert steps.invoke_tool(world.deps, call).success  # the answer itself still comes back
    assert "gave up recording the answer of the call to internal.create_task" in caplog.text
    world.store.fail_next(0)
    world.gateway.before_answer = None
    replayed = steps.invoke_tool(world.deps, call)
    assert replayed.error is not None
    assert replayed.error.error_code == UNKNOWN_OUTCOME
    assert len(world.gateway.calls) == 1


def test_a_mark_that_cannot_be_read_means_the_call_is_not_sent(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    call = _call(world)
    world.store.fail_next(1)
    with caplog.at_level(logging.WARNING), pytest.raises(steps.RetryableToolFailure):
        steps.invoke_tool(world.deps, call)
    assert world.gateway.calls == []
    assert "whether it was sent before could not be read" in caplog.text
    assert _mark(world) is None
