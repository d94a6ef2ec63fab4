"""Operating the service: kill switches and tenant execution config (admin scope)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, StoredSwitches, SwitchSettings
from fulfill.domain.ledger import kill_switch_entry, switches_ledger_subject, switches_ledger_tenant
from fulfill.domain.models import ActionType, LedgerEntry
from fulfill.ports.store import Store, UnitOfWork
from fulfill.tokens import Principal
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import NotFound
from fulfill.usecases.notifications import NoticeSettings, enqueue_kill_switch_notices

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

    @classmethod
    def of(cls, stored: StoredSwitches) -> KillSwitches:
        return cls(
            **stored.settings.fields(stored.scope), revision=stored.revision, updated_at=stored.updated_at
        )

    def settings(self) -> SwitchSettings:
        return SwitchSettings(self.global_stop, tuple(self.disabled_action_types))


class TenantExecution(BaseModel):
    """``GET|PUT /admin/tenants/{tenant_id}/execution`` (written like :class:`KillSwitches`)."""

    model_config = ConfigDict(extra="forbid")

    execution_enabled: bool
    disabled_action_types: ActionTypes
    revision: int | None = _REVISION
    updated_at: str | None = _UPDATED_AT

    @classmethod
    def of(cls, stored: StoredSwitches) -> TenantExecution:
        return cls(
            **stored.settings.fields(stored.scope), revision=stored.revision, updated_at=stored.updated_at
        )

    def settings(self) -> SwitchSettings:
        return SwitchSettings(not self.execution_enabled, tuple(self.disabled_action_types))


# --- one path for both scopes: read, write (with its ledger entry), change, history ---------------


def read_switches(store: Store, scope: KillSwitchScope) -> StoredSwitches:
    with store.read() as uow:
        return uow.killswitches.get_switches(scope)


def write_switches(
    rt: UseCaseContext, scope: KillSwitchScope, settings: SwitchSettings, *, changed_by: str
) -> StoredSwitches:
    """Store a scope's switches, and who changed them in the ledger (one transaction)."""
    with rt.store.write() as uow:
        stored = store_switches(
            uow, scope, settings, now=rt.clock.now_iso(), changed_by=changed_by, notify=rt.settings
        )
    rt.outbox_wakeup.set()  # the change's notices, if any, go out now
    return stored


def change_switches(
    store: Store,
    scope: KillSwitchScope,
    change: Callable[[SwitchSettings], SwitchSettings],
    *,
    now: str,
    changed_by: str,
    notify: NoticeSettings | None = None,
) -> StoredSwitches:
    """Apply ``change`` to a scope's current switches, read locked in the same transaction as the
    write, so two concurrent changes both stay (a switch one of them turns on is not lost)."""
    with store.write() as uow:
        current = uow.killswitches.get_switches(scope, for_update=True)
        return store_switches(
            uow, scope, change(current.settings), now=now, changed_by=changed_by, notify=notify
        )


def store_switches(
    uow: UnitOfWork,
    scope: KillSwitchScope,
    settings: SwitchSettings,
    *,
    now: str,
    changed_by: str,
    notify: NoticeSettings | None = None,
) -> StoredSwitches:
    """Write a scope's switches and a ``KILL_SWITCH_CHANGED`` ledger entry in the caller's
    transaction; with ``notify``, also the ``KILL_SWITCH_CHANGED`` notices (a tenant's switches to
    that tenant's channels, the global ones to every tenant's)."""
    stored = uow.killswitches.put_switches(scope, settings, now=now)
    uow.executions.append_ledger(kill_switch_entry(stored, changed_by=changed_by))
    if notify is not None:
        enqueue_kill_switch_notices(uow, notify, stored, changed_by=changed_by, now=now)
    return stored


def kill_switch_history(store: Store, scope: KillSwitchScope, *, limit: int = 20) -> list[LedgerEntry]:
    """The latest changes (newest first) of a scope's switches. Callers check the scope: the
    global history needs ``platform:admin``, a tenant's ``admin`` of that tenant."""
    with store.read() as uow:
        return uow.executions.list_ledger(
            switches_ledger_tenant(scope), switches_ledger_subject(scope), newest=limit
        )


def own_tenant(principal: Principal, tenant_id: str) -> KillSwitchScope:
    """A tenant admin's scope: only the token's own tenant (another tenant's is a 404, as if it
    did not exist)."""
    if tenant_id != principal.tenant_id:
        raise NotFound("tenant not found")
    return KillSwitchScope.of_tenant(tenant_id)


# --- the HTTP answers of each scope -----------------------------------------------------------------


def get_kill_switches(rt: UseCaseContext) -> KillSwitches:
    return KillSwitches.of(read_switches(rt.store, GLOBAL_SCOPE))


def put_kill_switches(rt: UseCaseContext, body: KillSwitches, *, changed_by: str) -> KillSwitches:
    """Store the switches in the body (its ``revision`` and ``updated_at`` are ignored)."""
    return KillSwitches.of(write_switches(rt, GLOBAL_SCOPE, body.settings(), changed_by=changed_by))


def get_tenant_execution(rt: UseCaseContext, principal: Principal, tenant_id: str) -> TenantExecution:
    return TenantExecution.of(read_switches(rt.store, own_tenant(principal, tenant_id)))


def put_tenant_execution(
    rt: UseCaseContext, principal: Principal, tenant_id: str, body: TenantExecution
) -> TenantExecution:
    """Store the tenant's switches in the body (its ``revision`` and ``updated_at`` are ignored)."""
    scope = own_tenant(principal, tenant_id)
    return TenantExecution.of(write_switches(rt, scope, body.settings(), changed_by=principal.subject))
