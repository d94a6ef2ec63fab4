"""``/executions/{id}/status``: the execution status DTO (DESIGN §4.3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from fulfill.api.auth import SCOPE_EXECUTIONS_READ, require_scope
from fulfill.api.intents import IntentId
from fulfill.api.problems import PROBLEM
from fulfill.domain.models import ExecutionStatusView
from fulfill.tokens import Principal
from fulfill.usecases import intents

router = APIRouter(tags=["executions"])


@router.get(
    "/executions/{action_intent_id}/status",
    response_model=ExecutionStatusView,
    response_model_exclude_none=True,
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM},
)
def execution_status(
    action_intent_id: IntentId,
    request: Request,
    principal: Annotated[Principal, Depends(require_scope(SCOPE_EXECUTIONS_READ))],
    account_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> JSONResponse:
    view = intents.execution_status(request.app.state.runtime, principal, action_intent_id, account_id)
    return JSONResponse(view.model_dump(mode="json", exclude_none=True))
