"""The approval is bound to the exact action: the steps recompute the intent's hash before its
tool call and refuse (FAILED ``APPROVAL_MISMATCH``, no call) when it is not the approved one;
the hash is on the timeline and in the outcome. In-memory store, fake gateway."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from fulfill.domain.action_hash import action_hash, prefix
from fulfill.domain.errors import ErrorClass
from fulfill.domain.execution import (
    ExecutionStopped,
    OutcomeDraft,
    PreflightPassed,
    RecordedOutcome,
    StartedExecution,
    ToolCall,
    outcome_draft,
)
from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalStatus,
    ExecutionStatus,
    LedgerEntry,
)
from fulfill.engine import steps
from tests.support.memory_steps import World, run_chain
from tests.unit.factories import make_intent


def _approved(world: World, **fields: Any) -> ActionIntentV1:
    intent = make_intent(**fields)
    return world.add_intent(intent.model_copy(update={"action_hash": action_hash(intent)}))


def _tamper(world: World, intent_id: str = "ai_1", **changes: Any) -> ActionIntentV1:
    """Change the stored intent behind its approval's back (its recorded hash stays)."""
    with world.store.write() as uow:
        stored = uow.intents.get_intent("t1", intent_id, for_update=True)
        assert stored is not None
        changed = stored.model_copy(update=changes)
        uow.intents.save_intent(changed)
    return changed


def _ledger(world: World, intent_id: str = "ai_1") -> dict[str, LedgerEntry]:
    with world.store.read() as uow:
        return {entry.event_type: entry for entry in uow.executions.list_ledger("t1", intent_id)}


def _outcome(recorded: object) -> ActionOutcomeV1:
    assert isinstance(recorded, RecordedOutcome)
    return recorded.outcome


def _assert_mismatch(world: World, outcome: ActionOutcomeV1, approved: str, actual: str) -> None:
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.FAILED, "APPROVAL_MISMATCH")
    assert outcome.error_class is ErrorClass.VALIDATION
    assert outcome.error_message is not None
    assert prefix(approved) in outcome.error_message
    assert prefix(actual) in outcome.error_message
    assert outcome.tool_run_ref.startswith("pre-tool-")
    assert world.gateway.calls == []
    failed = _ledger(world)["ACTION_FAILED"]
    assert failed.data["error_code"] == "APPROVAL_MISMATCH"


def test_an_unchanged_approved_intent_runs_and_its_hash_is_on_the_timeline_and_in_the_outcome(
    world: World,
) -> None:
    intent = _approved(world, parameters={"title": "t"})
    expected = action_hash(intent)
    outcome = _outcome(run_chain(world.deps, world.accept(intent)))
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.action_hash == expected
    ledger = _ledger(world)
    assert ledger["EXECUTION_STARTED"].data["action_hash"] == expected
    assert ledger["ACTION_EXECUTED"].data["action_hash"] == expected
    assert len(world.gateway.calls) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"parameters": {"title": "changed after the approval"}},
        {"registry_version": 2},
        {"account_id": "acc_other"},
        {"expires_at_epoch": 2_000_000_500},
    ],
    ids=["parameters", "registry-version", "account", "expiry"],
)
def test_an_intent_changed_after_its_approval_fails_without_a_call(
    world: World, change: dict[str, Any]
) -> None:
    intent = _approved(world, parameters={"title": "approved"})
    request = world.accept(intent)
    changed = _tamper(world, **change)
    outcome = _outcome(run_chain(world.deps, request))
    _assert_mismatch(world, outcome, approved=action_hash(intent), actual=action_hash(changed))
    # Nothing was mapped: the outcome carries the hash of the intent as it was found.
    assert outcome.action_hash == action_hash(changed)
    assert _ledger(world)["EXECUTION_STARTED"].data["action_hash"] == action_hash(intent)


def test_a_change_while_the_call_waits_at_the_connectors_gate_stops_it(world: World) -> None:
    """The last read before the call (the gate's recheck, then the one after the wait) finds it."""
    intent = _approved(world)
    world.gate.waits = True
    world.gate.on_wait = lambda: _tamper(world, parameters={"title": "swapped while waiting"})
    outcome = _outcome(run_chain(world.deps, world.accept(intent)))
    changed = action_hash(intent.model_copy(update={"parameters": {"title": "swapped while waiting"}}))
    _assert_mismatch(world, outcome, approved=action_hash(intent), actual=changed)
    assert world.gate.sent == 0
    # The call that was refused had been built from the approved action.
    assert outcome.tool_name == "internal.create_task"
    assert outcome.action_hash == action_hash(intent)


