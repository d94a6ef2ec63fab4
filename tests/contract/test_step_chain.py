"""The state contract: the real output of each step validates as the next step's input, on the
success path and on every failure branch, and every failure branch produces an input that
RecordOutcome accepts (reference spec §13 items 1 and 6).

Steps run for real against a running service (database, MCP gateway over HTTP); every boundary
value goes through JSON, as a checkpoint would, before it is handed to the next step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel
from sqlalchemy import delete, event
from sqlalchemy.exc import OperationalError

from fulfill.clock import SystemClock
from fulfill.domain.action_hash import action_hash, prefix
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import (
    DuplicateExecution,
    ExecutionContext,
    ExecutionRequest,
    ExecutionStopped,
    OutcomeDraft,
    PreflightPassed,
    RecordedOutcome,
    StartedExecution,
    ToolCall,
    ToolResult,
    outcome_from_step_failure,
    outcome_from_tool_result,
)
from fulfill.domain.flowcontrol import Circuit, CircuitState
from fulfill.domain.models import (
    ActionOutcomeV1,
    ApprovalStatus,
    ExecutionPolicy,
    ExecutionStatus,
    GlobalExecutionConfig,
    LedgerEntry,
)
from fulfill.engine import steps
from fulfill.engine.intake import queued_attempt, request_for
from fulfill.engine.runtime import current
from fulfill.engine.steps import StepDeps
from fulfill.engine.workflow import step_deps
from fulfill.gateway.client import McpToolGateway
from fulfill.store import connectors, executions, intents, killswitches
from fulfill.store.tables import action_intents
from fulfill.tokens import ServiceTokens
from tests.support.harness import Harness, seed_intent
from tests.support.tamper import bind_stored, tamper_document

M = TypeVar("M", bound=BaseModel)


def through_json(value: BaseModel, model: type[M]) -> M:
    """What the next step receives: the previous output, serialised and validated as its input."""
    return model.model_validate_json(value.model_dump_json())


def deps() -> StepDeps:
    """What the workflow hands its steps, taken from the running service now (after any patch)."""
    return step_deps()


def lock(intent_id: str) -> ExecutionRequest:
    """Take the execution lock as intake does (a QUEUED attempt row); StartExecution's input."""
    rt = current()
    now = rt.clock.now()
    with rt.store.write() as uow:
        intent = uow.intents.get_intent("t1", intent_id)
        assert intent is not None
        attempt = queued_attempt(intent, now)
        assert uow.executions.insert_attempt(attempt, deadline_epoch=now + 300)
    return through_json(request_for(attempt), ExecutionRequest)


def start(intent_id: str) -> ExecutionContext:
    started = steps.start_execution(deps(), lock(intent_id))
    assert isinstance(started, StartedExecution)
    return through_json(started, StartedExecution).context


def stopped(step: Callable[[StepDeps, Any], Any], value: BaseModel) -> OutcomeDraft:
    with pytest.raises(ExecutionStopped) as stop:
        step(deps(), value)
    return through_json(stop.value.draft, OutcomeDraft)


def record(harness: Harness, draft: OutcomeDraft) -> ActionOutcomeV1:
    """RecordOutcome accepts the draft, writes every terminal record once, and is idempotent."""
    recorded = through_json(steps.record_outcome(deps(), draft), RecordedOutcome)
    assert steps.record_outcome(deps(), draft) == recorded
    assert not recorded.cancelled_after_write
    outcome = recorded.outcome
    context = draft.context
    with harness.db.read() as conn:
        attempt = executions.get_attempt(
            conn, context.tenant_id, context.account_id, context.action_intent_id
        )
        ledger = [
            e.event_type for e in executions.list_ledger(conn, context.tenant_id, context.action_intent_id)
        ]
    assert attempt is not None
    assert attempt.status.value == outcome.status.value
    assert ledger.count("EXECUTION_STARTED") == 1
    assert ledger[-1] == "SIGNAL"
    assert ledger.count("SIGNAL") == 1
    assert harness.signal_rows(context.action_intent_id) == 1
    assert harness.outcome_rows(context.action_intent_id) == 1
    return outcome


@pytest.fixture
def contract(shared: Harness) -> Iterator[Harness]:
    yield shared
    with shared.db.write() as conn:
        killswitches.put_global(conn, GlobalExecutionConfig(), now=shared.service.clock.now_iso())


