"""``/admin``: kill switches, a tenant's execution config, the action-type registry, the
gateway's targets, the connectors' flow control, and the outbox's dead letters.

The global kill switches, the registry, the gateway targets and the connectors' limits affect
every tenant: they need ``platform:admin``. A tenant's execution config needs ``admin`` and is
only ever the token's own tenant (another tenant's is a 404). Dead letters: a platform admin
lists and redelivers every tenant's (``/admin/outbox/...``), a tenant's admin only its own
(``/admin/tenants/{id}/outbox/...``); see ``usecases/outbox.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel

from fulfill.api.auth import require_scope
from fulfill.api.deps import ServiceContext, Targets
from fulfill.api.problems import PROBLEM
from fulfill.api.routing import OneHopRoute
from fulfill.domain.flowcontrol import CONNECTOR_NAME_PATTERN
from fulfill.domain.models import RegistryEntry
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases import admin, connectors, registry
from fulfill.usecases import outbox as dead_letters
from fulfill.usecases.admin import KillSwitches, TenantExecution
from fulfill.usecases.connectors import ConnectorLimitsBody, ConnectorView, TenantCapBody, TenantCapView
from fulfill.usecases.outbox import DeadLetterListing, RedeliverBody, Redelivered
from fulfill.usecases.registry import RegistryDraft
from fulfill.usecases.targets import TargetDraft, TargetListing, TargetView

router = APIRouter(prefix="/admin", tags=["admin"], route_class=OneHopRoute)
TenantAdmin = Annotated[Principal, Depends(require_scope(Scope.ADMIN))]
PlatformAdmin = Annotated[Principal, Depends(require_scope(Scope.PLATFORM_ADMIN))]
TenantId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ActionTypePath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Z][A-Z0-9_]*$")]
TargetNamePath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
ConnectorName = Annotated[str, Path(min_length=1, max_length=64, pattern=CONNECTOR_NAME_PATTERN)]
_ERRORS: dict[int | str, dict[str, Any]] = {401: PROBLEM, 403: PROBLEM, 422: PROBLEM}


class RegistryListing(BaseModel):
    entries: list[RegistryEntry]


@router.get("/kill-switches", response_model=KillSwitches, responses=_ERRORS)
def get_kill_switches(ctx: ServiceContext, _admin: PlatformAdmin) -> KillSwitches:
    return admin.get_kill_switches(ctx)


@router.put("/kill-switches", response_model=KillSwitches, responses=_ERRORS)
def put_kill_switches(body: KillSwitches, ctx: ServiceContext, principal: PlatformAdmin) -> KillSwitches:
    return admin.put_kill_switches(ctx, body, changed_by=principal.subject)


@router.get(
    "/tenants/{tenant_id}/execution", response_model=TenantExecution, responses={**_ERRORS, 404: PROBLEM}
)
def get_tenant_execution(tenant_id: TenantId, ctx: ServiceContext, principal: TenantAdmin) -> TenantExecution:
    return admin.get_tenant_execution(ctx, principal, tenant_id)


@router.put(
    "/tenants/{tenant_id}/execution", response_model=TenantExecution, responses={**_ERRORS, 404: PROBLEM}
)
def put_tenant_execution(
    tenant_id: TenantId, body: TenantExecution, ctx: ServiceContext, principal: TenantAdmin
) -> TenantExecution:
    return admin.put_tenant_execution(ctx, principal, tenant_id, body)


@router.get("/registry", response_model=RegistryListing, responses=_ERRORS)
def list_registry(
    ctx: ServiceContext,
    _admin: PlatformAdmin,
    action_type: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Z][A-Z0-9_]*$")] = None,
) -> RegistryListing:
    return RegistryListing(entries=registry.list_versions(ctx.store, action_type))


@router.post("/registry", status_code=201, response_model=RegistryEntry, responses=_ERRORS)
def register(body: RegistryDraft, ctx: ServiceContext, _admin: PlatformAdmin) -> RegistryEntry:
    return registry.register_version(ctx.store, body, ctx.clock.now_iso(), ctx.tool_schemas)


@router.post(
    "/registry/{action_type}/versions/{registry_version}/deprecate",
    response_model=RegistryEntry,
    responses={**_ERRORS, 404: PROBLEM},
)
def deprecate(
    action_type: ActionTypePath,
    registry_version: Annotated[int, Path(ge=1, le=1_000_000)],
    ctx: ServiceContext,
    _admin: PlatformAdmin,
) -> RegistryEntry:
    return registry.deprecate_version(ctx.store, action_type, registry_version, ctx.clock.now_iso())


# --- gateway targets: remote MCP servers whose tools the gateway serves as "{name}.{tool}" -------


@router.get("/gateway/targets", response_model=TargetListing, responses=_ERRORS)
def list_targets(targets: Targets, _admin: PlatformAdmin) -> TargetListing:
    return targets.list()


@router.post(
    "/gateway/targets", status_code=201, response_model=TargetView, responses={**_ERRORS, 409: PROBLEM}
)
def add_target(body: TargetDraft, targets: Targets, _admin: PlatformAdmin) -> TargetView:
    """Register a remote MCP server: its tools are discovered (``tools/list``) and served as
    ``{name}.{tool}``. The answer never contains the target's secret."""
    return targets.add(body)


