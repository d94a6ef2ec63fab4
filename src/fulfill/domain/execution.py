"""The state carried between workflow steps: one typed model per step boundary.

Every step receives the previous step's output model and returns its own. Every failure, at
any step, becomes an :class:`OutcomeDraft`, the one input RecordOutcome accepts, so there is no
failure shape the recorder could reject (reference spec §13 items 1 and 6).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.errors import ExecutionError
from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalSource,
    CompensationStrategy,
    ExecutionAttempt,
    ExecutionStatus,
    ExternalObjectRef,
    GlobalExecutionConfig,
    RegistryEntry,
    TenantExecutionConfig,
)


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        """DBOS checkpoints these models pickled. One pickled by an earlier version of fulfill (a
        workflow in flight across an upgrade) lacks the fields added since: they take their
        defaults, as they would from its JSON, instead of being missing attributes."""
        values = state.get("__dict__")
        if isinstance(values, dict):
            for name, field in type(self).model_fields.items():
                if name not in values and not field.is_required():
                    values[name] = field.get_default(call_default_factory=True, validated_data=values)
        super().__setstate__(state)


def execution_workflow_id(tenant_id: str, action_intent_id: str, attempt_count: int = 1) -> str:
    """``exec-{tenant}/{intent}``, ``…-r{n}`` for a rerun. Intent ids are unique per tenant and
    identifiers never contain ``/``, so the id names one attempt of one tenant's intent."""
    base = f"exec-{tenant_id}/{action_intent_id}"
    return base if attempt_count == 1 else f"{base}-r{attempt_count}"


class ExecutionRequest(_State):
    """StartExecution's input, built when the execution lock (the QUEUED attempt row) is taken:
    by intake from an ACTION_APPROVED event, by a rerun, or by the reconciler from the row."""

    action_intent_id: str
    tenant_id: str
    account_id: str
    workflow_id: str
    attempt_count: int = Field(default=1, ge=1)
    # The lock this request owns: StartExecution carries on only while the attempt row holds it.
    attempt_id: str
    approval_source: ApprovalSource | None = None
    auto_executed: bool | None = None
    requested_by: str | None = None
    rerun_reason: str | None = None
    # The W3C trace context the workflow's spans descend from (the attempt's ``traceparent``).
    traceparent: str | None = None


class ExecutionContext(_State):
    """Who and which attempt: carried unchanged from StartExecution to RecordOutcome."""

    action_intent_id: str
    tenant_id: str
    account_id: str
    workflow_id: str
    attempt_count: int = Field(ge=1)
    attempt_id: str
    trace_id: str
    started_at: str
    deadline_epoch: float
    approval_source: ApprovalSource | None = None
    auto_executed: bool | None = None
    requested_by: str | None = None
    rerun_reason: str | None = None


class PreflightReads(_State):
    """What StartExecution read in its own transaction, for ValidatePreflight to decide on
    without reading them again: the intent (None: it does not exist) and the kill switches
    (None: a switch row that cannot be parsed, which stops the execution); and, for
    MapActionToTool, the registry entry the intent is pinned to (None: not read, or there is
    none: MapActionToTool reads it)."""

    intent: ActionIntentV1 | None
    switches: tuple[GlobalExecutionConfig, TenantExecutionConfig] | None
    entry: RegistryEntry | None = None


class StartedExecution(_State):
    """StartExecution's output when this workflow holds the lock for its attempt. ``reads``:
    the rows ValidatePreflight decides on, as StartExecution read them (None: it reads them)."""

    kind: Literal["started"] = "started"
    context: ExecutionContext
    reads: PreflightReads | None = None


class DuplicateExecution(_State):
    """StartExecution's output when another run already owns (or finished) this intent: a no-op."""

    kind: Literal["duplicate"] = "duplicate"
    action_intent_id: str
    existing_workflow_id: str
    existing_status: ExecutionStatus


