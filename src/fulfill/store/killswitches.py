"""Stored kill switches: one global row and one row per tenant. Missing rows mean "enabled".

A write is one atomic upsert (``INSERT … ON CONFLICT (key) DO UPDATE … RETURNING``) that also
increments the row's ``revision``: under READ COMMITTED, two concurrent writers are ordered by the
row lock, the later one wins, and each one returns exactly what it stored, so the value the last
writer was told is the value that stays. (A delete followed by an insert-if-absent would let the
second writer's insert find the first writer's new row, keep it, and still report its own.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, String, Table, bindparam, literal, select, union_all
from sqlalchemy.dialects import postgresql, sqlite

from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, StoredSwitches, SwitchSettings
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


def get_switches(conn: Connection, scope: KillSwitchScope, *, for_update: bool = False) -> StoredSwitches:
    """A scope's switches (missing row: nothing stopped, revision 0); ``for_update`` locks the row
    for a read-modify-write in this transaction (creating it, with the defaults, when it does not
    exist yet)."""
    table, key, key_value = _row_of(scope)
    if for_update:
        _ensure_row(conn, table, {key: key_value, **_stop_column(scope, SwitchSettings())})
    query = select(table).where(table.c[key] == key_value)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        return StoredSwitches(scope=scope)
    return _stored(scope, row, updated_at=row.updated_at or None)


def put_switches(
    conn: Connection, scope: KillSwitchScope, settings: SwitchSettings, *, now: str
) -> StoredSwitches:
    """Replace a scope's switches atomically; returns what was stored, with its revision."""
    table, key, key_value = _row_of(scope)
    row = _upsert(
        conn,
        table,
        key=key,
        values={
            key: key_value,
            **_stop_column(scope, settings),
            "disabled_action_types": sorted(set(settings.disabled_action_types)),
            "updated_at": now,
        },
    )
    return _stored(scope, row, updated_at=row.updated_at)


# The engine's evaluator reads both scopes as their configs (and tests write them so).


def get_global(conn: Connection, *, for_update: bool = False) -> StoredGlobalConfig:
    stored = get_switches(conn, GLOBAL_SCOPE, for_update=for_update)
    return StoredGlobalConfig(**stored.global_config().model_dump(), revision=stored.revision)


def put_global(conn: Connection, config: GlobalExecutionConfig, *, now: str) -> StoredGlobalConfig:
    settings = SwitchSettings(config.global_stop, tuple(config.disabled_action_types))
    stored = put_switches(conn, GLOBAL_SCOPE, settings, now=now)
    return StoredGlobalConfig(**stored.global_config().model_dump(), revision=stored.revision)


def get_tenant(conn: Connection, tenant_id: str, *, for_update: bool = False) -> StoredTenantConfig:
    stored = get_switches(conn, KillSwitchScope.of_tenant(tenant_id), for_update=for_update)
    return StoredTenantConfig(**stored.tenant_config().model_dump(), revision=stored.revision)


# Read before every tool call and by every approval's warning: built once, the tenant bound at
# execution (a statement built per call costs its construction and its cache key each time).
_GLOBAL_AND_TENANT = union_all(
    select(
        literal(_GLOBAL_ROW, String).label("scope"),
        global_execution_config.c.global_stop.label("flag"),
        global_execution_config.c.disabled_action_types,
        global_execution_config.c.updated_at,
        global_execution_config.c.revision,
    ).where(global_execution_config.c.config_id == _GLOBAL_ROW),
    select(
        literal("tenant", String).label("scope"),
        tenant_execution_config.c.execution_enabled.label("flag"),
        tenant_execution_config.c.disabled_action_types,
        tenant_execution_config.c.updated_at,
        tenant_execution_config.c.revision,
    ).where(tenant_execution_config.c.tenant_id == bindparam("k_tenant_id")),
)


