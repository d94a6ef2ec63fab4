"""The workflow's steps. Each takes the previous step's output model and returns its own.

Every step is idempotent when re-run after a crash: the attempt lock, the write-once outcome and
the deterministic ledger, signal and outbox ids turn a repeated write into a no-op, and the tool
call repeats with the same idempotency key. A step that must end the execution raises
:class:`ExecutionStopped` carrying the outcome to record.

Each step is a plain function ``(deps, input) -> output``: :class:`StepDeps` holds what it needs
(the store, the clock, the gateway, the connectors' gate, the settings it reads), built once per
workflow by ``engine/workflow.py``. One module per step; the checks they share in ``checks.py``;
the protocol for calls that must never be sent twice in ``sent_calls.py``; the one decorator in
``decorator.py``.
"""

from __future__ import annotations

from fulfill.domain.execution import (
    DuplicateExecution,
    ExecutionRequest,
    ExecutionStopped,
    ToolCall,
    outcome_from_step_failure,
)
from fulfill.engine.steps.checks import read_kill_switches
from fulfill.engine.steps.deps import ConnectorGate, GatePermit, StepDeps, StepSettings
from fulfill.engine.steps.failures import RetryableToolFailure, unexpected_error
from fulfill.engine.steps.invoke import invoke_tool
from fulfill.engine.steps.mapping import map_action_to_tool
from fulfill.engine.steps.preflight import validate_preflight
from fulfill.engine.steps.record import SIGNAL_TOPIC, record_outcome
from fulfill.engine.steps.start import start_execution

__all__ = [
    "SIGNAL_TOPIC",
    "ConnectorGate",
    "GatePermit",
    "RetryableToolFailure",
    "StepDeps",
    "StepSettings",
    "invoke_tool",
    "map_action_to_tool",
    "prepare_tool_call",
    "read_kill_switches",
    "record_outcome",
    "start_execution",
    "unexpected_error",
    "validate_preflight",
]


def prepare_tool_call(deps: StepDeps, request: ExecutionRequest) -> ToolCall | DuplicateExecution:
    """The workflow's first checkpoint: StartExecution ─▶ ValidatePreflight ─▶ MapActionToTool.

    StartExecution writes (the attempt goes RUNNING); ValidatePreflight and MapActionToTool only
    read, so they share its checkpoint instead of paying one each. ValidatePreflight decides on
    the intent and switches StartExecution read in its transaction (it does not read again). Replaying this checkpoint after
    a crash repeats them together, which is safe: StartExecution finds its own RUNNING attempt and
    the reads are taken again. A stop raises :class:`ExecutionStopped`; an unexpected failure after
    the start becomes a FAILED draft; a transient database error is raised for the step to retry.

    The three steps are looked up on this module when it runs, so that a test (or a benchmark)
    may put a wrapper of its own in their place.
    """
    started = start_execution(deps, request)
    if isinstance(started, DuplicateExecution):
        return started
    context = started.context
    try:
        return map_action_to_tool(deps, validate_preflight(deps, started))
    except ExecutionStopped:
        raise
    except Exception as exc:
        if deps.store.is_transient(exc):
            raise
        raise ExecutionStopped(
            outcome_from_step_failure(context, unexpected_error(exc, deps.store))
        ) from None
