"""Stored kill switches: one global row and one row per tenant. Missing rows mean "enabled"."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig
from fulfill.store.db import insert_ignore
from fulfill.store.tables import global_execution_config, tenant_execution_config

_GLOBAL_ROW = "global"


def get_global(conn: Connection) -> GlobalExecutionConfig:
    row = conn.execute(
        select(global_execution_config).where(global_execution_config.c.config_id == _GLOBAL_ROW)
    ).first()
    if row is None:
        return GlobalExecutionConfig()
    return GlobalExecutionConfig(
        global_stop=row.global_stop,
        disabled_action_types=list(row.disabled_action_types),
        updated_at=row.updated_at,
    )


def put_global(conn: Connection, config: GlobalExecutionConfig, *, now: str) -> GlobalExecutionConfig:
    """Replace the global switches; returns what was stored."""
    config = config.model_copy(
        update={"disabled_action_types": sorted(set(config.disabled_action_types)), "updated_at": now}
    )
    conn.execute(delete(global_execution_config).where(global_execution_config.c.config_id == _GLOBAL_ROW))
    insert_ignore(
        conn,
        global_execution_config,
        {
            "config_id": _GLOBAL_ROW,
            "global_stop": config.global_stop,
            "disabled_action_types": config.disabled_action_types,
            "updated_at": now,
        },
    )
    return config


def get_tenant(conn: Connection, tenant_id: str) -> TenantExecutionConfig:
    row = conn.execute(
        select(tenant_execution_config).where(tenant_execution_config.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        return TenantExecutionConfig(tenant_id=tenant_id)
    return TenantExecutionConfig(
        tenant_id=tenant_id,
        execution_enabled=row.execution_enabled,
        disabled_action_types=list(row.disabled_action_types),
        updated_at=row.updated_at,
    )


def put_tenant(conn: Connection, config: TenantExecutionConfig, *, now: str) -> TenantExecutionConfig:
    """Replace one tenant's switches; returns what was stored."""
    config = config.model_copy(
        update={"disabled_action_types": sorted(set(config.disabled_action_types)), "updated_at": now}
    )
    conn.execute(
        delete(tenant_execution_config).where(tenant_execution_config.c.tenant_id == config.tenant_id)
    )
    insert_ignore(
        conn,
        tenant_execution_config,
        {
            "tenant_id": config.tenant_id,
            "execution_enabled": config.execution_enabled,
            "disabled_action_types": config.disabled_action_types,
            "updated_at": now,
        },
    )
    return config
