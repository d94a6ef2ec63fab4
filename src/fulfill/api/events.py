"""``POST /events``: ACTION_APPROVED events, one EventBridge-shaped event or a PutEvents batch."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from fulfill.api.auth import require_scope
from fulfill.api.problems import PROBLEM, not_json_problem, problem_response
from fulfill.domain.scopes import Scope
from fulfill.engine.intake import EventRejected, accept_approved_event, parse_approved_event
from fulfill.engine.runtime import Runtime
from fulfill.tokens import Principal

router = APIRouter(tags=["events"])
MAX_BATCH = 10


class EventAccepted(BaseModel):
    action_intent_id: str
    status: str = "accepted"


def _accept(rt: Runtime, raw: Any, principal: Principal) -> EventAccepted:
    event = parse_approved_event(raw)
    result = accept_approved_event(rt, event, caller=principal)
    return EventAccepted(action_intent_id=result.action_intent_id)


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
) -> JSONResponse:
    rt: Runtime = request.app.state.runtime
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
            try:
                _accept(rt, entry, principal)
                answers.append({"EventId": str(uuid.uuid4())})
            except EventRejected as rejection:
                answers.append({"ErrorCode": rejection.code, "ErrorMessage": rejection.message})
        failed = sum(1 for answer in answers if "ErrorCode" in answer)
        return JSONResponse({"FailedEntryCount": failed, "Entries": answers}, status_code=200)
    try:
        accepted = _accept(rt, payload, principal)
    except EventRejected as rejection:
        return problem_response(422, rejection.message, slug="event-rejected", code=rejection.code)
    return JSONResponse(accepted.model_dump(), status_code=202)