class PreflightPassed(_State):
    """ValidatePreflight's output: the intent as it was checked, and the registry entry it is
    pinned to when StartExecution read it (None: MapActionToTool reads it)."""

    context: ExecutionContext
    intent: ActionIntentV1
    entry: RegistryEntry | None = None


class ToolCall(_State):
    """MapActionToTool's output: everything InvokeTool sends, fixed before any call is made."""

    context: ExecutionContext
    action_type: str
    decision_trace_id: str
    registry_version: int
    tool_name: str
    tool_schema_version: str
    compensation_strategy: CompensationStrategy
    compensation_tool_name: str | None = None
    arguments: dict[str, Any]
    idempotency_key: str
    retry_count: int = Field(ge=0)
    # The hash (domain/action_hash.py) of the intent the arguments were mapped from: right before
    # the call it must still be the approved one. None in a call checkpointed before it was kept.
    action_hash: str | None = None


class ToolResult(_State):
    """InvokeTool's output: what the tool answered (success, or a classified business failure)."""

    call: ToolCall
    success: bool
    external_object_refs: list[ExternalObjectRef] = Field(default_factory=list)
    error: ExecutionError | None = None
    tool_run_ref: str
    # A plain-text answer's bounded excerpt (nothing else holds what it said).
    answer_excerpt: str | None = None
    refs_note: str | None = None


class OutcomeDraft(_State):
    """RecordOutcome's only input: a terminal status plus whatever was known when it was reached."""

    context: ExecutionContext
    status: ExecutionStatus
    external_object_refs: list[ExternalObjectRef] = Field(default_factory=list)
    error: ExecutionError | None = None
    tool_name: str | None = None
    tool_schema_version: str | None = None
    registry_version: int | None = None
    idempotency_key: str | None = None
    decision_trace_id: str | None = None
    tool_run_ref: str
    answer_excerpt: str | None = None
    refs_note: str | None = None
    action_hash: str | None = None


class RecordedOutcome(_State):
    """RecordOutcome's output."""

    outcome: ActionOutcomeV1
    # The intent was cancelled while its write happened: the write must be compensated.
    cancelled_after_write: bool = False


class CompensationRequest(_State):
    """Undo the writes of one attempt (its outcome says which objects)."""

    tenant_id: str
    account_id: str
    action_intent_id: str
    attempt_count: int = Field(ge=1)
    requested_by: str | None = None
    # A failed compensation is tried again (with backoff, up to a limit) as a new workflow.
    try_number: int = Field(default=1, ge=1)

    @property
    def workflow_id(self) -> str:
        return f"compensate-{self.tenant_id}/{self.action_intent_id}-a{self.attempt_count}-c{self.try_number}"


class CompensationPlan(_State):
    """BeginCompensation's output: which tool undoes which objects."""

    request: CompensationRequest
    tool_name: str
    refs: list[ExternalObjectRef]
    idempotency_key: str
    trace_id: str


class CompensationResult(_State):
    """InvokeCompensation's output. A failed call names itself (tool, object, the key it was
    sent with), so that a person asked to check the target knows what to look for."""

    request: CompensationRequest
    completed: bool
    error: ExecutionError | None = None
    tool_name: str | None = None
    object_id: str | None = None
    idempotency_key: str | None = None


class ExecutionStopped(Exception):
    """Raised by a step that ends the execution early; carries the outcome to record."""

    def __init__(self, draft: OutcomeDraft) -> None:
        super().__init__(draft)
        self.draft = draft


def tool_run_ref(context: ExecutionContext, tool_name: str) -> str:
    return f"toolrun/{context.trace_id}/{context.attempt_count}/{tool_name}"


def pre_tool_ref(context: ExecutionContext) -> str:
    return f"pre-tool-{context.action_intent_id}-{context.attempt_count}"


