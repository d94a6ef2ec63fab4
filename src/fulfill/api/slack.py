"""``POST /integrations/slack/{tenant_id}/interactions``: Slack's interaction callback (a click on
a message's approve or reject button). Authenticated by Slack's request signature, not by a
bearer token (``usecases/slack_interactions.py``)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, BackgroundTasks, Header, Path, Request
from fastapi.responses import Response

from fulfill.api.deps import ServiceContext
from fulfill.api.problems import PROBLEM
from fulfill.usecases import slack_interactions

router = APIRouter(tags=["integrations"])

TenantId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


@router.post(
    "/integrations/slack/{tenant_id}/interactions",
    status_code=200,
    response_class=Response,
    responses={
        200: {"description": "Answered at once; Slack's message is updated (or the user told why) next."},
        400: PROBLEM,
        401: PROBLEM,
        404: PROBLEM,
        503: PROBLEM,
    },
)
async def slack_interaction(
    tenant_id: TenantId,
    request: Request,
    ctx: ServiceContext,
    background: BackgroundTasks,
    x_slack_request_timestamp: Annotated[str | None, Header()] = None,
    x_slack_signature: Annotated[str | None, Header()] = None,
) -> Response:
    """A click on a fulfill message's approve or reject button, as Slack sends it (form-encoded
    ``payload``). 401 unless ``X-Slack-Signature`` matches the tenant's signing secret within five
    minutes of ``X-Slack-Request-Timestamp``; 404 for a tenant without Slack. A verified click is
    decided at once by the approve and reject rules of the API, as the Slack user's mapped subject."""
    body = await request.body()
    answer = await anyio.to_thread.run_sync(
        partial(
            slack_interactions.receive_click,
            ctx,
            tenant_id,
            body,
            timestamp=x_slack_request_timestamp,
            signature=x_slack_signature,
        )
    )
    if answer.tells_slack:
        background.add_task(slack_interactions.tell_slack, ctx, answer)
    return Response(status_code=200)
