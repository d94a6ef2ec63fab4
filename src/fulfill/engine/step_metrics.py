"""What the tool-calling steps report to ``/metrics``: which runs of a step are retries
(``fulfill_retries_total``), and each call sent to a connector (``fulfill_connector_*``). How long
each run of a step took and how it ended (``fulfill_step_seconds``) is the step decorator's
(``engine/steps/decorator.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from dbos import DBOS

from fulfill import metrics
from fulfill.domain.ports import ToolCallOutcome

A = TypeVar("A")
R = TypeVar("R")


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
