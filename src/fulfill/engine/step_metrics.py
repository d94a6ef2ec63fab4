"""What the workflow's steps report to ``/metrics``: how long each run of a step took and how it
ended (``fulfill_step_seconds``), which runs of a tool-calling step are retries
(``fulfill_retries_total``), and each call sent to a connector (``fulfill_connector_*``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from dbos import DBOS

from fulfill import metrics
from fulfill.domain.execution import ExecutionStopped
from fulfill.domain.ports import ToolCallOutcome
from fulfill.store.db import is_transient_store_error

A = TypeVar("A")
R = TypeVar("R")


def timed_step(
    step: str,
    *,
    retryable: tuple[type[BaseException], ...] = (),
    failed: Callable[[Any], bool] | None = None,
) -> Callable[[Callable[[A], R]], Callable[[A], R]]:
    """Decorate a one-argument step so that each run is observed in ``fulfill_step_seconds{step,
    result}``. ``retryable``: exceptions the workflow retries the step on (transient database
    errors always are); ``failed``: whether a returned value is a business failure."""
    if step not in metrics.EXECUTION_STEPS + metrics.COMPENSATION_STEPS:
        raise ValueError(f"unknown step {step!r}")

    def decorate(func: Callable[[A], R]) -> Callable[[A], R]:
        @functools.wraps(func)
        def run(argument: A) -> R:
            began = time.perf_counter()
            result = "error"
            try:
                value = func(argument)
                result = "failure" if failed is not None and failed(value) else "success"
                return value
            except ExecutionStopped:
                result = "stopped"
                raise
            except Exception as exc:
                if isinstance(exc, retryable) or is_transient_store_error(exc):
                    result = "retry"
                raise
            finally:
                metrics.STEP_SECONDS.labels(step, result).observe(time.perf_counter() - began)

        return run

    return decorate


def call_connector(connector: str, call: Callable[[], ToolCallOutcome]) -> ToolCallOutcome:
    """Send one tool call, observed in the connector metrics (latency, result, error class); a
    call that raises instead of answering is counted too."""
    began = time.perf_counter()
    answer: ToolCallOutcome | None = None
    try:
        answer = call()
        return answer
    finally:
        metrics.connector_call(connector, answer, time.perf_counter() - began)


def count_retry(connector: str, step: str) -> None:
    """Called at the start of a run of a tool-calling step: a run after the first try of this
    step (a retry by the workflow's one retry layer) is counted. A replay after a crash is not."""
    status = DBOS.step_status
    if status is not None and status.current_attempt is not None and status.current_attempt > 0:
        metrics.RETRIES.labels(connector, step).inc()
