"""The action-type registry: the seeded defaults and registration of new versions."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fulfill.domain.models import RegistryEntry
from fulfill.store import registry
from fulfill.store.db import Database
from fulfill.usecases.errors import Invalid

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
)


def seed_default_registry(db: Database, now: str) -> None:
    """Insert version 1 of each default action type, once: re-seeding never adds versions."""
    with db.write() as conn:
        for fields in DEFAULT_ENTRIES:
            registry.insert_version(
                conn, RegistryEntry.model_validate({**fields, "registry_version": 1, "created_at": now})
            )


def register_version(db: Database, fields: dict[str, Any], now: str) -> RegistryEntry:
    """Register the next version of an action type atomically.

    The version number is allocated inside a write transaction and inserted under the table's
    primary key, so two concurrent registrations get distinct versions and neither is lost.
    """
    for _ in range(20):
        with db.write() as conn:
            version = (registry.latest_version(conn, str(fields.get("action_type", ""))) or 0) + 1
            try:
                entry = RegistryEntry.model_validate(
                    {**fields, "registry_version": version, "created_at": now, "deprecated_at": None}
                )
            except ValidationError as exc:
                raise Invalid(_describe(exc), code="INVALID_REGISTRY_ENTRY") from None
            if registry.insert_version(conn, entry):
                return entry
    raise Invalid("the registry is too busy to allocate a version; try again", code="REGISTRY_BUSY")


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()]
    return "; ".join(parts[:10])
