"""The action-type registry: the seeded defaults and registration of new versions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fulfill.domain.mapping import TRUSTED_ARGUMENTS
from fulfill.domain.models import (
    ActionType,
    CompensationStrategy,
    ParameterMapping,
    RegistryEntry,
    RiskClass,
    ToolName,
)
from fulfill.ports.store import Store
from fulfill.usecases.errors import Invalid, NotFound

DEFAULT_ENTRIES: tuple[dict[str, Any], ...] = (
    {
        "action_type": "CREATE_INTERNAL_TASK",
        "tool_name": "internal.create_task",
        "tool_schema_version": "v1.0",
        "risk_class": "MINIMAL",
        "compensation_strategy": "AUTOMATIC",
        "compensation_tool_name": "internal.delete_task",
        "parameter_mapping": {
            "title": {"toolParam": "title", "transform": "PASSTHROUGH", "required": True},
            "description": {"toolParam": "description", "transform": "PASSTHROUGH", "required": False},
        },
    },
    {
        "action_type": "CREATE_INTERNAL_NOTE",
        "tool_name": "internal.create_note",
        "tool_schema_version": "v1.0",
        "risk_class": "MINIMAL",
        "compensation_strategy": "AUTOMATIC",
        "compensation_tool_name": "internal.delete_note",
        "parameter_mapping": {
            "content": {"toolParam": "content", "transform": "PASSTHROUGH", "required": True},
        },
    },
    # Salesforce (connectors/salesforce.py). Priority is title-cased (Salesforce's picklist values
    # are High/Normal/Low; the reference upper-cased them, which Salesforce refuses).
    {
        "action_type": "CREATE_CRM_TASK",
        "tool_name": "crm.create_task",
        "tool_schema_version": "v1.0",
        "risk_class": "LOW",
        "compensation_strategy": "AUTOMATIC",
        "compensation_tool_name": "crm.delete_task",
        "parameter_mapping": {
            "title": {"toolParam": "title", "transform": "PASSTHROUGH", "required": True},
            "priority": {"toolParam": "priority", "transform": "CAPITALIZE", "required": False},
            "description": {"toolParam": "description", "transform": "PASSTHROUGH", "required": False},
            "due_date": {"toolParam": "due_date", "transform": "PASSTHROUGH", "required": False},
            "related_record_id": {"toolParam": "what_id", "transform": "PASSTHROUGH", "required": False},
        },
    },
    {
        "action_type": "CREATE_OPPORTUNITY",
        "tool_name": "crm.create_opportunity",
        "tool_schema_version": "v1.0",
        "risk_class": "MEDIUM",
        "compensation_strategy": "AUTOMATIC",
        "compensation_tool_name": "crm.delete_opportunity",
        "parameter_mapping": {
            "name": {"toolParam": "name", "transform": "PASSTHROUGH", "required": True},
            "stage": {"toolParam": "stage_name", "transform": "PASSTHROUGH", "required": True},
            "close_date": {"toolParam": "close_date", "transform": "PASSTHROUGH", "required": True},
            "amount": {"toolParam": "amount", "transform": "PASSTHROUGH", "required": False},
            "account_record_id": {
                "toolParam": "account_record_id",
                "transform": "PASSTHROUGH",
                "required": False,
            },
            "description": {"toolParam": "description", "transform": "PASSTHROUGH", "required": False},
            "next_step": {"toolParam": "next_step", "transform": "PASSTHROUGH", "required": False},
        },
    },
    {
        "action_type": "UPDATE_OPPORTUNITY_STAGE",
        "tool_name": "crm.update_field",
        "tool_schema_version": "v1.0",
        "risk_class": "MEDIUM",
        "compensation_strategy": "AUTOMATIC",
        "compensation_tool_name": "crm.restore_field",
        "parameter_mapping": {
            "opportunity_id": {"toolParam": "record_id", "transform": "PASSTHROUGH", "required": True},
            "stage": {"toolParam": "stage_name", "transform": "PASSTHROUGH", "required": True},
        },
    },
    {
        "action_type": "UPDATE_ACCOUNT_FIELDS",
        "tool_name": "crm.update_field",
        "tool_schema_version": "v1.0",
        "risk_class": "MEDIUM",
        "compensation_strategy": "AUTOMATIC",
        "compensation_tool_name": "crm.restore_field",
        "parameter_mapping": {
            "account_record_id": {"toolParam": "record_id", "transform": "PASSTHROUGH", "required": True},
            "fields": {"toolParam": "fields", "transform": "PASSTHROUGH", "required": True},
        },
    },
)


def seed_default_registry(store: Store, now: str) -> None:
    """Insert version 1 of each default action type, once: re-seeding never adds versions."""
    with store.write() as uow:
        for fields in DEFAULT_ENTRIES:
            uow.registry.insert_version(
                RegistryEntry.model_validate({**fields, "registry_version": 1, "created_at": now})
            )


class RegistryDraft(BaseModel):
    """``POST /admin/registry`` body: a new version of an action type's mapping."""

    model_config = ConfigDict(extra="forbid")

    action_type: ActionType = Field(description="The intents' action_type this version maps (A-Z 0-9 _).")
    tool_name: ToolName = Field(
        description="The gateway's tool: a built-in connector's (internal.create_task, crm.create_task, …) "
        "or a registered target's {target}.{tool}."
    )
    tool_schema_version: str = Field(
        default="v1.0", min_length=1, max_length=32, description="A label of the tool's schema version."
    )
    required_scopes: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Scopes a token needs, besides intents:approve, to approve (or import approved) an "
        "intent pinned to this version.",
    )
    risk_class: RiskClass = Field(
        default=RiskClass.LOW,
        description="MINIMAL, LOW, MEDIUM or HIGH: copied onto every intent pinned to this version.",
    )
    compensation_strategy: CompensationStrategy = Field(
        default=CompensationStrategy.NONE,
        description="What a cancel after the write does: AUTOMATIC calls compensation_tool_name, MANUAL "
        "flags the execution's compensation_status PENDING for a person, NONE leaves the write.",
    )
    compensation_tool_name: ToolName | None = Field(
        default=None,
        description="The undo tool, required with AUTOMATIC. A remote target's is called once per ref the "
        "write returned, with object_id (the ref's id), the trusted arguments its input schema declares, "
        "and an idempotency key of its own (never the write's).",
    )
    parameter_mapping: dict[str, ParameterMapping] = Field(
        max_length=100,
        description="Intent parameter name → {toolParam, required, transform}. Only mapped parameters are "
        "sent to the tool; the mapped arguments are checked against its input schema at registration.",
    )