def outcome_draft(
    context: ExecutionContext,
    status: ExecutionStatus,
    *,
    run_ref: str,
    call: ToolCall | None = None,
    error: ExecutionError | None = None,
    result: ToolResult | None = None,
    registry_version: int | None = None,
    decision_trace_id: str | None = None,
    action_hash: str | None = None,
) -> OutcomeDraft:
    """The one way to build RecordOutcome's input: the call's fields when there was a call (its
    registry version, decision trace and action hash win over the ones given), and the tool's
    answer when there was one. ``run_ref``: the tool run's reference, or the stop's before any
    tool ran."""
    return OutcomeDraft(
        context=context,
        status=status,
        error=error,
        external_object_refs=result.external_object_refs if result else [],
        tool_name=call.tool_name if call else None,
        tool_schema_version=call.tool_schema_version if call else None,
        registry_version=call.registry_version if call else registry_version,
        idempotency_key=call.idempotency_key if call else None,
        decision_trace_id=call.decision_trace_id if call else decision_trace_id,
        tool_run_ref=run_ref,
        answer_excerpt=result.answer_excerpt if result else None,
        refs_note=result.refs_note if result else None,
        action_hash=call.action_hash if call and call.action_hash else action_hash,
    )


def stop_before_tool(
    context: ExecutionContext,
    status: ExecutionStatus,
    error: ExecutionError,
    *,
    call: ToolCall | None = None,
    registry_version: int | None = None,
    decision_trace_id: str | None = None,
    action_hash: str | None = None,
) -> ExecutionStopped:
    """A stop reached before the tool was called (so nothing was written anywhere)."""
    return ExecutionStopped(
        outcome_draft(
            context,
            status,
            run_ref=pre_tool_ref(context),
            call=call,
            error=error,
            registry_version=registry_version,
            decision_trace_id=decision_trace_id,
            action_hash=action_hash,
        )
    )


def outcome_from_tool_result(result: ToolResult) -> OutcomeDraft:
    status = ExecutionStatus.SUCCEEDED if result.success else ExecutionStatus.FAILED
    call = result.call
    return outcome_draft(
        call.context, status, run_ref=result.tool_run_ref, call=call, error=result.error, result=result
    )


def outcome_from_failed_call(call: ToolCall, error: ExecutionError) -> OutcomeDraft:
    """The tool call itself failed (transport, timeout, retries exhausted)."""
    run_ref = tool_run_ref(call.context, call.tool_name)
    return outcome_draft(call.context, ExecutionStatus.FAILED, run_ref=run_ref, call=call, error=error)


def outcome_from_step_failure(context: ExecutionContext, error: ExecutionError) -> OutcomeDraft:
    """A step failed in a way no rule foresaw (or kept failing): still a visible, recorded FAILED."""
    return outcome_draft(context, ExecutionStatus.FAILED, run_ref=pre_tool_ref(context), error=error)


# --- an attempt row, as the workflow's models see it -----------------------------------------


def _attempt_identity(attempt: ExecutionAttempt) -> dict[str, Any]:
    """Which attempt of which intent: the fields every workflow model copies from the attempt."""
    return {
        "action_intent_id": attempt.action_intent_id,
        "tenant_id": attempt.tenant_id,
        "account_id": attempt.account_id,
        "workflow_id": attempt.workflow_id,
        "attempt_count": attempt.attempt_count,
        "attempt_id": attempt.attempt_id,
    }


def request_for(attempt: ExecutionAttempt, **extra: Any) -> ExecutionRequest:
    """The workflow input that owns this attempt's lock."""
    return ExecutionRequest(**_attempt_identity(attempt), traceparent=attempt.traceparent, **extra)


def context_for(
    attempt: ExecutionAttempt, request: ExecutionRequest, *, deadline_epoch: float
) -> ExecutionContext:
    """The context StartExecution hands on: the running attempt, and what its request said about it."""
    return ExecutionContext(
        **_attempt_identity(attempt),
        trace_id=attempt.trace_id,
        started_at=attempt.started_at,
        deadline_epoch=deadline_epoch,
        approval_source=request.approval_source,
        auto_executed=request.auto_executed,
        requested_by=request.requested_by,
        rerun_reason=request.rerun_reason,
    )