def test_success_path(contract: Harness) -> None:
    seed_intent(contract, "ai_c_ok", parameters={"title": "t", "description": "d", "ignored": 1})
    bound = bind_stored(contract.db, "ai_c_ok")
    context = start("ai_c_ok")
    checked = through_json(steps.validate_preflight(deps(), context), PreflightPassed)
    call = through_json(steps.map_action_to_tool(deps(), checked), ToolCall)
    assert call.arguments == {
        "title": "t",
        "description": "d",
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai_c_ok",
        "idempotency_key": call.idempotency_key,
    }
    assert call.action_hash == bound.action_hash == action_hash(bound)
    result = through_json(steps.invoke_tool(deps(), call), ToolResult)
    assert result.success
    outcome = record(contract, through_json(outcome_from_tool_result(result), OutcomeDraft))
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.idempotency_key == call.idempotency_key
    assert outcome.tool_name == "internal.create_task"
    assert outcome.action_hash == bound.action_hash
    assert ActionOutcomeV1.model_validate_json(outcome.model_dump_json()) == outcome


def test_prepare_tool_call_is_the_three_first_steps_in_one_checkpoint(contract: Harness) -> None:
    """The workflow's first checkpoint: StartExecution ─▶ ValidatePreflight ─▶ MapActionToTool; its
    output is InvokeTool's input."""
    seed_intent(contract, "ai_c_prep", parameters={"title": "t"})
    call = through_json(steps.prepare_tool_call(deps(), lock("ai_c_prep")), ToolCall)
    assert call.context.workflow_id == "exec-t1/ai_c_prep"
    result = through_json(steps.invoke_tool(deps(), call), ToolResult)
    assert result.success
    outcome = record(contract, through_json(outcome_from_tool_result(result), OutcomeDraft))
    assert outcome.status is ExecutionStatus.SUCCEEDED


def test_start_execution_moves_the_queued_attempt_without_reading_it_first(contract: Harness) -> None:
    """One statement moves this request's QUEUED attempt to RUNNING and returns it; a re-run of
    the step (after a crash) finds nothing QUEUED and reads the RUNNING attempt as it stands,
    with the budget that started the first time."""
    seed_intent(contract, "ai_c_start_once")
    request = lock("ai_c_start_once")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(contract.db.engine, "before_cursor_execute", seen)
    try:
        first = steps.start_execution(deps(), request)
        reads_first = [s for s in statements if s.startswith("SELECT") and "FROM execution_attempts" in s]
        statements.clear()
        again = steps.start_execution(deps(), request)
        reads_again = [s for s in statements if s.startswith("SELECT") and "FROM execution_attempts" in s]
    finally:
        event.remove(contract.db.engine, "before_cursor_execute", seen)
    assert isinstance(first, StartedExecution)
    assert isinstance(again, StartedExecution)
    assert reads_first == []
    assert len(reads_again) == 2  # the attempt, and its deadline
    assert again.context == first.context


def test_a_stop_in_prepare_tool_call_keeps_the_started_attempt(contract: Harness) -> None:
    seed_intent(contract, "ai_c_prep_cancelled", approval_status=ApprovalStatus.CANCELLED)
    draft = stopped(steps.prepare_tool_call, lock("ai_c_prep_cancelled"))
    with contract.db.read() as conn:
        attempt = executions.get_attempt(conn, "t1", "acc-1", "ai_c_prep_cancelled")
    assert attempt is not None
    assert attempt.status.value == "RUNNING"  # StartExecution committed before the preflight stopped
    outcome = record(contract, draft)
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.CANCELLED, "INTENT_CANCELLED")


def test_an_unexpected_failure_after_the_start_becomes_a_failed_draft(
    contract: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_deps: StepDeps, _checked: PreflightPassed) -> ToolCall:
        raise KeyError("a bug")

    seed_intent(contract, "ai_c_prep_bug")
    request = lock("ai_c_prep_bug")
    monkeypatch.setattr(steps, "map_action_to_tool", broken)
    draft = stopped(steps.prepare_tool_call, request)
    outcome = record(contract, draft)
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.FAILED, "EXECUTION_FAILED")


def test_a_duplicate_request_to_prepare_tool_call_is_a_duplicate(contract: Harness) -> None:
    seed_intent(contract, "ai_c_prep_dup")
    start("ai_c_prep_dup")
    request = ExecutionRequest(
        action_intent_id="ai_c_prep_dup",
        tenant_id="t1",
        account_id="acc-1",
        workflow_id="exec-other",
        attempt_id="attempt_not_the_lock",
    )
    assert isinstance(
        through_json(steps.prepare_tool_call(deps(), request), DuplicateExecution), DuplicateExecution
    )


