"""The versioned action-type registry. Versions are immutable; registering adds the next one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from fulfill.domain.models import RegistryEntry
from fulfill.store.db import insert_ignore
from fulfill.store.tables import action_type_registry

# Versions are stored in an INTEGER column: a larger number names no version (PostgreSQL would
# refuse to compare it with the column at all).
MAX_VERSION = 2**31 - 1

# Read by every intent's creation and approval: built once, the values bound at execution (a
# statement built per call costs its construction and its cache key each time).
_GET_ENTRY = select(action_type_registry.c.document).where(
    action_type_registry.c.action_type == bindparam("k_action_type"),
    action_type_registry.c.registry_version == bindparam("k_registry_version"),
)
_LATEST_ACTIVE_ENTRY = (
    select(action_type_registry.c.document)
    .where(
        action_type_registry.c.action_type == bindparam("k_action_type"),
        action_type_registry.c.deprecated_at.is_(None),
    )
    .order_by(action_type_registry.c.registry_version.desc())
    .limit(1)
)


def get_entry(conn: Connection, action_type: str, registry_version: int) -> RegistryEntry | None:
    if not 1 <= registry_version <= MAX_VERSION:
        return None
    row = conn.execute(
        _GET_ENTRY, {"k_action_type": action_type, "k_registry_version": registry_version}
    ).first()
    return RegistryEntry.model_validate(row.document) if row else None


def latest_version(conn: Connection, action_type: str) -> int | None:
    """The highest version, deprecated ones included (``latest`` is never the newest timestamp)."""
    value = conn.execute(
        select(func.max(action_type_registry.c.registry_version)).where(
            action_type_registry.c.action_type == action_type
        )
    ).scalar_one_or_none()
    return int(value) if value is not None else None


def latest_active_entry(conn: Connection, action_type: str) -> RegistryEntry | None:
    row = conn.execute(_LATEST_ACTIVE_ENTRY, {"k_action_type": action_type}).first()
    return RegistryEntry.model_validate(row.document) if row else None


def list_entries(conn: Connection, action_type: str | None = None) -> list[RegistryEntry]:
    query = select(action_type_registry.c.document).order_by(
        action_type_registry.c.action_type, action_type_registry.c.registry_version
    )
    if action_type is not None:
        query = query.where(action_type_registry.c.action_type == action_type)
    return [RegistryEntry.model_validate(row.document) for row in conn.execute(query).all()]


def insert_version(conn: Connection, entry: RegistryEntry) -> bool:
    """Insert exactly this version; False when the version number is already taken."""
    values: dict[str, Any] = {
        "action_type": entry.action_type,
        "registry_version": entry.registry_version,
        "tool_name": entry.tool_name,
        "created_at": entry.created_at,
        "deprecated_at": entry.deprecated_at,
        "document": entry.model_dump(mode="json"),
    }
    return insert_ignore(conn, action_type_registry, values)


def mark_deprecated(conn: Connection, entry: RegistryEntry) -> None:
    conn.execute(
        update(action_type_registry)
        .where(
            action_type_registry.c.action_type == entry.action_type,
            action_type_registry.c.registry_version == entry.registry_version,
        )
        .values(deprecated_at=entry.deprecated_at, document=entry.model_dump(mode="json"))
    )


class SqlRegistryRepository:
    """The registry repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_entry(self, action_type: str, registry_version: int) -> RegistryEntry | None:
        return get_entry(self._conn, action_type, registry_version)

    def latest_version(self, action_type: str) -> int | None:
        return latest_version(self._conn, action_type)

    def latest_active_entry(self, action_type: str) -> RegistryEntry | None:
        return latest_active_entry(self._conn, action_type)

    def list_entries(self, action_type: str | None = None) -> list[RegistryEntry]:
        return list_entries(self._conn, action_type)

    def insert_version(self, entry: RegistryEntry) -> bool:
        return insert_version(self._conn, entry)

    def mark_deprecated(self, entry: RegistryEntry) -> None:
        return mark_deprecated(self._conn, entry)
