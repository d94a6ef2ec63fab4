"""The whole step chain against the in-memory store, a fake gateway and an open gate: every way
an execution can end, each recorded once with its ledger entries, signal and outbox message."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fulfill.domain.errors import ErrorClass
from fulfill.domain.execution import (
    DuplicateExecution,
    ExecutionContext,
    ExecutionRequest,
    ExecutionStopped,
    PreflightPassed,
    RecordedOutcome,
    StartedExecution,
    ToolCall,
    outcome_draft,
)
from fulfill.domain.flowcontrol import WaitReason, connector_of
from fulfill.domain.models import (
    ActionIntentV1,
    ApprovalStatus,
    AttemptStatus,
    ExecutionPolicy,
    ExecutionStatus,
    GlobalExecutionConfig,
    TenantExecutionConfig,
)
from fulfill.engine import steps
from fulfill.ports.store import StoreUnavailable
from tests.support.memory_steps import World, failure, run_chain
from tests.unit.factories import make_intent


def _intent(world: World, intent_id: str = "ai_1", **fields: Any) -> ActionIntentV1:
    return world.add_intent(make_intent(action_intent_id=intent_id, **fields))


def _run(world: World, intent_id: str = "ai_1", **fields: Any) -> RecordedOutcome:
    recorded = run_chain(world.deps, world.accept(_intent(world, intent_id, **fields)))
    assert isinstance(recorded, RecordedOutcome)
    return recorded


def _ledger(world: World, intent_id: str = "ai_1") -> list[str]:
    with world.store.read() as uow:
        return [entry.event_type for entry in uow.executions.list_ledger("t1", intent_id)]


def _assert_recorded_once(world: World, recorded: RecordedOutcome) -> None:
    """DESIGN §3: a terminal outcome with its ledger entries, one signal and its outbox message."""
    outcome = recorded.outcome
    intent_id = outcome.action_intent_id
    with world.store.read() as uow:
        attempt = uow.executions.get_attempt("t1", outcome.account_id, intent_id)
        signals = uow.executions.list_signals("t1", intent_id)
        stored = uow.executions.get_outcome("t1", outcome.account_id, intent_id, outcome.attempt_count)
    assert stored == outcome
    assert attempt is not None
    assert attempt.status.value == outcome.status.value
    ledger = _ledger(world, intent_id)
    assert ledger.count("EXECUTION_STARTED") == 1
    assert ledger.count("SIGNAL") == 1
    assert ledger[-1] == "SIGNAL"
    [signal] = signals
    message = world.store.tables.messages[f"signal:t1/{signal.signalId}"]
    assert message.topic == steps.SIGNAL_TOPIC
    assert message.payload["signal"]["signalId"] == signal.signalId
    assert {destination for (_, destination) in world.store.tables.deliveries} == {"fulfill-engine-test"}
    assert world.store.tables.intents[("t1", intent_id)].execution_status == outcome.status.value


# --- success -------------------------------------------------------------------------------------


def test_success_writes_once_and_records_everything(world: World) -> None:
    recorded = _run(world, parameters={"title": "t", "description": "d", "ignored": 1})
    outcome = recorded.outcome
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.tool_name == "internal.create_task"
    [call] = world.gateway.calls
    assert call.arguments == {
        "title": "t",
        "description": "d",
        "tenant_id": "t1",
        "account_id": "acc_1",
        "action_intent_id": "ai_1",
        "idempotency_key": outcome.idempotency_key,
    }
    assert [ref.object_id for ref in outcome.external_object_refs] == list(world.gateway.objects.values())
    assert _ledger(world) == ["EXECUTION_STARTED", "ACTION_EXECUTED", "SIGNAL"]
    _assert_recorded_once(world, recorded)
    assert world.wakeups == 1  # the relay is told at once
    assert not recorded.cancelled_after_write


def test_record_outcome_is_idempotent_on_replay(world: World) -> None:
    recorded = _run(world)
    world.clock.advance(60)
    # RecordOutcome replayed after a crash, even with another draft: the stored outcome wins and
    # nothing is written twice (no second ledger entry, signal, outbox message or wake-up).
    other = outcome_draft(_context_of(recorded), ExecutionStatus.FAILED, run_ref="other")
    assert steps.record_outcome(world.deps, other) == recorded
    _assert_recorded_once(world, recorded)
    assert len(world.store.tables.messages) == 1
    assert world.wakeups == 1


def _context_of(recorded: RecordedOutcome) -> ExecutionContext:
    outcome = recorded.outcome
    return ExecutionContext(
        action_intent_id=outcome.action_intent_id,
        tenant_id=outcome.tenant_id,
        account_id=outcome.account_id,
        workflow_id="exec-t1/ai_1",
        attempt_count=outcome.attempt_count,
        attempt_id="any",
        trace_id=outcome.trace_id,
        started_at=outcome.started_at,
        deadline_epoch=0.0,
    )


def test_the_steps_hand_over_through_json(world: World) -> None:
    """Each boundary value survives the checkpoint's JSON round trip (the contract test's rule)."""
    request = world.accept(_intent(world))
    started = steps.start_execution(world.deps, request)
    assert isinstance(started, StartedExecution)
    context = StartedExecution.model_validate_json(started.model_dump_json()).context
    checked = PreflightPassed.model_validate_json(
        steps.validate_preflight(world.deps, context).model_dump_json()
    )
    call = ToolCall.model_validate_json(steps.map_action_to_tool(world.deps, checked).model_dump_json())
    assert steps.invoke_tool(world.deps, call).success


# --- duplicates ----------------------------------------------------------------------------------


def test_a_foreign_request_is_a_duplicate_and_writes_nothing(world: World) -> None:
    request = world.accept(_intent(world))
    steps.start_execution(world.deps, request)
    foreign = request.model_copy(update={"attempt_id": "attempt_not_the_lock", "workflow_id": "exec-other"})
    duplicate = run_chain(world.deps, foreign)
    assert isinstance(duplicate, DuplicateExecution)
    assert (duplicate.existing_workflow_id, duplicate.existing_status) == (
        request.workflow_id,
        ExecutionStatus.RUNNING,
    )
    assert world.gateway.calls == []
    assert world.store.tables.outcomes == {}


def test_a_request_without_a_lock_is_a_duplicate(world: World) -> None:
    _intent(world)
    request = ExecutionRequest(
        action_intent_id="ai_1", tenant_id="t1", account_id="acc_1", workflow_id="w", attempt_id="never"
    )
    duplicate = steps.start_execution(world.deps, request)
    assert isinstance(duplicate, DuplicateExecution)
    assert duplicate.existing_status is ExecutionStatus.PENDING


def test_start_replayed_after_a_crash_resumes_the_same_attempt(world: World) -> None:
    request = world.accept(_intent(world))
    first = steps.start_execution(world.deps, request)
    world.clock.advance(5)
    assert steps.start_execution(world.deps, request) == first
    assert _ledger(world) == ["EXECUTION_STARTED"]


def test_a_finished_attempt_is_never_run_again(world: World) -> None:
    request = world.accept(_intent(world))
    run_chain(world.deps, request)
    assert isinstance(run_chain(world.deps, request), DuplicateExecution)
    assert len(world.gateway.calls) == 1


# --- stops before the tool -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrange", "status", "code"),
    [
        (
            lambda w: w.settings.__setattr__("global_execution_stop", True),
            ExecutionStatus.CANCELLED,
            "KILL_SWITCH_ENABLED",
        ),
        (lambda w: _put_global(w, global_stop=True), ExecutionStatus.CANCELLED, "KILL_SWITCH_ENABLED"),
        (
            lambda w: _put_global(w, disabled_action_types=["CREATE_INTERNAL_TASK"]),
            ExecutionStatus.CANCELLED,
            "KILL_SWITCH_ENABLED",
        ),
        (lambda w: _put_tenant(w, execution_enabled=False), ExecutionStatus.CANCELLED, "KILL_SWITCH_ENABLED"),
        (
            lambda w: _put_tenant(w, disabled_action_types=["CREATE_INTERNAL_TASK"]),
            ExecutionStatus.CANCELLED,
            "KILL_SWITCH_ENABLED",
        ),
    ],
)
def test_a_kill_switch_on_before_the_start_stops_it(
    world: World, arrange: Any, status: ExecutionStatus, code: str
) -> None:
    arrange(world)
    recorded = _run(world)
    assert (recorded.outcome.status, recorded.outcome.error_code) == (status, code)
    assert world.gateway.calls == []
    _assert_recorded_once(world, recorded)


def test_a_tenant_switch_leaves_other_tenants_alone(world: World) -> None:
    _put_tenant(world, tenant_id="t2", execution_enabled=False)
    assert _run(world).outcome.status is ExecutionStatus.SUCCEEDED


def _put_global(world: World, **fields: Any) -> None:
    with world.store.write() as uow:
        uow.killswitches.put_global(GlobalExecutionConfig(**fields), now=world.clock.now_iso())


def _put_tenant(world: World, tenant_id: str = "t1", **fields: Any) -> None:
    with world.store.write() as uow:
        uow.killswitches.put_tenant(
            TenantExecutionConfig(tenant_id=tenant_id, **fields), now=world.clock.now_iso()
        )


def _cancel(world: World, intent_id: str = "ai_1") -> None:
    with world.store.write() as uow:
        intent = uow.intents.get_intent("t1", intent_id)
        assert intent is not None
        assert uow.intents.transition_approval(
            intent, to_status=ApprovalStatus.CANCELLED, now=world.clock.now_iso()
        )


def _stopped_at_invoke(world: World, between: Any) -> RecordedOutcome:
    """Run up to MapActionToTool, do ``between``, then InvokeTool and RecordOutcome."""
    call = steps.prepare_tool_call(world.deps, world.accept(_intent(world)))
    assert isinstance(call, ToolCall)
    between()
    with pytest.raises(ExecutionStopped) as stop:
        steps.invoke_tool(world.deps, call)
    return steps.record_outcome(world.deps, stop.value.draft)


def test_a_kill_switch_after_the_preflight_stops_it_before_the_call(world: World) -> None:
    recorded = _stopped_at_invoke(world, lambda: _put_global(world, global_stop=True))
    outcome = recorded.outcome
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.CANCELLED, "KILL_SWITCH_ENABLED")
    assert outcome.tool_name == "internal.create_task"  # it got as far as the mapping
    assert outcome.idempotency_key is not None
    assert world.gateway.calls == []
    _assert_recorded_once(world, recorded)


def test_a_cancel_after_the_preflight_stops_it_before_the_call(world: World) -> None:
    recorded = _stopped_at_invoke(world, lambda: _cancel(world))
    assert (recorded.outcome.status, recorded.outcome.error_code) == (
        ExecutionStatus.CANCELLED,
        "INTENT_CANCELLED",
    )
    assert world.gateway.calls == []
    _assert_recorded_once(world, recorded)


def test_a_switch_pulled_while_waiting_at_the_gate_stops_it(world: World) -> None:
    world.gate.waits = True
    world.gate.on_wait = lambda: _put_tenant(world, execution_enabled=False)
    recorded = _run(world)
    assert (recorded.outcome.status, recorded.outcome.error_code) == (
        ExecutionStatus.CANCELLED,
        "KILL_SWITCH_ENABLED",
    )
    assert world.gateway.calls == []


def test_a_call_that_waited_at_the_gate_reads_the_switches_again(world: World) -> None:
    world.gate.waits = True
    assert _run(world).outcome.status is ExecutionStatus.SUCCEEDED
    assert len(world.gateway.calls) == 1


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"approval_status": ApprovalStatus.CANCELLED}, ExecutionStatus.CANCELLED, "INTENT_CANCELLED"),
        ({"approval_status": ApprovalStatus.PENDING_APPROVAL}, ExecutionStatus.FAILED, "INTENT_NOT_APPROVED"),
        ({"expires_at_epoch": 1}, ExecutionStatus.EXPIRED, "INTENT_EXPIRED"),
        ({"registry_version": 7}, ExecutionStatus.FAILED, "TOOL_MAPPING_NOT_FOUND"),
        ({"parameters": {}}, ExecutionStatus.FAILED, "MISSING_REQUIRED_PARAMETER"),
    ],
)
def test_validation_failures_stop_before_the_call(
    world: World, fields: dict[str, Any], status: ExecutionStatus, code: str
) -> None:
    recorded = _run(world, **fields)
    assert (recorded.outcome.status, recorded.outcome.error_code) == (status, code)
    assert world.gateway.calls == []
    _assert_recorded_once(world, recorded)


def test_an_intent_gone_after_the_start_fails_not_found(world: World) -> None:
    request = world.accept(_intent(world))
    started = steps.start_execution(world.deps, request)
    assert isinstance(started, StartedExecution)
    del world.store.tables.intents[("t1", "ai_1")]
    with pytest.raises(ExecutionStopped) as stop:
        steps.validate_preflight(world.deps, started.context)
    assert stop.value.draft.error is not None
    assert stop.value.draft.error.error_code == "INTENT_NOT_FOUND"


def test_parameters_that_cannot_be_canonicalised_fail_the_mapping(world: World) -> None:
    started = steps.start_execution(world.deps, world.accept(_intent(world)))
    assert isinstance(started, StartedExecution)
    checked = steps.validate_preflight(world.deps, started.context)
    checked = checked.model_copy(
        update={"intent": checked.intent.model_copy(update={"parameters": {"title": math.nan}})}
    )
    with pytest.raises(ExecutionStopped) as stop:
        steps.map_action_to_tool(world.deps, checked)
    assert stop.value.draft.error is not None
    assert stop.value.draft.error.error_code == "INVALID_PARAMETER_TYPE"


def test_an_unexpected_failure_after_the_start_becomes_a_failed_outcome(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_deps: Any, _checked: Any) -> Any:
        raise KeyError("a defect")

    monkeypatch.setattr(steps, "map_action_to_tool", broken)
    recorded = _run(world)
    assert (recorded.outcome.status, recorded.outcome.error_code) == (
        ExecutionStatus.FAILED,
        "EXECUTION_FAILED",
    )
    _assert_recorded_once(world, recorded)


# --- the tool's answers --------------------------------------------------------------------------


def test_a_business_failure_is_not_retried(world: World) -> None:
    world.gateway.answers = [failure(ErrorClass.VALIDATION, "VALIDATION_FAILED")]
    recorded = _run(world, execution_policy=ExecutionPolicy(retry_count=3))
    assert (recorded.outcome.status, recorded.outcome.error_code) == (
        ExecutionStatus.FAILED,
        "VALIDATION_FAILED",
    )
    assert len(world.gateway.calls) == 1
    _assert_recorded_once(world, recorded)


def test_a_transient_failure_is_retried_and_each_try_is_on_the_timeline(world: World) -> None:
    world.gateway.answers = [
        failure(ErrorClass.DOWNSTREAM, "UNAVAILABLE"),
        failure(ErrorClass.TIMEOUT, "TIMEOUT"),
    ]
    recorded = _run(world, execution_policy=ExecutionPolicy(retry_count=2))
    assert recorded.outcome.status is ExecutionStatus.SUCCEEDED
    assert len(world.gateway.calls) == 3
    assert {call.arguments["idempotency_key"] for call in world.gateway.calls} == {
        recorded.outcome.idempotency_key
    }
    assert len(world.gateway.objects) == 1
    # Outside DBOS every try is "try 1": one entry (its id is per try number).
    assert _ledger(world).count("TOOL_CALL_TRY_FAILED") == 1


def test_retries_run_out_into_a_failed_outcome(world: World) -> None:
    world.gateway.answer = lambda _call: failure(ErrorClass.DOWNSTREAM, "GATEWAY_UNAVAILABLE")
    recorded = _run(world, execution_policy=ExecutionPolicy(retry_count=1))
    outcome = recorded.outcome
    assert (outcome.status, outcome.error_class, outcome.error_code) == (
        ExecutionStatus.FAILED,
        ErrorClass.DOWNSTREAM,
        "GATEWAY_UNAVAILABLE",
    )
    assert len(world.gateway.calls) == 2
    _assert_recorded_once(world, recorded)


def test_a_rate_limited_answer_pauses_within_half_the_budget_left(world: World) -> None:
    world.settings.rate_limit_backoff_seconds = 1000.0
    world.gateway.answers = [failure(ErrorClass.RATE_LIMIT, "RATE_LIMIT")]
    recorded = _run(world, execution_policy=ExecutionPolicy(retry_count=1, timeout_seconds=60))
    assert recorded.outcome.status is ExecutionStatus.SUCCEEDED
    assert world.pauses == [pytest.approx(30.0, abs=0.01)]


def test_a_cancel_while_the_write_happened_asks_for_compensation(world: World) -> None:
    world.gateway.before_answer = lambda: _cancel(world)
    recorded = _run(world)
    assert recorded.outcome.status is ExecutionStatus.SUCCEEDED
    assert recorded.cancelled_after_write


# --- the budget ----------------------------------------------------------------------------------


def test_a_spent_budget_stops_before_the_call(world: World) -> None:
    call = steps.prepare_tool_call(
        world.deps, world.accept(_intent(world, execution_policy=ExecutionPolicy(timeout_seconds=30)))
    )
    assert isinstance(call, ToolCall)
    world.clock.advance(31)
    with pytest.raises(ExecutionStopped) as stop:
        steps.invoke_tool(world.deps, call)
    outcome = steps.record_outcome(world.deps, stop.value.draft).outcome
    assert (outcome.status, outcome.error_class, outcome.error_code) == (
        ExecutionStatus.FAILED,
        ErrorClass.TIMEOUT,
        "EXECUTION_TIMEOUT",
    )
    assert world.gateway.calls == []


def test_the_budget_spent_waiting_at_the_gate_says_what_it_waited_for(world: World) -> None:
    world.gate.expire = WaitReason.CIRCUIT_OPEN
    recorded = _run(world)
    assert recorded.outcome.error_code == "EXECUTION_TIMEOUT"
    assert "waiting for connector 'internal' (circuit open)" in (recorded.outcome.error_message or "")
    assert world.gateway.calls == []


def test_the_call_timeout_is_cut_to_the_budget_left(world: World) -> None:
    world.settings.gateway_call_timeout_seconds = 600.0
    _run(world, execution_policy=ExecutionPolicy(timeout_seconds=45))
    assert world.gateway.calls[0].timeout_seconds == 45.0


def test_the_gate_is_handed_the_view_read_with_the_switches_right_before_the_call(world: World) -> None:
    """One read of the store before the call takes the switches, the intent and the connector's
    gate view, and the gate decides on that view (it does not read its own)."""
    call = steps.prepare_tool_call(world.deps, world.accept(_intent(world)))
    assert isinstance(call, ToolCall)
    before = world.store.transactions
    assert steps.invoke_tool(world.deps, call).success
    assert world.store.transactions - before == 1
    with world.store.read() as uow:
        assert world.gate.views == [uow.connectors.gate_view(connector_of(call.tool_name), "t1")]


def test_a_store_outage_during_the_checks_is_waited_out_while_the_budget_lasts(world: World) -> None:
    call = steps.prepare_tool_call(world.deps, world.accept(_intent(world)))
    assert isinstance(call, ToolCall)
    world.store.fail_next(3)
    assert steps.invoke_tool(world.deps, call).success
    assert world.pauses == [0.1, 0.2, 0.5]


def test_a_store_outage_longer_than_the_budget_stops_before_the_call(world: World) -> None:
    call = steps.prepare_tool_call(
        world.deps, world.accept(_intent(world, execution_policy=ExecutionPolicy(timeout_seconds=2)))
    )
    assert isinstance(call, ToolCall)
    world.store.fail_next(100)
    with pytest.raises(ExecutionStopped) as stop:
        steps.invoke_tool(world.deps, call)
    error = stop.value.draft.error
    assert error is not None
    assert (error.error_code, "the kill switches could not be read" in error.error_message) == (
        "EXECUTION_TIMEOUT",
        True,
    )
    assert world.gateway.calls == []


def test_a_store_outage_at_the_start_is_raised_for_the_step_to_retry(world: World) -> None:
    request = world.accept(_intent(world))
    world.store.fail_next(1)
    with pytest.raises(StoreUnavailable):
        steps.prepare_tool_call(world.deps, request)
    assert world.store.tables.attempts[("t1", "acc_1", "ai_1")].attempt.status is AttemptStatus.QUEUED


def test_one_execution_reads_the_store_once_outside_its_writes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ValidatePreflight decides on the kill switches and the intent StartExecution read in its
    transaction, MapActionToTool maps with the registry entry read there too; the check before
    the call reads the switches and the intent in one read: one read besides the writes, not five."""
    request = world.accept(_intent(world))
    reads: list[int] = []
    read = world.store.read

    def counting_read() -> Any:
        reads.append(1)
        return read()

    monkeypatch.setattr(world.store, "read", counting_read)
    recorded = run_chain(world.deps, request)
    assert isinstance(recorded, RecordedOutcome)
    assert recorded.outcome.status is ExecutionStatus.SUCCEEDED
    assert len(reads) == 1