def test_start_of_a_foreign_request_is_a_duplicate_not_a_failure(contract: Harness) -> None:
    seed_intent(contract, "ai_c_dup")
    context = start("ai_c_dup")
    request = ExecutionRequest(
        action_intent_id="ai_c_dup",
        tenant_id="t1",
        account_id="acc-1",
        workflow_id="exec-other",
        attempt_id="attempt_not_the_lock",
    )
    duplicate = through_json(steps.start_execution(deps(), request), DuplicateExecution)
    assert duplicate.existing_workflow_id == context.workflow_id == "exec-t1/ai_c_dup"
    assert duplicate.existing_status is ExecutionStatus.RUNNING
    assert contract.outcome_rows("ai_c_dup") == 0


def test_start_without_a_lock_is_a_duplicate(contract: Harness) -> None:
    seed_intent(contract, "ai_c_nolock")
    request = ExecutionRequest(
        action_intent_id="ai_c_nolock",
        tenant_id="t1",
        account_id="acc-1",
        workflow_id="exec-t1/ai_c_nolock",
        attempt_id="attempt_never_taken",
    )
    duplicate = through_json(steps.start_execution(deps(), request), DuplicateExecution)
    assert duplicate.existing_status is ExecutionStatus.PENDING
    with contract.db.read() as conn:
        assert executions.get_attempt(conn, "t1", "acc-1", "ai_c_nolock") is None


def test_start_after_a_crash_resumes_the_same_attempt(contract: Harness) -> None:
    seed_intent(contract, "ai_c_resume")
    request = lock("ai_c_resume")
    first = steps.start_execution(deps(), request)
    assert isinstance(first, StartedExecution)
    assert steps.start_execution(deps(), request) == first  # the replayed step, or a fork of the workflow


@pytest.mark.parametrize(
    ("intent_fields", "status", "code"),
    [
        ({"expires_at_epoch": 1}, ExecutionStatus.EXPIRED, "INTENT_EXPIRED"),
        ({"approval_status": ApprovalStatus.CANCELLED}, ExecutionStatus.CANCELLED, "INTENT_CANCELLED"),
        ({"approval_status": ApprovalStatus.PENDING_APPROVAL}, ExecutionStatus.FAILED, "INTENT_NOT_APPROVED"),
    ],
)
def test_preflight_stops(
    contract: Harness, intent_fields: dict[str, Any], status: ExecutionStatus, code: str
) -> None:
    intent_id = f"ai_c_pre_{code.lower()}"
    seed_intent(contract, intent_id, **intent_fields)
    draft = stopped(steps.validate_preflight, start(intent_id))
    outcome = record(contract, draft)
    assert (outcome.status, outcome.error_code) == (status, code)
    assert contract.task_rows(intent_id) == 0


def test_preflight_on_a_missing_intent(contract: Harness) -> None:
    seed_intent(contract, "ai_c_missing")
    context = start("ai_c_missing")
    with contract.db.write() as conn:
        conn.execute(delete(action_intents).where(action_intents.c.action_intent_id == "ai_c_missing"))
    assert record(contract, stopped(steps.validate_preflight, context)).error_code == "INTENT_NOT_FOUND"


def test_preflight_refuses_an_intent_changed_after_its_approval(contract: Harness) -> None:
    seed_intent(contract, "ai_c_pre_mismatch")
    bound = bind_stored(contract.db, "ai_c_pre_mismatch")
    context = start("ai_c_pre_mismatch")
    changed = tamper_document(contract.db, "ai_c_pre_mismatch", parameters={"title": "swapped"})
    outcome = record(contract, stopped(steps.validate_preflight, context))
    assert (outcome.status, outcome.error_class, outcome.error_code) == (
        ExecutionStatus.FAILED,
        "VALIDATION",
        "APPROVAL_MISMATCH",
    )
    assert outcome.action_hash == action_hash(changed)
    assert prefix(bound.action_hash or "") in (outcome.error_message or "")
    assert contract.task_rows("ai_c_pre_mismatch") == 0


def test_invoke_refuses_an_intent_changed_after_the_mapping(contract: Harness) -> None:
    seed_intent(contract, "ai_c_call_mismatch")
    bound = bind_stored(contract.db, "ai_c_call_mismatch")
    checked = through_json(steps.validate_preflight(deps(), start("ai_c_call_mismatch")), PreflightPassed)
    call = through_json(steps.map_action_to_tool(deps(), checked), ToolCall)
    changed = tamper_document(contract.db, "ai_c_call_mismatch", registry_version=2)
    outcome = record(contract, stopped(steps.invoke_tool, call))
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.FAILED, "APPROVAL_MISMATCH")
    assert outcome.action_hash == bound.action_hash  # the call it refused was the approved one
    assert prefix(action_hash(changed)) in (outcome.error_message or "")
    assert contract.task_rows("ai_c_call_mismatch") == 0