@router.post("/gateway/targets/{name}/sync", response_model=TargetView, responses={**_ERRORS, 404: PROBLEM})
def sync_target(name: TargetNamePath, targets: Targets, _admin: PlatformAdmin) -> TargetView:
    """Discover the target's tools again (a new tool appears, a removed one goes)."""
    return targets.sync(name)


@router.delete(
    "/gateway/targets/{name}", status_code=204, response_class=Response, responses={**_ERRORS, 404: PROBLEM}
)
def remove_target(name: TargetNamePath, targets: Targets, _admin: PlatformAdmin) -> Response:
    """Remove the target and its tools (and its stored secret)."""
    targets.remove(name)
    return Response(status_code=204)


@router.get("/connectors", response_model=list[ConnectorView], responses=_ERRORS)
def list_connectors(ctx: ServiceContext, _admin: PlatformAdmin) -> list[ConnectorView]:
    """Every connector and remote target: its limits and its circuit breaker."""
    return connectors.list_connectors(ctx.store, ctx.connector_names())


@router.put("/connectors/{name}/limits", response_model=ConnectorView, responses=_ERRORS)
def put_connector_limits(
    name: ConnectorName, body: ConnectorLimitsBody, ctx: ServiceContext, _admin: PlatformAdmin
) -> ConnectorView:
    """Set a connector's (or remote target's) limits, which every tenant shares: waiting calls take
    turns by tenant (round robin), so one tenant's backlog never holds another's call behind all of
    it. Every process applies them without a restart."""
    return connectors.put_limits(ctx.store, ctx.clock, name, body)


# --- outbox dead letters --------------------------------------------------------------------------

DestinationQuery = Annotated[str | None, Query(min_length=1, max_length=1024)]
LimitQuery = Annotated[int, Query(ge=1, le=1000)]


@router.get("/outbox/dead-letters", response_model=DeadLetterListing, responses=_ERRORS)
def list_dead_letters(
    ctx: ServiceContext,
    _admin: PlatformAdmin,
    destination: DestinationQuery = None,
    limit: LimitQuery = 100,
) -> DeadLetterListing:
    """Every tenant's dead-lettered deliveries, oldest first (no payloads)."""
    return dead_letters.list_dead_letters(
        ctx.store, tenant_id=None, platform=True, destination=destination, limit=limit
    )


@router.post(
    "/outbox/dead-letters/redeliver", response_model=Redelivered, responses={**_ERRORS, 404: PROBLEM}
)
def redeliver_dead_letters(body: RedeliverBody, ctx: ServiceContext, principal: PlatformAdmin) -> Redelivered:
    """Put dead letters back in line: one message's, one destination's, or every one."""
    redelivered = dead_letters.redeliver(
        ctx.store, ctx.clock, body, tenant_id=None, platform=True, requested_by=principal.subject
    )
    ctx.outbox_wakeup.set()
    return redelivered