def test_a_change_between_the_mapping_and_the_call_stops_it(world: World) -> None:
    intent = _approved(world)
    started = steps.start_execution(world.deps, world.accept(intent))
    assert isinstance(started, StartedExecution)
    call = steps.map_action_to_tool(world.deps, steps.validate_preflight(world.deps, started.context))
    assert call.action_hash == action_hash(intent)
    _tamper(world, parameters={"title": "after the mapping"})
    with pytest.raises(ExecutionStopped) as stop:
        steps.invoke_tool(world.deps, call)
    assert stop.value.draft.error is not None
    assert stop.value.draft.error.error_code == "APPROVAL_MISMATCH"
    assert world.gateway.calls == []


def test_a_call_built_from_another_action_is_refused(world: World) -> None:
    intent = _approved(world)
    started = steps.start_execution(world.deps, world.accept(intent))
    assert isinstance(started, StartedExecution)
    checked = steps.validate_preflight(world.deps, started.context)
    other = intent.model_copy(update={"parameters": {"title": "not approved"}})
    call = steps.map_action_to_tool(world.deps, PreflightPassed(context=checked.context, intent=other))
    with pytest.raises(ExecutionStopped) as stop:
        steps.invoke_tool(world.deps, call)
    error = stop.value.draft.error
    assert error is not None
    assert error.error_code == "APPROVAL_MISMATCH"
    assert prefix(action_hash(other)) in error.error_message
    assert world.gateway.calls == []


def test_a_call_checkpointed_without_a_hash_still_checks_the_intent(world: World) -> None:
    """A ToolCall from before the hash was kept (``action_hash`` None) runs when the intent is
    intact, and is stopped when it is not."""
    intent = _approved(world)
    started = steps.start_execution(world.deps, world.accept(intent))
    assert isinstance(started, StartedExecution)
    call = steps.map_action_to_tool(world.deps, steps.validate_preflight(world.deps, started.context))
    old = call.model_copy(update={"action_hash": None})
    assert steps.invoke_tool(world.deps, old).success
    _tamper(world, parameters={"title": "later"})
    with pytest.raises(ExecutionStopped):
        steps.invoke_tool(world.deps, old)
    assert len(world.gateway.calls) == 1


def test_an_intent_approved_before_hashes_were_recorded_runs_unchecked(world: World) -> None:
    intent = world.add_intent(make_intent())
    assert intent.action_hash is None
    request = world.accept(intent)
    changed = _tamper(world, parameters={"title": "nothing recorded what was approved"})
    outcome = _outcome(run_chain(world.deps, request))
    assert outcome.status is ExecutionStatus.SUCCEEDED
    # The outcome still says which action ran; the start says no approval hash was recorded.
    assert outcome.action_hash == action_hash(changed)
    assert "action_hash" not in _ledger(world)["EXECUTION_STARTED"].data
    assert world.gateway.calls[0].arguments["title"] == "nothing recorded what was approved"


def test_a_cancelled_intent_stops_cancelled_before_its_hash_is_compared(world: World) -> None:
    """The hash check does not hide a cancellation: a cancelled intent is CANCELLED."""
    intent = _approved(world)
    started = steps.start_execution(world.deps, world.accept(intent))
    assert isinstance(started, StartedExecution)
    call = steps.map_action_to_tool(world.deps, steps.validate_preflight(world.deps, started.context))
    _tamper(world, approval_status=ApprovalStatus.CANCELLED)
    with pytest.raises(ExecutionStopped) as stop:
        steps.invoke_tool(world.deps, call)
    assert stop.value.draft.status is ExecutionStatus.CANCELLED
    assert world.gateway.calls == []


def test_a_call_pickled_by_an_earlier_version_reads_as_one_without_a_hash(world: World) -> None:
    """DBOS keeps step outputs pickled: a ToolCall or OutcomeDraft checkpointed before the hash
    was kept (a workflow in flight across an upgrade) unpickles with ``action_hash`` None, as it
    would from JSON, and the steps can read it."""
    intent = _approved(world)
    started = steps.start_execution(world.deps, world.accept(intent))
    assert isinstance(started, StartedExecution)
    call = steps.map_action_to_tool(world.deps, steps.validate_preflight(world.deps, started.context))
    assert pickle.loads(pickle.dumps(call)) == call
    old_state = call.__getstate__()
    del old_state["__dict__"]["action_hash"]
    old = ToolCall.__new__(ToolCall)
    old.__setstate__(old_state)  # what unpickling the earlier version's bytes does
    assert old.action_hash is None
    assert old == call.model_copy(update={"action_hash": None})
    draft = outcome_draft(started.context, ExecutionStatus.FAILED, run_ref="r", call=old)
    draft_state = draft.__getstate__()
    del draft_state["__dict__"]["action_hash"]
    old_draft = OutcomeDraft.__new__(OutcomeDraft)
    old_draft.__setstate__(draft_state)
    assert old_draft.action_hash is None
    assert steps.invoke_tool(world.deps, old).success
