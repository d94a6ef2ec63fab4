"""Stored kill switches: one global row and one row per tenant. Missing rows mean "enabled".

A write is one atomic upsert (``INSERT … ON CONFLICT (key) DO UPDATE … RETURNING``) that also
increments the row's ``revision``: under READ COMMITTED, two concurrent writers are ordered by the
row lock, the later one wins, and each one returns exactly what it stored, so the value the last
writer was told is the value that stays. (A delete followed by an insert-if-absent would let the
second writer's insert find the first writer's new row, keep it, and still report its own.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig
from fulfill.domain.records import (
    StoredGlobalConfig as StoredGlobalConfig,
)
from fulfill.domain.records import (
    StoredTenantConfig as StoredTenantConfig,
)
from fulfill.domain.records import (
    TenantSwitchSummary as TenantSwitchSummary,
)
from fulfill.store.tables import global_execution_config, tenant_execution_config

_GLOBAL_ROW = "global"


def get_global(conn: Connection, *, for_update: bool = False) -> StoredGlobalConfig:
    """The global switches; ``for_update`` locks the row for a read-modify-write in this
    transaction (creating it, with the defaults, when it does not exist yet)."""
    if for_update:
        _ensure_row(conn, global_execution_config, {"config_id": _GLOBAL_ROW, "global_stop": False})
    query = select(global_execution_config).where(global_execution_config.c.config_id == _GLOBAL_ROW)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        return StoredGlobalConfig()
    return StoredGlobalConfig(
        global_stop=row.global_stop,
        disabled_action_types=list(row.disabled_action_types),
        updated_at=row.updated_at or None,
        revision=row.revision,
    )


def put_global(conn: Connection, config: GlobalExecutionConfig, *, now: str) -> StoredGlobalConfig:
    """Replace the global switches atomically; returns what was stored, with its revision."""
    row = _upsert(
        conn,
        global_execution_config,
        key="config_id",
        values={
            "config_id": _GLOBAL_ROW,
            "global_stop": config.global_stop,
            "disabled_action_types": sorted(set(config.disabled_action_types)),
            "updated_at": now,
        },
    )
    return StoredGlobalConfig(
        global_stop=row.global_stop,
        disabled_action_types=list(row.disabled_action_types),
        updated_at=row.updated_at,
        revision=row.revision,
    )


def get_tenant(conn: Connection, tenant_id: str, *, for_update: bool = False) -> StoredTenantConfig:
    """A tenant's switches; ``for_update`` as in :func:`get_global`."""
    if for_update:
        _ensure_row(conn, tenant_execution_config, {"tenant_id": tenant_id, "execution_enabled": True})
    query = select(tenant_execution_config).where(tenant_execution_config.c.tenant_id == tenant_id)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        return StoredTenantConfig(tenant_id=tenant_id)
    return StoredTenantConfig(
        tenant_id=tenant_id,
        execution_enabled=row.execution_enabled,
        disabled_action_types=list(row.disabled_action_types),
        updated_at=row.updated_at or None,
        revision=row.revision,
    )


def put_tenant(conn: Connection, config: TenantExecutionConfig, *, now: str) -> StoredTenantConfig:
    """Replace one tenant's switches atomically; returns what was stored, with its revision."""
    row = _upsert(
        conn,
        tenant_execution_config,
        key="tenant_id",
        values={
            "tenant_id": config.tenant_id,
            "execution_enabled": config.execution_enabled,
            "disabled_action_types": sorted(set(config.disabled_action_types)),
            "updated_at": now,
        },
    )
    return StoredTenantConfig(
        tenant_id=row.tenant_id,
        execution_enabled=row.execution_enabled,
        disabled_action_types=list(row.disabled_action_types),
        updated_at=row.updated_at,
        revision=row.revision,
    )


def tenant_summary(conn: Connection) -> TenantSwitchSummary:
    """One read of every tenant row (rows exist only for tenants whose switches were written)."""
    rows = conn.execute(
        select(
            tenant_execution_config.c.tenant_id,
            tenant_execution_config.c.execution_enabled,
            tenant_execution_config.c.disabled_action_types,
        )
    ).all()
    return TenantSwitchSummary(
        stopped_tenants=[str(row.tenant_id) for row in rows if not row.execution_enabled],
        disabled_action_types=sum(len(row.disabled_action_types or []) for row in rows),
    )


def _dialect_insert(conn: Connection, table: Table) -> Any:
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def _upsert(conn: Connection, table: Table, *, key: str, values: dict[str, Any]) -> Any:
    statement = _dialect_insert(conn, table).values(**values, revision=1)
    changes = {name: statement.excluded[name] for name in values if name != key}
    changes["revision"] = table.c.revision + 1
    return conn.execute(
        statement.on_conflict_do_update(index_elements=[table.c[key]], set_=changes).returning(table)
    ).one()


def _ensure_row(conn: Connection, table: Table, values: dict[str, Any]) -> None:
    """Insert the default row if there is none, leaving an existing row (and its revision) alone."""
    row = {**values, "disabled_action_types": [], "updated_at": "", "revision": 0}
    conn.execute(_dialect_insert(conn, table).values(**row).on_conflict_do_nothing())


class SqlKillSwitchesRepository:
    """The killswitches repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_global(self, *, for_update: bool = False) -> StoredGlobalConfig:
        return get_global(self._conn, for_update=for_update)

    def put_global(self, config: GlobalExecutionConfig, *, now: str) -> StoredGlobalConfig:
        return put_global(self._conn, config, now=now)

    def get_tenant(self, tenant_id: str, *, for_update: bool = False) -> StoredTenantConfig:
        return get_tenant(self._conn, tenant_id, for_update=for_update)

    def put_tenant(self, config: TenantExecutionConfig, *, now: str) -> StoredTenantConfig:
        return put_tenant(self._conn, config, now=now)

    def tenant_summary(self) -> TenantSwitchSummary:
        return tenant_summary(self._conn)
