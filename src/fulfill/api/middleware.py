"""ASGI middleware: CORS, the request body limit, the last-resort error handler and the server
span (recorded only while spans are exported).

The last two sit inside the CORS middleware, so their responses carry CORS headers too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware, asgi_getter, get_host_port_url_tuple
from opentelemetry.instrumentation.utils import (
    _start_internal_or_server_span,
    is_http_instrumentation_enabled,
)
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fulfill import tracing
from fulfill.api.problems import problem_response
from fulfill.logging_setup import describe_failure

log = logging.getLogger("fulfill.api")


class BodySizeLimitMiddleware:
    """Refuse request bodies above ``max_bytes`` with 413, whether announced or streamed, and
    bodies not whole ``max_seconds`` after the request arrived with 408: a client that sends part
    of a body and then nothing would otherwise hold its request, its connection and a stop of the
    process for good (nothing below bounds the time a body takes)."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large()(scope, receive, send)
            return
        deadline = anyio.current_time() + self.max_seconds
        received = 0
        whole = False
        refusal: Response | None = None
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, whole, refusal
            if refusal is not None:
                return {"type": "http.disconnect"}
            if whole:  # the body is in: what is left to receive is the client going away
                return await receive()
            # Stop feeding the app once a limit is passed; whatever it answers is replaced below.
            with anyio.move_on_after(deadline - anyio.current_time()) as waited:
                message = await receive()
            if waited.cancelled_caught:
                refusal = self._too_slow()
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if received > self.max_bytes:
                    refusal = self._too_large()
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal refused
            if refusal is None:
                await send(message)
            elif not refused:
                refused = True
                await refusal(scope, receive, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None and not refused:
            await refusal(scope, receive, send)

    def _too_large(self) -> Response:
        return problem_response(
            413,
            f"the request body is larger than {self.max_bytes} bytes (FULFILL_MAX_BODY_BYTES)",
            slug="body-too-large",
            code="BODY_TOO_LARGE",
        )

    def _too_slow(self) -> Response:
        return problem_response(
            408,
            f"the request body did not arrive whole within {self.max_seconds:g} s "
            "(FULFILL_REQUEST_BODY_TIMEOUT_SECONDS)",
            slug="body-timeout",
            code="BODY_TIMEOUT",
            headers={"Connection": "close"},  # the rest of the body may still come
        )


# How long a client is asked to wait before retrying a request the store could not take.
STORE_RETRY_AFTER_SECONDS = 5


class UnexpectedErrorMiddleware:
    """Turn any unhandled exception into a generic 500 problem whose correlation id is logged; a
    store that cannot be reached for now (``is_transient``: a dropped connection, a lock or pool
    timeout) is 503 ``STORE_UNAVAILABLE`` with ``Retry-After`` instead: a use case's transaction
    commits or rolls back whole, so the request is sent again."""

    def __init__(self, app: ASGIApp, is_transient: Callable[[BaseException], bool] | None = None) -> None:
        self.app = app
        self.is_transient = is_transient

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
            if self.is_transient is not None and self.is_transient(exc):
                unavailable = problem_response(
                    503,
                    "the database cannot be reached for now; send the request again in a moment",
                    slug="store-unavailable",
                    code="STORE_UNAVAILABLE",
                    headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
                    extra={"correlation_id": correlation_id},
                )
                await unavailable(scope, receive, send)
                return
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


class ServerSpanWhenRecording:
    """OpenTelemetry's server-span middleware (``traced``) while spans are recorded; otherwise
    only what an unrecorded server span is for: its trace context.

    Export is off by default (``fulfill.tracing``): the request's span is then not recorded, yet
    OpenTelemetry's middleware still names it by matching the path against every route, gathers
    its attributes, wraps ``send`` and counts the request for meters nobody reads — the largest
    part of the HTTP layer's own CPU on a status read. Unrecorded, none of that is seen; what is
    seen is the span's context: a W3C ``traceparent`` is honoured and the request's code runs in a
    (new or the caller's) trace, whose id the execution it approves, the ledger and the logs carry.
    That is what this does, with OpenTelemetry's own helper, so the span is the same one (a
    server span, or an internal one under a span already current). Whether spans are recorded is
    asked per request: a processor attached later (an exporter, a test's) gets every span again.
    """

    def __init__(self, traced: OpenTelemetryMiddleware) -> None:
        # ``app`` is the OpenTelemetry middleware: FastAPI looks for it down the ``app`` chain
        # and, finding none, would make server and operation spans of its own as well.
        self.app = traced
        self.untraced = traced.app
        self.tracer = traced.tracer
        self.excluded_urls = traced.excluded_urls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or tracing.recording() or not is_http_instrumentation_enabled():
            await self.app(scope, receive, send)
            return
        url = get_host_port_url_tuple(scope)[2]  # type: ignore[no-untyped-call]
        if self.excluded_urls is not None and self.excluded_urls.url_disabled(url):
            await self.untraced(scope, receive, send)
            return
        span, token = _start_internal_or_server_span(  # type: ignore[no-untyped-call]
            tracer=self.tracer,
            span_name=scope.get("method", "HTTP"),
            start_time=None,
            context_carrier=scope,
            context_getter=asgi_getter,
        )
        try:
            with trace.use_span(span, end_on_exit=False):
                await self.untraced(scope, receive, send)
        finally:
            if token is not None:
                otel_context.detach(token)
            span.end()


def record_server_spans_only_when_exporting(app: Starlette) -> None:
    """Put :class:`ServerSpanWhenRecording` around the OpenTelemetry middleware that
    ``FastAPIInstrumentor.instrument_app`` (called before) puts in ``app``'s middleware stack."""
    instrumented = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        stack = instrumented()
        if isinstance(stack, ServerErrorMiddleware) and isinstance(stack.app, OpenTelemetryMiddleware):
            stack.app = ServerSpanWhenRecording(stack.app)
        return stack

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
