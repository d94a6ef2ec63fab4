"""Operating the service: kill switches and tenant execution config (admin scope)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from fulfill.domain.ledger import GLOBAL_SWITCHES_SUBJECT, PLATFORM_LEDGER_TENANT, TENANT_SWITCHES_SUBJECT
from fulfill.domain.ledger import kill_switch_entry as _kill_switch_entry
from fulfill.domain.models import ActionType, GlobalExecutionConfig, LedgerEntry, TenantExecutionConfig
from fulfill.engine.runtime import Runtime
from fulfill.store import executions, killswitches
from fulfill.tokens import Principal
from fulfill.usecases.errors import NotFound

ActionTypes = Annotated[list[ActionType], Field(max_length=200)]


_REVISION = Field(
    default=None,
    ge=0,
    description="Set by the service in every answer: how many times these switches were written "
    "(0 = never). Ignored when sent, so a client may PUT back what it got.",
)
_UPDATED_AT = Field(
    default=None,
    max_length=64,
    description="Set by the service in every answer: when these switches were last written "
    "(null = never). Ignored when sent.",
)


class KillSwitches(BaseModel):
    """``GET|PUT /admin/kill-switches``: the stored global switches.

    A PUT replaces both switches atomically, and its answer is what was stored by that PUT: of
    several concurrent PUTs, the one whose answer has the highest ``revision`` is the one that
    stays.
    """

    model_config = ConfigDict(extra="forbid")

    global_stop: bool
    disabled_action_types: ActionTypes
    revision: int | None = _REVISION
    updated_at: str | None = _UPDATED_AT


class TenantExecution(BaseModel):
    """``GET|PUT /admin/tenants/{tenant_id}/execution`` (written like :class:`KillSwitches`)."""

    model_config = ConfigDict(extra="forbid")

    execution_enabled: bool
    disabled_action_types: ActionTypes
    revision: int | None = _REVISION
    updated_at: str | None = _UPDATED_AT


def _global_answer(stored: killswitches.StoredGlobalConfig) -> KillSwitches:
    return KillSwitches(
        global_stop=stored.global_stop,
        disabled_action_types=stored.disabled_action_types,
        revision=stored.revision,
        updated_at=stored.updated_at,
    )


def _tenant_answer(stored: killswitches.StoredTenantConfig) -> TenantExecution:
    return TenantExecution(
        execution_enabled=stored.execution_enabled,
        disabled_action_types=stored.disabled_action_types,
        revision=stored.revision,
        updated_at=stored.updated_at,
    )


def get_kill_switches(rt: Runtime) -> KillSwitches:
    with rt.db.read() as conn:
        return _global_answer(killswitches.get_global(conn))


def put_kill_switches(rt: Runtime, body: KillSwitches, *, changed_by: str) -> KillSwitches:
    """Store the switches in the body (its ``revision`` and ``updated_at`` are ignored), and who
    changed them in the ledger."""
    with rt.db.write() as conn:
        stored = store_global(
            conn,
            GlobalExecutionConfig(
                global_stop=body.global_stop, disabled_action_types=body.disabled_action_types
            ),
            now=rt.clock.now_iso(),
            changed_by=changed_by,
        )
    return _global_answer(stored)


def store_global(
    conn: Connection, config: GlobalExecutionConfig, *, now: str, changed_by: str
) -> killswitches.StoredGlobalConfig:
    """Write the global switches and a ``KILL_SWITCH_CHANGED`` ledger entry in one transaction."""
    stored = killswitches.put_global(conn, config, now=now)
    executions.append_ledger(
        conn,
        _kill_switch_entry(
            tenant_id=None,
            revision=stored.revision,
            timestamp=now,
            changed_by=changed_by,
            switches={
                "global_stop": stored.global_stop,
                "disabled_action_types": stored.disabled_action_types,
            },
        ),
    )
    return stored


def store_tenant(
    conn: Connection, config: TenantExecutionConfig, *, now: str, changed_by: str
) -> killswitches.StoredTenantConfig:
    """Write a tenant's switches and a ``KILL_SWITCH_CHANGED`` ledger entry in one transaction."""
    stored = killswitches.put_tenant(conn, config, now=now)
    executions.append_ledger(
        conn,
        _kill_switch_entry(
            tenant_id=config.tenant_id,
            revision=stored.revision,
            timestamp=now,
            changed_by=changed_by,
            switches={
                "execution_enabled": stored.execution_enabled,
                "disabled_action_types": stored.disabled_action_types,
            },
        ),
    )
    return stored


def kill_switch_history(rt: Runtime, tenant_id: str | None, *, limit: int = 20) -> list[LedgerEntry]:
    """The latest changes (newest first) of the global switches (``tenant_id`` None) or of one
    tenant's. Callers check the scope: the global history needs ``platform:admin``, a tenant's
    ``admin`` of that tenant."""
    with rt.db.read() as conn:
        if tenant_id is None:
            return executions.list_ledger(conn, PLATFORM_LEDGER_TENANT, GLOBAL_SWITCHES_SUBJECT, newest=limit)
        return executions.list_ledger(conn, tenant_id, TENANT_SWITCHES_SUBJECT, newest=limit)


def _own_tenant(principal: Principal, tenant_id: str) -> None:
    if tenant_id != principal.tenant_id:
        raise NotFound("tenant not found")


own_tenant = _own_tenant  # the same rule for the routes of a tenant's own connector caps


def get_tenant_execution(rt: Runtime, principal: Principal, tenant_id: str) -> TenantExecution:
    _own_tenant(principal, tenant_id)
    with rt.db.read() as conn:
        return _tenant_answer(killswitches.get_tenant(conn, tenant_id))


def put_tenant_execution(
    rt: Runtime, principal: Principal, tenant_id: str, body: TenantExecution
) -> TenantExecution:
    """Store the tenant's switches in the body (its ``revision`` and ``updated_at`` are ignored),
    and who changed them in the ledger."""
    _own_tenant(principal, tenant_id)
    with rt.db.write() as conn:
        stored = store_tenant(
            conn,
            TenantExecutionConfig(
                tenant_id=tenant_id,
                execution_enabled=body.execution_enabled,
                disabled_action_types=body.disabled_action_types,
            ),
            now=rt.clock.now_iso(),
            changed_by=principal.subject,
        )
    return _tenant_answer(stored)
