"""Turning intent parameters into tool arguments through a registry entry (reference spec §1.6).

Rules: each mapping entry reads ``parameters[name]``; a required entry whose parameter is absent
fails with ``MISSING_REQUIRED_PARAMETER``; a present value (``null`` counts as present) is written
under ``toolParam`` after its transform; parameters the mapping does not name are dropped.
Transforms change the case of strings; applied to anything but a string or ``null`` they fail
with ``INVALID_PARAMETER_TYPE`` rather than guess a representation.
"""

from __future__ import annotations

from typing import Any

from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.models import ParameterMapping, Transform

# Arguments the mapper sets from trusted state; an intent parameter can never supply them.
TRUSTED_ARGUMENTS = ("tenant_id", "account_id", "action_intent_id", "idempotency_key")


class MappingError(Exception):
    def __init__(self, error: ExecutionError) -> None:
        super().__init__(error)
        self.error = error


def map_parameters(parameters: dict[str, Any], mapping: dict[str, ParameterMapping]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for name, rule in mapping.items():
        if name not in parameters:
            if rule.required:
                raise MappingError(
                    ExecutionError(
                        error_class=ErrorClass.VALIDATION,
                        error_code="MISSING_REQUIRED_PARAMETER",
                        error_message=f"required parameter '{name}' is missing",
                    )
                )
            continue
        arguments[rule.tool_param] = _apply(rule.transform, name, parameters[name])
    return arguments


def _apply(transform: Transform, name: str, value: Any) -> Any:
    if transform is Transform.PASSTHROUGH or value is None:
        return value
    if not isinstance(value, str):
        raise MappingError(
            ExecutionError(
                error_class=ErrorClass.VALIDATION,
                error_code="INVALID_PARAMETER_TYPE",
                error_message=f"parameter '{name}' must be a string for transform {transform.value}",
            )
        )
    if transform is Transform.UPPERCASE:
        return value.upper()
    if transform is Transform.LOWERCASE:
        return value.lower()
    return value[:1].upper() + value[1:].lower()


def arguments_for_tool(arguments: dict[str, Any], input_schema: dict[str, Any]) -> dict[str, Any]:
    """The arguments a tool receives: a trusted argument its input schema does not declare is left
    out (a remote MCP server need not know fulfill's bindings, and a strict schema would refuse
    them). The gateway checks every trusted argument against the call's token before this."""
    declared = input_schema.get("properties")
    names = set(declared) if isinstance(declared, dict) else set()
    return {
        name: value for name, value in arguments.items() if name not in TRUSTED_ARGUMENTS or name in names
    }


def with_trusted_arguments(
    arguments: dict[str, Any], *, tenant_id: str, account_id: str, action_intent_id: str, idempotency_key: str
) -> dict[str, Any]:
    """The arguments sent to the tool: mapped values plus the trusted bindings, which always win."""
    return {
        **arguments,
        "tenant_id": tenant_id,
        "account_id": account_id,
        "action_intent_id": action_intent_id,
        "idempotency_key": idempotency_key,
    }