@router.get(
    "/tenants/{tenant_id}/outbox/dead-letters",
    response_model=DeadLetterListing,
    responses={**_ERRORS, 404: PROBLEM},
)
def list_tenant_dead_letters(
    tenant_id: TenantId, ctx: ServiceContext, principal: TenantAdmin, limit: LimitQuery = 100
) -> DeadLetterListing:
    """The tenant's own dead-lettered deliveries (destinations shown by kind only)."""
    admin.own_tenant(principal, tenant_id)
    return dead_letters.list_dead_letters(ctx.store, tenant_id=tenant_id, platform=False, limit=limit)


@router.post(
    "/tenants/{tenant_id}/outbox/dead-letters/redeliver",
    response_model=Redelivered,
    responses={**_ERRORS, 404: PROBLEM},
)
def redeliver_tenant_dead_letters(
    tenant_id: TenantId, body: RedeliverBody, ctx: ServiceContext, principal: TenantAdmin
) -> Redelivered:
    """Put the tenant's own dead letters back in line (one message's, or every one)."""
    admin.own_tenant(principal, tenant_id)
    if body.destination is not None:
        raise dead_letters.DestinationNotAllowed(
            "a tenant admin redelivers by message_id; destinations are the platform's",
            code="DESTINATION_NOT_ALLOWED",
        )
    redelivered = dead_letters.redeliver(
        ctx.store, ctx.clock, body, tenant_id=tenant_id, platform=False, requested_by=principal.subject
    )
    ctx.outbox_wakeup.set()
    return redelivered


@router.get("/connectors/{name}/tenants", response_model=list[TenantCapView], responses=_ERRORS)
def list_tenant_caps(name: ConnectorName, ctx: ServiceContext, _admin: PlatformAdmin) -> list[TenantCapView]:
    """Every tenant's own cap on this connector."""
    return connectors.list_tenant_caps(ctx.store, name=name)


@router.put("/connectors/{name}/tenants/{tenant_id}/limits", response_model=TenantCapView, responses=_ERRORS)
def put_tenant_cap(
    name: ConnectorName,
    tenant_id: TenantId,
    body: TenantCapBody,
    ctx: ServiceContext,
    principal: PlatformAdmin,
) -> TenantCapView:
    """Cap one tenant's calls to this connector (on top of the connector's own limits)."""
    return connectors.put_tenant_cap(
        ctx.store, ctx.clock, name, tenant_id, body, by=principal.subject, lower_only=False
    )


@router.delete(
    "/connectors/{name}/tenants/{tenant_id}/limits",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 404: PROBLEM},
)
def delete_tenant_cap(
    name: ConnectorName, tenant_id: TenantId, ctx: ServiceContext, _admin: PlatformAdmin
) -> Response:
    """Remove a tenant's own cap on this connector (the connector's limits still apply)."""
    connectors.delete_tenant_cap(ctx.store, name, tenant_id)
    return Response(status_code=204)


@router.get(
    "/tenants/{tenant_id}/connector-limits",
    response_model=list[TenantCapView],
    responses={**_ERRORS, 404: PROBLEM},
)
def list_own_caps(tenant_id: TenantId, ctx: ServiceContext, principal: TenantAdmin) -> list[TenantCapView]:
    """The token's own tenant's caps on connectors (scope ``admin``)."""
    admin.own_tenant(principal, tenant_id)
    return connectors.list_tenant_caps(ctx.store, tenant_id=tenant_id)


@router.put(
    "/tenants/{tenant_id}/connector-limits/{name}",
    response_model=TenantCapView,
    responses={**_ERRORS, 404: PROBLEM},
)
def lower_own_cap(
    tenant_id: TenantId, name: ConnectorName, body: TenantCapBody, ctx: ServiceContext, principal: TenantAdmin
) -> TenantCapView:
    """Lower the token's own tenant's cap on a connector (scope ``admin``): only ever tighter than
    the stored one (403 ``TENANT_CAP_RAISE_FORBIDDEN`` otherwise); raising or removing it is
    ``platform:admin``'s."""
    admin.own_tenant(principal, tenant_id)
    return connectors.put_tenant_cap(
        ctx.store, ctx.clock, name, tenant_id, body, by=principal.subject, lower_only=True
    )
