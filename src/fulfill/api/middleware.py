"""ASGI middleware: CORS, the request body limit and the last-resort error handler.

The last two sit inside the CORS middleware, so their responses carry CORS headers too.
"""

from __future__ import annotations

import logging
import uuid

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fulfill.api.problems import problem_response
from fulfill.logging_setup import describe_failure

log = logging.getLogger("fulfill.api")


class BodySizeLimitMiddleware:
    """Refuse request bodies above ``max_bytes`` with 413, whether announced or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        received = 0
        too_large = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Stop feeding the app; whatever it answers is replaced by the 413 below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal refused
            if not too_large:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(scope, receive, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not refused:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            f"the request body is larger than {self.max_bytes} bytes (FULFILL_MAX_BODY_BYTES)",
            slug="body-too-large",
            code="BODY_TOO_LARGE",
        )
        await response(scope, receive, send)


class UnexpectedErrorMiddleware:
    """Turn any unhandled exception into a generic 500 problem whose correlation id is logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            correlation_id = uuid.uuid4().hex
            log.error(
                "unexpected error %s on %s %s: %s",
                correlation_id,
                scope.get("method"),
                scope.get("path"),
                describe_failure(exc),
            )
            if started:
                raise
            response = problem_response(
                500,
                "an unexpected error occurred; quote the correlation_id when reporting it",
                slug="internal",
                code="INTERNAL_ERROR",
                extra={"correlation_id": correlation_id},
            )
            await response(scope, receive, send)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, whose refused preflights are problem documents too."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = bytes(response.body).decode()  # "Disallowed CORS origin, method"
        detail = refused.replace("Disallowed CORS", "this CORS preflight asks for a disallowed") + (
            " (allowed origins: FULFILL_CORS_ORIGINS)" if "origin" in refused else ""
        )
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
        }
        return problem_response(
            400, detail, slug="cors-preflight", code="CORS_PREFLIGHT_REFUSED", headers=headers
        )