def test_preflight_kill_switch(contract: Harness) -> None:
    seed_intent(contract, "ai_c_pre_kill")
    context = start("ai_c_pre_kill")
    with contract.db.write() as conn:
        killswitches.put_global(
            conn, GlobalExecutionConfig(global_stop=True), now=contract.service.clock.now_iso()
        )
    outcome = record(contract, stopped(steps.validate_preflight, context))
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.CANCELLED, "KILL_SWITCH_ENABLED")


@pytest.mark.parametrize(
    ("intent_fields", "code"),
    [
        ({"action_type": "REQUEST_RENEWAL_MEETING"}, "TOOL_MAPPING_NOT_FOUND"),
        ({"parameters": {}}, "MISSING_REQUIRED_PARAMETER"),
        ({"parameters": {"title": float("nan")}}, "INVALID_PARAMETER_TYPE"),
    ],
)
def test_mapping_failures(contract: Harness, intent_fields: dict[str, Any], code: str) -> None:
    intent_id = f"ai_c_map_{code.lower()}"
    if "nan" in repr(intent_fields):
        # NaN cannot be stored as JSON, so this one is checked from an in-memory preflight result.
        seed_intent(contract, intent_id)
        checked = steps.validate_preflight(deps(), start(intent_id))
        checked = checked.model_copy(update={"intent": checked.intent.model_copy(update=intent_fields)})
    else:
        seed_intent(contract, intent_id, **intent_fields)
        checked = through_json(steps.validate_preflight(deps(), start(intent_id)), PreflightPassed)
    outcome = record(contract, stopped(steps.map_action_to_tool, checked))
    assert (outcome.status, outcome.error_class, outcome.error_code) == (
        ExecutionStatus.FAILED,
        "VALIDATION",
        code,
    )


def _mapped_call(harness: Harness, intent_id: str, **intent_fields: Any) -> ToolCall:
    seed_intent(harness, intent_id, **intent_fields)
    checked = through_json(steps.validate_preflight(deps(), start(intent_id)), PreflightPassed)
    return through_json(steps.map_action_to_tool(deps(), checked), ToolCall)


@pytest.mark.parametrize(
    "switch",
    [
        GlobalExecutionConfig(disabled_action_types=["CREATE_INTERNAL_TASK"]),
        GlobalExecutionConfig(global_stop=True),
    ],
)
def test_invoke_reads_the_kill_switches_before_calling(
    contract: Harness, switch: GlobalExecutionConfig
) -> None:
    intent_id = f"ai_c_recheck_{int(switch.global_stop)}"
    call = _mapped_call(contract, intent_id)
    with contract.db.write() as conn:
        killswitches.put_global(conn, switch, now=contract.service.clock.now_iso())
    outcome = record(contract, stopped(steps.invoke_tool, call))
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.CANCELLED, "KILL_SWITCH_ENABLED")
    assert outcome.tool_name == "internal.create_task"
    assert outcome.idempotency_key == call.idempotency_key
    assert contract.task_rows(intent_id) == 0


def test_invoke_reads_the_cancellation_before_calling(contract: Harness) -> None:
    call = _mapped_call(contract, "ai_c_cancelled_before_call")
    with contract.db.write() as conn:
        intent = intents.get_intent(conn, "t1", "ai_c_cancelled_before_call")
        assert intent is not None
        intents.transition_approval(
            conn, intent, to_status=ApprovalStatus.CANCELLED, now=contract.service.clock.now_iso()
        )
    outcome = record(contract, stopped(steps.invoke_tool, call))
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.CANCELLED, "INTENT_CANCELLED")
    assert contract.task_rows("ai_c_cancelled_before_call") == 0


def test_tool_business_failure(contract: Harness) -> None:
    call = _mapped_call(contract, "ai_c_business", parameters={"title": "  "})
    result = through_json(steps.invoke_tool(deps(), call), ToolResult)
    assert not result.success
    outcome = record(contract, through_json(outcome_from_tool_result(result), OutcomeDraft))
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.FAILED, "VALIDATION_FAILED")


