"""MapActionToTool: the pinned registry version, the mapped parameters, the idempotency key."""

from __future__ import annotations

from fulfill.domain.action_hash import action_hash
from fulfill.domain.execution import PreflightPassed, ToolCall, stop_before_tool
from fulfill.domain.idempotency import idempotency_key
from fulfill.domain.mapping import MappingError, map_parameters, with_trusted_arguments
from fulfill.domain.models import ExecutionStatus
from fulfill.engine.steps.checks import check_budget
from fulfill.engine.steps.decorator import step
from fulfill.engine.steps.deps import StepDeps
from fulfill.engine.steps.failures import validation_error


@step("MapActionToTool", own_span=True)
def map_action_to_tool(deps: StepDeps, checked: PreflightPassed) -> ToolCall:
    """Resolve the pinned registry version, map the parameters, derive the idempotency key.
    The entry is the one StartExecution read with the intent, when it did; else it is read."""
    context, intent = checked.context, checked.intent
    check_budget(context, deps.clock.now())
    entry = checked.entry  # read with this intent, in StartExecution's transaction
    if entry is None:
        with deps.store.read() as uow:
            entry = uow.registry.get_entry(intent.action_type, intent.registry_version)
    if entry is None:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            validation_error(
                "TOOL_MAPPING_NOT_FOUND",
                f"no registry entry for {intent.action_type} version {intent.registry_version}",
            ),
            registry_version=intent.registry_version,
            decision_trace_id=intent.trace_id,
        )
    try:
        mapped = map_parameters(intent.parameters, entry.parameter_mapping)
        key = idempotency_key(
            tenant_id=intent.tenant_id,
            action_intent_id=intent.action_intent_id,
            tool_name=entry.tool_name,
            arguments=mapped,
            registry_version=entry.registry_version,
        )
    except MappingError as exc:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            exc.error,
            registry_version=entry.registry_version,
            decision_trace_id=intent.trace_id,
        ) from None
    except ValueError as exc:
        raise stop_before_tool(
            context,
            ExecutionStatus.FAILED,
            validation_error("INVALID_PARAMETER_TYPE", f"parameters cannot be canonicalised: {exc}"),
            registry_version=entry.registry_version,
            decision_trace_id=intent.trace_id,
        ) from None
    return ToolCall(
        context=context,
        action_type=intent.action_type,
        decision_trace_id=intent.trace_id,
        registry_version=entry.registry_version,
        tool_name=entry.tool_name,
        tool_schema_version=entry.tool_schema_version,
        compensation_strategy=entry.compensation_strategy,
        compensation_tool_name=entry.compensation_tool_name,
        arguments=with_trusted_arguments(
            mapped,
            tenant_id=intent.tenant_id,
            account_id=intent.account_id,
            action_intent_id=intent.action_intent_id,
            idempotency_key=key,
        ),
        idempotency_key=key,
        retry_count=intent.execution_policy.retry_count,
        action_hash=action_hash(intent),
    )
