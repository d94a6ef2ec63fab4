"""``/admin/notifications``: the token's own tenant's notification channels (scope ``admin``).

``GET`` shows the channels without a secret (``bot_token_set``, ``secret_set``); ``PUT`` replaces
them (a missing channel is turned off) and answers as ``GET``. See ``usecases/notifications.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from fulfill.api.auth import require_scope
from fulfill.api.deps import ServiceContext
from fulfill.api.problems import PROBLEM
from fulfill.api.routing import OneHopRoute
from fulfill.domain.notifications import NotificationSettings
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases import notifications
from fulfill.usecases.notifications import NotificationsView

router = APIRouter(prefix="/admin", tags=["admin"], route_class=OneHopRoute)
TenantAdmin = Annotated[Principal, Depends(require_scope(Scope.ADMIN))]
_ERRORS: dict[int | str, dict[str, Any]] = {401: PROBLEM, 403: PROBLEM, 422: PROBLEM}


@router.get("/notifications", response_model=NotificationsView, responses=_ERRORS)
def get_notifications(ctx: ServiceContext, principal: TenantAdmin) -> NotificationsView:
    """The token's tenant's channels; never a token or secret."""
    return notifications.get_notifications(ctx.store, principal.tenant_id)


@router.put("/notifications", response_model=NotificationsView, responses={**_ERRORS, 409: PROBLEM})
def put_notifications(
    body: NotificationSettings, ctx: ServiceContext, principal: TenantAdmin
) -> NotificationsView:
    """Replace the token's tenant's channels: any subset of ``slack``, ``email``, ``webhooks``.
    Secrets are sealed (409 ``SECRETS_KEY_NOT_CONFIGURED`` without ``FULFILL_SECRETS_KEY``); one left
    out keeps the stored one."""
    return notifications.put_notifications(
        ctx.store,
        ctx.settings,
        principal.tenant_id,
        body,
        now=ctx.clock.now_iso(),
        updated_by=principal.subject,
    )
