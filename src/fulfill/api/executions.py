"""Executions: status (DESIGN §4.3), an account's list, the timeline, the admin rerun, and the resolution of an
AMBIGUOUS execution."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse

from fulfill.api.auth import require_scope
from fulfill.api.deps import ServiceContext
from fulfill.api.intents import IntentId
from fulfill.api.problems import PROBLEM
from fulfill.api.routing import OneHopRoute
from fulfill.domain.models import ExecutionStatusView
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases import executions, resolutions
from fulfill.usecases.executions import ExecutionPage, RerunRequest, Timeline
from fulfill.usecases.resolutions import ResolveRequest

router = APIRouter(tags=["executions"], route_class=OneHopRoute)
AccountId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


@router.get(
    "/executions/{action_intent_id}/status",
    response_model=ExecutionStatusView,
    response_model_exclude_none=True,
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 422: PROBLEM},
)
def execution_status(
    action_intent_id: IntentId,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.EXECUTIONS_READ))],
    account_id: Annotated[
        str | None, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
    ] = None,
) -> JSONResponse:
    view = executions.execution_status(ctx, principal, action_intent_id, account_id)
    return JSONResponse(view.model_dump(mode="json", exclude_none=True))


@router.get(
    "/accounts/{account_id}/executions",
    response_model=ExecutionPage,
    responses={400: PROBLEM, 401: PROBLEM, 403: PROBLEM, 422: PROBLEM},
)
def list_executions(
    account_id: AccountId,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.EXECUTIONS_READ))],
    limit: Annotated[str | None, Query(description="1 to 100, default 50.", max_length=8)] = None,
    next_token: Annotated[
        str | None, Query(description="The next_token of the previous page.", max_length=1024)
    ] = None,
    status: Annotated[str | None, Query(description="Only executions in this status.", max_length=16)] = None,
) -> JSONResponse:
    page = executions.list_account_executions(
        ctx,
        principal,
        account_id,
        limit=executions.parse_limit(limit),
        status=executions.parse_status_filter(status),
        next_token=next_token,
    )
    return JSONResponse(
        {
            "executions": [item.model_dump(mode="json", exclude_none=True) for item in page.executions],
            "next_token": page.next_token,
        }
    )


@router.get(
    "/executions/{action_intent_id}/timeline",
    response_model=Timeline,
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 422: PROBLEM},
)
def execution_timeline(
    action_intent_id: IntentId,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.EXECUTIONS_READ))],
) -> Timeline:
    return executions.timeline(ctx, principal, action_intent_id)


@router.post(
    "/intents/{action_intent_id}/rerun",
    status_code=202,
    response_model=ExecutionStatusView,
    response_model_exclude_none=True,
    tags=["intents"],
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
def rerun(
    action_intent_id: IntentId,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.ADMIN))],
    body: Annotated[RerunRequest | None, Body()] = None,
) -> ExecutionStatusView:
    return executions.rerun_execution(ctx, principal, action_intent_id, body or RerunRequest())


@router.post(
    "/executions/{action_intent_id}/resolve",
    response_model=ExecutionStatusView,
    response_model_exclude_none=True,
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
def resolve(
    action_intent_id: IntentId,
    body: ResolveRequest,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.ADMIN))],
) -> ExecutionStatusView:
    """Resolve an AMBIGUOUS execution: committed (with the refs), not_committed (sent once more under
    the same idempotency key) or abandon (with a reason). 409 when it is not AMBIGUOUS."""
    return resolutions.resolve_execution(ctx, principal, action_intent_id, body)
