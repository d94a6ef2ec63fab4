"""The one decorator of every workflow step, execution's and compensation's alike.

A step is a function ``(deps, argument) -> result``. Each run of it:

* logs with its execution's context and the step's name (``logging_setup.log_context``);
* with ``own_span``, runs in a span of its own named after the step: the steps that share a DBOS
  step (StartExecution, ValidatePreflight, MapActionToTool inside PrepareToolCall) need one, the
  others already run in the span DBOS opens for them;
* is observed once in ``fulfill_step_seconds{step, result}``: ``success``, ``failure`` (a returned
  business failure, says ``failed``), ``stopped`` (:class:`ExecutionStopped`), ``retry`` (an
  exception the workflow retries the step on: one of ``retryable``, or a transient store error),
  or ``error``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fulfill import metrics, tracing
from fulfill.domain.execution import ExecutionStopped
from fulfill.engine.steps.deps import StepDeps
from fulfill.logging_setup import execution_log_context, log_context

A = TypeVar("A")
R = TypeVar("R")

Step = Callable[[StepDeps, A], R]


def step(
    name: str,
    *,
    own_span: bool = False,
    retryable: tuple[type[BaseException], ...] = (),
    failed: Callable[[Any], bool] | None = None,
) -> Callable[[Step[A, R]], Step[A, R]]:
    if name not in metrics.EXECUTION_STEPS + metrics.COMPENSATION_STEPS:
        raise ValueError(f"unknown step {name!r}")

    def decorate(func: Step[A, R]) -> Step[A, R]:
        @functools.wraps(func)
        def run(deps: StepDeps, argument: A) -> R:
            context = getattr(argument, "context", None)
            span = (
                tracing.span(name, attributes=tracing.execution_attributes(context or argument))
                if own_span
                else contextlib.nullcontext()
            )
            began = time.perf_counter()
            result = "error"
            with log_context(**execution_log_context(name, context)), span:
                try:
                    value = func(deps, argument)
                    result = "failure" if failed is not None and failed(value) else "success"
                    return value
                except ExecutionStopped:
                    result = "stopped"
                    raise
                except Exception as exc:
                    if isinstance(exc, retryable) or deps.store.is_transient(exc):
                        result = "retry"
                    raise
                finally:
                    metrics.STEP_SECONDS.labels(name, result).observe(time.perf_counter() - began)

        return run

    return decorate
