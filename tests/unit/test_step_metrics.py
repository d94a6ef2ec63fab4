"""How a step's run is classified in ``fulfill_step_seconds{step,result}``, and how a connector
call is counted, read back from the process's registry (counters only grow, so each test compares
before and after)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from fulfill import metrics
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import ExecutionContext, ExecutionStopped, outcome_from_step_failure
from fulfill.domain.ports import ToolCallOutcome
from fulfill.engine.step_metrics import call_connector, count_retry, timed_step


class Transient(Exception):
    pass


def _runs(step: str, result: str) -> float:
    return REGISTRY.get_sample_value("fulfill_step_seconds_count", {"step": step, "result": result}) or 0.0


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


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


def _raising(exc: Exception) -> Callable[[int], int]:
    def step(_argument: int) -> int:
        raise exc

    return step


@pytest.mark.parametrize(
    ("run", "result"),
    [
        (lambda _argument: 1, "success"),
        (lambda _argument: -1, "failure"),
        (_raising(_stop()), "stopped"),
        (_raising(Transient()), "retry"),
        (_raising(OperationalError("SELECT 1", {}, Exception("down"))), "retry"),
        (_raising(ValueError("a defect")), "error"),
    ],
)
def test_each_run_is_observed_once_with_how_it_ended(run: Callable[[int], int], result: str) -> None:
    step = timed_step("InvokeTool", retryable=(Transient,), failed=lambda value: value < 0)(run)
    before = {name: _runs("InvokeTool", name) for name in metrics.STEP_RESULTS}
    with contextlib.suppress(Exception):  # the step's own exception is not what is observed here
        step(0)
    after = {name: _runs("InvokeTool", name) for name in metrics.STEP_RESULTS}
    assert {name: after[name] - before[name] for name in metrics.STEP_RESULTS} == {
        name: 1.0 if name == result else 0.0 for name in metrics.STEP_RESULTS
    }


def test_the_exception_and_the_value_pass_through_unchanged() -> None:
    stop = _stop()
    with pytest.raises(ExecutionStopped) as raised:
        timed_step("RecordOutcome")(_raising(stop))(0)
    assert raised.value is stop
    assert timed_step("RecordOutcome")(lambda argument: argument + 1)(41) == 42


def test_an_unknown_step_name_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="unknown step"):
        timed_step("SomeStep")


def test_connector_calls_are_counted_by_result_and_error_class() -> None:
    def counts() -> tuple[float, ...]:
        return (
            _sample("fulfill_connector_calls_total", connector="unit", result="success"),
            _sample("fulfill_connector_calls_total", connector="unit", result="retryable_failure"),
            _sample("fulfill_connector_calls_total", connector="unit", result="failure"),
            _sample("fulfill_connector_errors_total", connector="unit", error_class="RATE_LIMIT"),
            _sample("fulfill_connector_errors_total", connector="unit", error_class="UNKNOWN"),
            _sample("fulfill_connector_call_seconds_count", connector="unit"),
        )

    before = counts()
    rate_limited = ExecutionError(
        error_class=ErrorClass.RATE_LIMIT, error_code="HTTP_429", error_message="slow down"
    )
    call_connector("unit", lambda: ToolCallOutcome(success=True))
    call_connector("unit", lambda: ToolCallOutcome(success=False, error=rate_limited))

    def broken() -> ToolCallOutcome:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        call_connector("unit", broken)  # a call that raised is still a call, failed, UNKNOWN
    after = counts()
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (1, 1, 1, 1, 1, 3)


def test_a_first_try_outside_a_workflow_is_not_a_retry() -> None:
    before = _sample("fulfill_retries_total", connector="unit", step="InvokeTool")
    count_retry("unit", "InvokeTool")
    assert _sample("fulfill_retries_total", connector="unit", step="InvokeTool") == before


def test_recent_calls_keep_the_last_minutes_per_connector() -> None:
    now = [1000.0]
    recent = metrics.RecentCalls(keep=3, clock=lambda: now[0])
    recent.add("crm", 0.5, ok=True)  # too old once the clock moves
    now[0] += 400
    for seconds, ok in ((0.1, True), (0.2, False), (0.3, True)):
        recent.add("crm", seconds, ok)
    recent.add("internal", 0.01, ok=True)
    latency = recent.latency(window_seconds=300)
    assert latency["crm"] == metrics.ToolCallLatency(
        calls=3, failures=1, p50_seconds=0.2, p95_seconds=0.3, window_seconds=300
    )
    assert latency["internal"].calls == 1
    now[0] += 301
    assert recent.latency(window_seconds=300) == {}
