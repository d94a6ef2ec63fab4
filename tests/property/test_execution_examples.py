"""Interleavings the execution machine (``test_execution_machine.py``) found, kept as examples.

Each test is a counterexample the machine shrank, written out move by move on the same driver, so
that it runs on every pass whatever the machine draws next time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fulfill.domain.models import ApprovalStatus, ExecutionStatus
from fulfill.usecases import admin
from fulfill.usecases import intents as intent_cases
from fulfill.usecases.intents import CreateIntent
from tests.property.test_execution_machine import ACCOUNT, START_EPOCH, admin_of, approver_of
from tests.support.chain_driver import ChainService, Phase, WorkflowRun, chain_service, read_intent_rows

TENANT = "t1"


class Stops:
    """What the test stopped, as the gateway's check for a call made after a stop."""

    def __init__(self) -> None:
        self.global_stop = False
        self.cancelled: set[str] = set()

    def observed(self, _tenant_id: str, intent_id: str) -> bool:
        return self.global_stop or intent_id in self.cancelled


@pytest.fixture
def stops() -> Stops:
    return Stops()


@pytest.fixture
def service(stops: Stops) -> Iterator[ChainService]:
    with chain_service(stops.observed, start_epoch=START_EPOCH) as running:
        yield running


def approved_task(service: ChainService, intent_id: str = "ai-1") -> WorkflowRun:
    intent_cases.create_intent(
        service.context,
        admin_of(TENANT),
        CreateIntent(
            action_intent_id=intent_id,
            action_type="CREATE_INTERNAL_TASK",
            account_id=ACCOUNT,
            parameters={"title": "call the customer back"},
        ),
    )
    intent_cases.approve_intent(service.context, approver_of(TENANT), intent_id)
    (run,) = [run for run in service.driver.runs.values() if run.request.action_intent_id == intent_id]
    return run


def crash_after_the_write(service: ChainService, run: WorkflowRun) -> str:
    """PrepareToolCall, then InvokeTool: the call is made and writes, and the process dies before
    the step's result is kept. Returns the written object's idempotency key."""
    service.driver.step(run)
    assert run.phase is Phase.INVOKE
    service.driver.crash(run)
    assert run.phase is Phase.INVOKE
    (key,) = service.gateway.writes
    return key


def test_a_replayed_record_outcome_changes_nothing(service: ChainService) -> None:
    run = approved_task(service)
    service.driver.run_to_end(run)
    before = read_intent_rows(service.store, TENANT, "ai-1")
    again = service.driver.replay_record(run)
    assert run.recorded is not None
    assert again.outcome == run.recorded.outcome
    assert read_intent_rows(service.store, TENANT, "ai-1") == before


def test_a_crash_after_the_write_is_recovered_by_calling_again_with_the_same_key(
    service: ChainService,
) -> None:
    run = approved_task(service)
    key = crash_after_the_write(service, run)
    service.driver.run_to_end(run)
    assert run.recorded is not None
    outcome = run.recorded.outcome
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.idempotency_key == key
    assert outcome.external_object_refs == [service.gateway.writes[key]]
    assert len(service.gateway.calls) == 2  # the same call again; the connector deduplicated it
    assert len(service.gateway.writes) == 1


# The machine's first counterexamples: a call that wrote, whose InvokeTool result was lost in a crash,
# then a stop (a cancel, a kill switch, or the attempt's budget spent) before recovery. The replayed
# InvokeTool reads the stop and records CANCELLED (or FAILED, EXECUTION_TIMEOUT) "before its tool
# call", with no ref; the object stays written, named by no
# outcome, and so never compensated. Telling such a replay from a first call needs a mark written
# before every call leaves (today only targets that do not deduplicate get one: sent_calls.py),
# one more write per tool call; the decision is left to the engine's owners.
KNOWN_GAP = pytest.mark.xfail(
    strict=True,
    reason="a write whose InvokeTool result was lost in a crash is recorded as stopped before its call",
)


@KNOWN_GAP
def test_a_cancel_after_a_lost_write_leaves_the_write_on_record(service: ChainService, stops: Stops) -> None:
    run = approved_task(service)
    key = crash_after_the_write(service, run)
    intent_cases.cancel_intent(service.context, admin_of(TENANT), "ai-1")
    stops.cancelled.add("ai-1")
    service.driver.run_to_end(run)
    rows = read_intent_rows(service.store, TENANT, "ai-1")
    assert rows.approval_status == ApprovalStatus.CANCELLED.value
    outcome = rows.outcomes[1]
    assert outcome.idempotency_key == key
    assert outcome.external_object_refs == [service.gateway.writes[key]]
    assert run.compensation is not None, "a cancelled write is compensated"


@KNOWN_GAP
def test_a_kill_switch_after_a_lost_write_leaves_the_write_on_record(
    service: ChainService, stops: Stops
) -> None:
    run = approved_task(service)
    key = crash_after_the_write(service, run)
    admin.put_kill_switches(
        service.context, admin.KillSwitches(global_stop=True, disabled_action_types=[]), changed_by="ops"
    )
    stops.global_stop = True
    service.driver.run_to_end(run)
    outcome = read_intent_rows(service.store, TENANT, "ai-1").outcomes[1]
    assert outcome.external_object_refs == [service.gateway.writes[key]]


def test_the_replay_after_a_lost_write_makes_no_call_once_stopped(
    service: ChainService, stops: Stops
) -> None:
    """What does hold in the counterexample: no call leaves after the stop, and the execution ends
    visibly (CANCELLED, its ledger entry and its signal)."""
    run = approved_task(service)
    crash_after_the_write(service, run)
    intent_cases.cancel_intent(service.context, admin_of(TENANT), "ai-1")
    stops.cancelled.add("ai-1")
    service.driver.run_to_end(run)
    assert [call.after_stop for call in service.gateway.calls] == [False]
    rows = read_intent_rows(service.store, TENANT, "ai-1")
    assert rows.outcomes[1].status is ExecutionStatus.CANCELLED
    assert rows.outcomes[1].error_code == "INTENT_CANCELLED"
    assert rows.entries("EXECUTION_CANCELLED", 1)
    assert [signal.attempt for signal in rows.signals] == [1]


@KNOWN_GAP
def test_a_budget_spent_after_a_lost_write_leaves_the_write_on_record(service: ChainService) -> None:
    run = approved_task(service)
    key = crash_after_the_write(service, run)
    service.clock.advance(301)  # the attempt's budget is 300 s
    service.driver.run_to_end(run)
    outcome = read_intent_rows(service.store, TENANT, "ai-1").outcomes[1]
    assert outcome.error_code == "EXECUTION_TIMEOUT"
    assert outcome.external_object_refs == [service.gateway.writes[key]]
