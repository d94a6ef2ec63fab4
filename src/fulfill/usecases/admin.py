"""Operating the service: kill switches and tenant execution config (admin scope)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.models import ActionType, GlobalExecutionConfig, TenantExecutionConfig
from fulfill.engine.runtime import Runtime
from fulfill.store import killswitches
from fulfill.tokens import Principal
from fulfill.usecases.errors import NotFound

ActionTypes = Annotated[list[ActionType], Field(max_length=200)]


class KillSwitches(BaseModel):
    """``GET|PUT /admin/kill-switches``: the stored global switches."""

    model_config = ConfigDict(extra="forbid")

    global_stop: bool
    disabled_action_types: ActionTypes


class TenantExecution(BaseModel):
    """``GET|PUT /admin/tenants/{tenant_id}/execution``."""

    model_config = ConfigDict(extra="forbid")

    execution_enabled: bool
    disabled_action_types: ActionTypes


def get_kill_switches(rt: Runtime) -> KillSwitches:
    with rt.db.read() as conn:
        stored = killswitches.get_global(conn)
    return KillSwitches(global_stop=stored.global_stop, disabled_action_types=stored.disabled_action_types)


def put_kill_switches(rt: Runtime, body: KillSwitches) -> KillSwitches:
    with rt.db.write() as conn:
        stored = killswitches.put_global(
            conn,
            GlobalExecutionConfig(
                global_stop=body.global_stop, disabled_action_types=body.disabled_action_types
            ),
            now=rt.clock.now_iso(),
        )
    return KillSwitches(global_stop=stored.global_stop, disabled_action_types=stored.disabled_action_types)


def _own_tenant(principal: Principal, tenant_id: str) -> None:
    if tenant_id != principal.tenant_id:
        raise NotFound("tenant not found")


def get_tenant_execution(rt: Runtime, principal: Principal, tenant_id: str) -> TenantExecution:
    _own_tenant(principal, tenant_id)
    with rt.db.read() as conn:
        stored = killswitches.get_tenant(conn, tenant_id)
    return TenantExecution(
        execution_enabled=stored.execution_enabled, disabled_action_types=stored.disabled_action_types
    )


def put_tenant_execution(
    rt: Runtime, principal: Principal, tenant_id: str, body: TenantExecution
) -> TenantExecution:
    _own_tenant(principal, tenant_id)
    with rt.db.write() as conn:
        stored = killswitches.put_tenant(
            conn,
            TenantExecutionConfig(
                tenant_id=tenant_id,
                execution_enabled=body.execution_enabled,
                disabled_action_types=body.disabled_action_types,
            ),
            now=rt.clock.now_iso(),
        )
    return TenantExecution(
        execution_enabled=stored.execution_enabled, disabled_action_types=stored.disabled_action_types
    )
