"""``POST /events``: ACTION_APPROVED events, one EventBridge-shaped event or a PutEvents batch."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from fulfill.api.auth import require_scope
from fulfill.api.deps import Events
from fulfill.api.problems import PROBLEM, not_json_problem, problem_response
from fulfill.api.routing import OneHopRoute
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases.events import EventRefused

router = APIRouter(tags=["events"], route_class=OneHopRoute)
MAX_BATCH = 10


class EventAccepted(BaseModel):
    action_intent_id: str
    status: str = "accepted"


@router.post(
    "/events",
    status_code=202,
    response_model=EventAccepted,
    responses={
        200: {"description": "A PutEvents-style batch, answered per entry in request order."},
        401: PROBLEM,
        403: PROBLEM,
        415: {**PROBLEM, "description": "The body was not sent as JSON."},
        422: {**PROBLEM, "description": "The single event was rejected."},
    },
)
def post_events(
    request: Request,
    payload: Annotated[Any, Body()],
    principal: Annotated[Principal, Depends(require_scope(Scope.EVENTS_WRITE))],
    intake: Events,
) -> JSONResponse:
    if isinstance(payload, bytes):  # a body FastAPI did not parse: it was not sent as JSON
        return not_json_problem(request)
    if isinstance(payload, dict) and "Entries" in payload:
        entries = payload["Entries"]
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH:
            return problem_response(
                422,
                f"Entries must be a list of 1 to {MAX_BATCH} events",
                slug="validation",
                code="MALFORMED_BATCH",
            )
        answers: list[dict[str, str]] = []
        for entry in entries:
            answer = intake.accept(entry, principal)
            if isinstance(answer, EventRefused):
                answers.append({"ErrorCode": answer.code, "ErrorMessage": answer.message})
            else:
                answers.append({"EventId": str(uuid.uuid4())})
        failed = sum(1 for answer in answers if "ErrorCode" in answer)
        return JSONResponse({"FailedEntryCount": failed, "Entries": answers}, status_code=200)
    answer = intake.accept(payload, principal)
    if isinstance(answer, EventRefused):
        return problem_response(422, answer.message, slug="event-rejected", code=answer.code)
    return JSONResponse(EventAccepted(action_intent_id=answer.action_intent_id).model_dump(), status_code=202)