def register_version(
    store: Store, draft: RegistryDraft, now: str, tool_schemas: Mapping[str, dict[str, Any]]
) -> RegistryEntry:
    """Register the next version of an action type atomically.

    The mapping is checked against the tool's input schema first (an in-process connector's tool
    or a gateway target's, whose trusted arguments are set by the service either way). The version number is then
    allocated inside a write transaction and inserted under the table's primary key, so two
    concurrent registrations get distinct versions and neither is lost.
    """
    _check_against_tools(draft, tool_schemas)
    for _ in range(50):
        with store.write() as uow:
            version = (uow.registry.latest_version(draft.action_type) or 0) + 1
            try:
                entry = RegistryEntry.model_validate(
                    {**draft.model_dump(by_alias=True), "registry_version": version, "created_at": now}
                )
            except ValidationError as exc:
                raise Invalid(_describe(exc), code="INVALID_REGISTRY_ENTRY") from None
            if uow.registry.insert_version(entry):
                return entry
    raise Invalid("the registry is too busy to allocate a version; try again", code="REGISTRY_BUSY")


def _check_against_tools(draft: RegistryDraft, tool_schemas: Mapping[str, dict[str, Any]]) -> None:
    schema = tool_schemas.get(draft.tool_name)
    if schema is None:
        raise Invalid(f"the gateway has no tool {draft.tool_name}", code="UNKNOWN_TOOL")
    if draft.compensation_tool_name and draft.compensation_tool_name not in tool_schemas:
        raise Invalid(f"the gateway has no tool {draft.compensation_tool_name}", code="UNKNOWN_TOOL")
    properties = set(schema.get("properties", {}))
    trusted = set(TRUSTED_ARGUMENTS)
    unknown = sorted({rule.tool_param for rule in draft.parameter_mapping.values()} - properties)
    if unknown:
        raise Invalid(f"{draft.tool_name} has no argument(s) {', '.join(unknown)}", code="INVALID_MAPPING")
    if trusted & {rule.tool_param for rule in draft.parameter_mapping.values()}:
        raise Invalid(
            f"{', '.join(TRUSTED_ARGUMENTS)} are set by the service, not mapped", code="INVALID_MAPPING"
        )
    mapped_required = {rule.tool_param for rule in draft.parameter_mapping.values() if rule.required}
    unmapped = sorted(set(schema.get("required", [])) - trusted - mapped_required)
    if unmapped:
        raise Invalid(
            f"{draft.tool_name} requires {', '.join(unmapped)}: map a required parameter to each",
            code="INVALID_MAPPING",
        )


def list_versions(store: Store, action_type: str | None = None) -> list[RegistryEntry]:
    with store.read() as uow:
        return uow.registry.list_entries(action_type)


def deprecate_version(store: Store, action_type: str, registry_version: int, now: str) -> RegistryEntry:
    """New intents can no longer pin a deprecated version; intents that already pinned it still run."""
    with store.write() as uow:
        entry = uow.registry.get_entry(action_type, registry_version)
        if entry is None:
            raise NotFound(f"no registry version {registry_version} of {action_type}")
        if entry.deprecated_at is None:
            entry = entry.model_copy(update={"deprecated_at": now})
            uow.registry.mark_deprecated(entry)
        return entry


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()]
    return "; ".join(parts[:10])