def get_global_and_tenant(conn: Connection, tenant_id: str) -> tuple[StoredGlobalConfig, StoredTenantConfig]:
    """The global switches and a tenant's, as :func:`get_global` and :func:`get_tenant` read them,
    in one statement (``UNION ALL`` of the two rows): what every check before an execution's tool
    call reads."""
    rows = {row.scope: row for row in conn.execute(_GLOBAL_AND_TENANT, {"k_tenant_id": tenant_id})}
    global_scope, tenant_scope = GLOBAL_SCOPE, KillSwitchScope.of_tenant(tenant_id)
    stored_global = _stored_flag(global_scope, rows.get(_GLOBAL_ROW), stopped_when=True)
    stored_tenant = _stored_flag(tenant_scope, rows.get("tenant"), stopped_when=False)
    return (
        StoredGlobalConfig(**stored_global.global_config().model_dump(), revision=stored_global.revision),
        StoredTenantConfig(**stored_tenant.tenant_config().model_dump(), revision=stored_tenant.revision),
    )


def _stored_flag(scope: KillSwitchScope, row: Any, *, stopped_when: bool) -> StoredSwitches:
    """A scope's switches from a row of :func:`get_global_and_tenant` (None: no row, nothing stopped)."""
    if row is None:
        return StoredSwitches(scope=scope)
    return StoredSwitches(
        scope=scope,
        settings=SwitchSettings(bool(row.flag) is stopped_when, tuple(row.disabled_action_types)),
        updated_at=row.updated_at or None,
        revision=row.revision,
    )


def put_tenant(conn: Connection, config: TenantExecutionConfig, *, now: str) -> StoredTenantConfig:
    settings = SwitchSettings(not config.execution_enabled, tuple(config.disabled_action_types))
    stored = put_switches(conn, KillSwitchScope.of_tenant(config.tenant_id), settings, now=now)
    return StoredTenantConfig(**stored.tenant_config().model_dump(), revision=stored.revision)


def _row_of(scope: KillSwitchScope) -> tuple[Table, str, str]:
    """The table, key column and key of a scope's row."""
    if scope.tenant_id is None:
        return global_execution_config, "config_id", _GLOBAL_ROW
    return tenant_execution_config, "tenant_id", scope.tenant_id


def _stop_column(scope: KillSwitchScope, settings: SwitchSettings) -> dict[str, bool]:
    if scope.is_global:
        return {"global_stop": settings.stopped}
    return {"execution_enabled": not settings.stopped}


def _stored(scope: KillSwitchScope, row: Any, *, updated_at: str | None) -> StoredSwitches:
    stopped = bool(row.global_stop) if scope.is_global else not row.execution_enabled
    return StoredSwitches(
        scope=scope,
        settings=SwitchSettings(stopped, tuple(row.disabled_action_types)),
        updated_at=updated_at,
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

    def get_switches(self, scope: KillSwitchScope, *, for_update: bool = False) -> StoredSwitches:
        return get_switches(self._conn, scope, for_update=for_update)

    def put_switches(self, scope: KillSwitchScope, settings: SwitchSettings, *, now: str) -> StoredSwitches:
        return put_switches(self._conn, scope, settings, now=now)

    def get_global(self, *, for_update: bool = False) -> StoredGlobalConfig:
        return get_global(self._conn, for_update=for_update)

    def put_global(self, config: GlobalExecutionConfig, *, now: str) -> StoredGlobalConfig:
        return put_global(self._conn, config, now=now)

    def get_tenant(self, tenant_id: str, *, for_update: bool = False) -> StoredTenantConfig:
        return get_tenant(self._conn, tenant_id, for_update=for_update)

    def put_tenant(self, config: TenantExecutionConfig, *, now: str) -> StoredTenantConfig:
        return put_tenant(self._conn, config, now=now)

    def get_global_and_tenant(self, tenant_id: str) -> tuple[StoredGlobalConfig, StoredTenantConfig]:
        return get_global_and_tenant(self._conn, tenant_id)

    def tenant_summary(self) -> TenantSwitchSummary:
        return tenant_summary(self._conn)