def _fails_retryably(contract: Harness, monkeypatch: pytest.MonkeyPatch, call: ToolCall) -> OutcomeDraft:
    """InvokeTool against a gateway nobody listens on: the draft its RetryableToolFailure carries."""
    unreachable = McpToolGateway("http://127.0.0.1:9/mcp", ServiceTokens(contract.settings))
    monkeypatch.setattr(contract.service.runtime, "gateway", unreachable)
    try:
        with pytest.raises(steps.RetryableToolFailure) as failure:
            steps.invoke_tool(deps(), call)
    finally:
        unreachable.close()
    return failure.value.draft


def test_retryable_tool_failure_carries_a_recordable_draft(
    contract: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    draft = _fails_retryably(contract, monkeypatch, _mapped_call(contract, "ai_c_unreachable"))
    # The failed try is on the timeline (outside a workflow: try 1, no known maximum).
    with contract.db.read() as conn:
        [entry] = [
            e
            for e in executions.list_ledger(conn, "t1", "ai_c_unreachable")
            if e.event_type == "TOOL_CALL_TRY_FAILED"
        ]
    assert entry.entry_id.endswith("#TOOL_CALL_TRY_FAILED#1")
    assert (entry.data["try"], entry.data["will_retry"], entry.data["error_code"]) == (
        1,
        True,
        "GATEWAY_UNAVAILABLE",
    )
    outcome = record(contract, through_json(draft, OutcomeDraft))
    assert (outcome.status, outcome.error_class, outcome.error_code) == (
        ExecutionStatus.FAILED,
        "DOWNSTREAM",
        "GATEWAY_UNAVAILABLE",
    )


def test_a_store_that_cannot_take_the_failed_try_keeps_the_failure_retryable(
    contract: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = _mapped_call(contract, "ai_c_unreachable_store_down")

    def store_down(conn: object, entry: LedgerEntry) -> bool:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(executions, "append_ledger", store_down)
    draft = _fails_retryably(contract, monkeypatch, call)
    assert draft.error is not None
    assert draft.error.error_code == "GATEWAY_UNAVAILABLE"


def test_spent_budget_before_invoke(contract: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    call = _mapped_call(contract, "ai_c_budget")
    late = SystemClock(offset_seconds=call.context.deadline_epoch - SystemClock().now() + 1)
    monkeypatch.setattr(contract.service.runtime, "clock", late)
    outcome = record(contract, stopped(steps.invoke_tool, call))
    assert (outcome.status, outcome.error_class, outcome.error_code) == (
        ExecutionStatus.FAILED,
        "TIMEOUT",
        "EXECUTION_TIMEOUT",
    )
    assert contract.task_rows("ai_c_budget") == 0


def test_budget_spent_waiting_for_an_open_circuit(contract: Harness) -> None:
    """InvokeTool waits for its connector's open circuit as long as the budget lasts, then stops
    with a TIMEOUT draft that RecordOutcome accepts; nothing was called."""
    call = _mapped_call(contract, "ai_c_circuit", execution_policy=ExecutionPolicy(timeout_seconds=2))
    with contract.db.write() as conn:
        connectors.lock_state(conn, "internal")
        now = connectors.database_now(conn)
        connectors.save_circuit(
            conn, "internal", Circuit(state=CircuitState.OPEN, failures=5, opened_at=now), now=now
        )
    try:
        outcome = record(contract, stopped(steps.invoke_tool, call))
    finally:
        with contract.db.write() as conn:
            connectors.lock_state(conn, "internal")
            connectors.save_circuit(conn, "internal", Circuit(), now=connectors.database_now(conn))
    assert (outcome.status, outcome.error_class, outcome.error_code) == (
        ExecutionStatus.FAILED,
        "TIMEOUT",
        "EXECUTION_TIMEOUT",
    )
    assert "waiting for connector 'internal' (circuit open)" in (outcome.error_message or "")
    assert outcome.tool_name == "internal.create_task"
    assert contract.task_rows("ai_c_circuit") == 0


def test_unexpected_failure_is_still_recorded(contract: Harness) -> None:
    seed_intent(contract, "ai_c_unexpected")
    context = start("ai_c_unexpected")
    error = ExecutionError(
        error_class=ErrorClass.UNKNOWN, error_code="EXECUTION_FAILED", error_message="boom"
    )
    outcome = record(contract, through_json(outcome_from_step_failure(context, error), OutcomeDraft))
    assert (outcome.status, outcome.error_code) == (ExecutionStatus.FAILED, "EXECUTION_FAILED")
