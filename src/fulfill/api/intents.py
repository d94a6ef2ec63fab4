"""``/intents``: create (or import already approved), read, approve."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from fulfill.api.auth import require_scope
from fulfill.api.deps import ServiceContext
from fulfill.api.problems import PROBLEM
from fulfill.api.routing import OneHopRoute
from fulfill.domain.models import ActionIntentV1
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases import intents
from fulfill.usecases.intents import ApprovalChange, CreateIntent

router = APIRouter(tags=["intents"], route_class=OneHopRoute)


class CreatedIntent(ActionIntentV1):
    """The stored intent, and which of its parameters its registry mapping never sends."""

    ignored_parameters: list[str] = Field(
        default_factory=list,
        description="Parameters the pinned registry version's mapping does not use: stored with the "
        "intent, never sent to the tool (as the reference drops them). Usually a misspelt name.",
    )


IntentId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


@router.post(
    "/intents",
    status_code=201,
    response_model=CreatedIntent,
    responses={
        200: {"model": CreatedIntent, "description": "The same body again: the stored intent."},
        401: PROBLEM,
        403: PROBLEM,
        409: PROBLEM,
        422: PROBLEM,
    },
)
def create_intent(
    body: CreateIntent,
    ctx: ServiceContext,
    response: Response,
    principal: Annotated[Principal, Depends(require_scope(Scope.INTENTS_WRITE))],
) -> CreatedIntent:
    intent, created, ignored = intents.create_intent_answer(ctx, principal, body)
    response.status_code = 201 if created else 200
    return CreatedIntent(**intent.model_dump(), ignored_parameters=ignored)


@router.get(
    "/intents/{action_intent_id}",
    response_model=ActionIntentV1,
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 422: PROBLEM},
)
def read_intent(
    action_intent_id: IntentId,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.INTENTS_READ))],
) -> ActionIntentV1:
    return intents.get_intent(ctx, principal, action_intent_id)


class ApproveIntent(BaseModel):
    """``POST /intents/{id}/approve`` body (optional)."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=intents.MAX_COMMENT_LENGTH)
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="Edit before approve: replaces the whole parameter object (validated as at "
        "creation), clears the approvals given so far, and counts as this approver's approval.",
    )


@router.post(
    "/intents/{action_intent_id}/approve",
    status_code=202,
    response_model=ApprovalChange,
    response_model_exclude_none=True,
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
def approve_intent(
    action_intent_id: IntentId,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.INTENTS_APPROVE))],
    body: ApproveIntent | None = None,
) -> ApprovalChange:
    """A person approves: an agent's token is 403 ``AGENT_CANNOT_APPROVE``, the intent's proposer
    (its ``proposed_by``) is 403 ``SELF_APPROVAL``, a token without the approver scopes of the
    intent's rule is 403 ``MISSING_APPROVAL_SCOPE``. An intent that needs several approvals stays
    PENDING_APPROVAL until that many distinct people approved (a repeat counts once)."""
    body = body or ApproveIntent()
    return intents.approve_intent(
        ctx, principal, action_intent_id, comment=body.comment, parameters=body.parameters
    )


@router.post(
    "/intents/{action_intent_id}/reject",
    status_code=202,
    response_model=ApprovalChange,
    response_model_exclude_none=True,
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
def reject_intent(
    action_intent_id: IntentId,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.INTENTS_APPROVE))],
) -> ApprovalChange:
    """A person rejects (the proposer may withdraw their own proposal): an agent's token is 403
    ``AGENT_CANNOT_APPROVE``."""
    return intents.reject_intent(ctx, principal, action_intent_id)


@router.post(
    "/intents/{action_intent_id}/cancel",
    status_code=202,
    response_model=ApprovalChange,
    response_model_exclude_none=True,
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
def cancel_intent(
    action_intent_id: IntentId,
    ctx: ServiceContext,
    principal: Annotated[Principal, Depends(require_scope(Scope.INTENTS_APPROVE))],
) -> ApprovalChange:
    return intents.cancel_intent(ctx, principal, action_intent_id)
