"""How a connector call and a retry are counted, read back from the process's registry (counters
only grow, so each test compares before and after). How a step's run is classified is the step
decorator's: ``tests/unit/engine/test_step_decorator.py``."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from fulfill import metrics
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.ports import ToolCallOutcome
from fulfill.engine.step_metrics import call_connector, count_retry


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


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