def test_the_preflight_decides_on_what_the_start_read_and_the_call_reads_it_again(world: World) -> None:
    """StartExecution's transaction reads the intent and the switches; ValidatePreflight, right
    after it in the same checkpoint, decides on those; a switch pulled after the start's
    transaction still stops the execution before its tool call."""
    started = steps.start_execution(world.deps, world.accept(_intent(world)))
    assert isinstance(started, StartedExecution)
    assert started.reads is not None
    assert started.reads.intent is not None
    assert started.reads.switches is not None
    _put_global(world, global_stop=True)
    call = steps.map_action_to_tool(world.deps, steps.validate_preflight(world.deps, started))
    with pytest.raises(ExecutionStopped) as stop:
        steps.invoke_tool(world.deps, call)
    error = stop.value.draft.error
    assert error is not None
    assert error.error_code == "KILL_SWITCH_ENABLED"
    assert world.gateway.calls == []


def test_the_mapping_uses_the_registry_entry_the_start_read_and_reads_it_without_one(
    world: World,
) -> None:
    """StartExecution's transaction reads the entry the intent is pinned to; MapActionToTool maps
    with it (no read of its own). Handed a checked intent without one (an older checkpoint's, a
    caller of its own), it reads the entry, and a missing one still stops the execution."""
    started = steps.start_execution(world.deps, world.accept(_intent(world)))
    assert isinstance(started, StartedExecution)
    assert started.reads is not None
    assert started.reads.entry is not None
    checked = steps.validate_preflight(world.deps, started)
    assert checked.entry == started.reads.entry
    pinned = (checked.intent.action_type, checked.intent.registry_version)
    entry = world.store.tables.registry.pop(pinned)  # gone from the store: only the read one maps
    call = steps.map_action_to_tool(world.deps, checked)
    assert call.tool_name == entry.tool_name
    with pytest.raises(ExecutionStopped) as stop:
        steps.map_action_to_tool(world.deps, checked.model_copy(update={"entry": None}))
    assert stop.value.draft.error is not None
    assert stop.value.draft.error.error_code == "TOOL_MAPPING_NOT_FOUND"
    world.store.tables.registry[pinned] = entry
    assert steps.map_action_to_tool(world.deps, checked.model_copy(update={"entry": None})) == call


def test_a_switch_on_when_the_start_read_it_stops_the_preflight(world: World) -> None:
    _put_tenant(world, execution_enabled=False)
    started = steps.start_execution(world.deps, world.accept(_intent(world)))
    assert isinstance(started, StartedExecution)
    _put_tenant(world, execution_enabled=True)  # too late: the preflight decides on the start's read
    with pytest.raises(ExecutionStopped) as stop:
        steps.validate_preflight(world.deps, started)
    assert stop.value.draft.error is not None
    assert stop.value.draft.error.error_code == "KILL_SWITCH_ENABLED"
