"""The one step decorator: each run logs with its execution's context, gets a span of its own
when asked, and is observed once in ``fulfill_step_seconds{step,result}`` with how it ended."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from fulfill import metrics, tracing
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import ExecutionContext, ExecutionStopped, outcome_from_step_failure
from fulfill.engine import steps
from fulfill.engine.steps.decorator import step
from fulfill.engine.steps.deps import StepDeps
from fulfill.logging_setup import current_log_context
from fulfill.ports.store import StoreUnavailable
from fulfill.store.db import Database
from fulfill.store.sql_store import SqlStore
from tests.support.memory_steps import World


class Transient(Exception):
    pass


def _runs(name: str, result: str) -> float:
    return REGISTRY.get_sample_value("fulfill_step_seconds_count", {"step": name, "result": result}) or 0.0


def _stop() -> ExecutionStopped:
    context = ExecutionContext(
        action_intent_id="ai_1",
        tenant_id="t1",
        account_id="acc-1",
        workflow_id="exec-t1/ai_1",
        attempt_count=1,
        attempt_id="att-1",
        trace_id="trace",
        started_at="2026-01-01T00:00:00Z",
        deadline_epoch=0.0,
    )
    error = ExecutionError(
        error_class=ErrorClass.VALIDATION, error_code="KILL_SWITCH_ENABLED", error_message="x"
    )
    return ExecutionStopped(outcome_from_step_failure(context, error))


def _raising(exc: BaseException) -> Callable[[StepDeps, int], int]:
    def run(_deps: StepDeps, _argument: int) -> int:
        raise exc

    return run


@pytest.fixture
def sql_deps(tmp_path: Any) -> Iterator[StepDeps]:
    """Deps whose store is the SQL one: its own transient errors count as retries too."""
    database = Database(f"sqlite:///{tmp_path}/unused.db")
    world = World()
    yield StepDeps(
        store=SqlStore(database),
        clock=world.clock,
        gateway=world.gateway,
        gate=world.gate,
        settings=world.settings,
    )
    database.dispose()


@pytest.mark.parametrize(
    ("run", "result"),
    [
        (lambda _deps, _argument: 1, "success"),
        (lambda _deps, _argument: -1, "failure"),
        (_raising(_stop()), "stopped"),
        (_raising(Transient()), "retry"),
        (_raising(StoreUnavailable()), "retry"),
        (_raising(OperationalError("SELECT 1", {}, Exception("down"))), "retry"),
        (_raising(ValueError("a defect")), "error"),
    ],
)
def test_each_run_is_observed_once_with_how_it_ended(
    sql_deps: StepDeps, run: Callable[[StepDeps, int], int], result: str
) -> None:
    decorated = step("InvokeTool", retryable=(Transient,), failed=lambda value: value < 0)(run)
    before = {name: _runs("InvokeTool", name) for name in metrics.STEP_RESULTS}
    with contextlib.suppress(Exception):  # the step's own exception is not what is observed here
        decorated(sql_deps, 0)
    after = {name: _runs("InvokeTool", name) for name in metrics.STEP_RESULTS}
    assert {name: after[name] - before[name] for name in metrics.STEP_RESULTS} == {
        name: 1.0 if name == result else 0.0 for name in metrics.STEP_RESULTS
    }


def test_the_exception_and_the_value_pass_through_unchanged(world: World) -> None:
    stop = _stop()
    with pytest.raises(ExecutionStopped) as raised:
        step("RecordOutcome")(_raising(stop))(world.deps, 0)
    assert raised.value is stop
    assert step("RecordOutcome")(lambda _deps, argument: argument + 1)(world.deps, 41) == 42


def test_an_unknown_step_name_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="unknown step"):
        step("SomeStep")


def test_a_step_logs_with_its_execution_context(world: World) -> None:
    context = SimpleNamespace(
        action_intent_id="ai_1", tenant_id="t-1", account_id="acc-1", trace_id="tr-1", workflow_id="w"
    )

    @step("InvokeTool")
    def invoke(_deps: StepDeps, _call: SimpleNamespace) -> dict[str, str]:
        return current_log_context()

    assert invoke(world.deps, SimpleNamespace(context=context)) == {
        "action_intent_id": "ai_1",
        "tenant_id": "t-1",
        "account_id": "acc-1",
        "trace_id": "tr-1",
        "step": "InvokeTool",
    }
    assert invoke.__name__ == "invoke"
    assert current_log_context() == {}


def test_the_engine_steps_are_decorated() -> None:
    for decorated in (
        steps.start_execution,
        steps.validate_preflight,
        steps.map_action_to_tool,
        steps.invoke_tool,
        steps.record_outcome,
    ):
        assert hasattr(decorated, "__wrapped__")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    tracing.install("all")
    collected = InMemorySpanExporter()
    processor = SimpleSpanProcessor(collected)
    tracing.add_span_processor(processor)
    yield collected
    tracing.remove_span_processor(processor)


def test_own_span_names_the_span_and_its_execution(world: World, exporter: InMemorySpanExporter) -> None:
    context = SimpleNamespace(action_intent_id="ai_1", tenant_id="t1", attempt_count=1)

    @step("ValidatePreflight", own_span=True)
    def preflight(_deps: StepDeps, _argument: SimpleNamespace) -> str:
        return "done"

    assert preflight(world.deps, SimpleNamespace(context=context)) == "done"
    [span] = exporter.get_finished_spans()
    assert span.name == "ValidatePreflight"
    assert dict(span.attributes or {}) == {
        "fulfill.action_intent_id": "ai_1",
        "fulfill.tenant_id": "t1",
        "fulfill.attempt": 1,
    }


def test_a_failing_step_marks_its_span_failed(world: World, exporter: InMemorySpanExporter) -> None:
    @step("MapActionToTool", own_span=True)
    def mapping(_deps: StepDeps, _argument: object) -> None:
        raise ValueError("no mapping")

    with pytest.raises(ValueError, match="no mapping"):
        mapping(world.deps, object())
    [span] = exporter.get_finished_spans()
    assert not span.status.is_ok


def test_without_own_span_the_step_opens_none(world: World, exporter: InMemorySpanExporter) -> None:
    step("RecordOutcome")(lambda _deps, argument: argument)(world.deps, 1)
    assert exporter.get_finished_spans() == ()
