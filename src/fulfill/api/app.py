"""The ASGI application: the HTTP API, the MCP gateway at ``/mcp`` (the engine's) and the agent's
MCP server at ``/agent/mcp``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.routing import Route

from fulfill import __version__
from fulfill.agent.server import agent_asgi_app, build_agent_server
from fulfill.api import (
    admin,
    credentials,
    events,
    executions,
    health,
    intents,
    ledger,
    notifications,
    policies,
    redoc,
    slack,
)
from fulfill.api.middleware import (
    BodySizeLimitMiddleware,
    ProblemCORSMiddleware,
    UnexpectedErrorMiddleware,
    record_server_spans_only_when_exporting,
)
from fulfill.api.problems import PROBLEM, install_problem_handlers
from fulfill.console import oidc
from fulfill.console.routes import install_console
from fulfill.gateway.server import gateway_asgi_app
from fulfill.service import Service
from fulfill.usecases.events import EventIntake

DOCS_ASSETS_URL = "/docs-assets"


def create_app(service: Service) -> FastAPI:
    mcp_app = gateway_asgi_app(service.gateway_server)
    agent_server = build_agent_server(
        service.runtime, service.token_verifier, service.settings, stopping=service.stopping
    )
    agent_app = agent_asgi_app(agent_server)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.gateway_server.session_manager.run(), agent_server.session_manager.run():
            try:
                await anyio.to_thread.run_sync(service.start)
            except Exception as exc:
                app.state.startup_error = exc  # for `fulfill serve` to explain in one line
                raise
            try:
                yield
            finally:
                await anyio.to_thread.run_sync(service.stop)

    # /docs and /redoc serve their scripts and styles from this package (fastapi-offline), not
    # from a CDN: they work without internet access.
    app = FastAPIOffline(
        title="fulfill",
        version=__version__,
        description="Executes approved actions of AI agents exactly once, through an MCP tool gateway.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
        redoc_url=None,  # ours: the same bundle without its logo from a CDN
    )
    redoc.install(app, favicon_url=f"{DOCS_ASSETS_URL}/favicon.png")
    # What the routes receive through their typed dependencies (fulfill.api.deps), and nothing else.
    app.state.service = service
    app.state.use_case_context = service.runtime
    app.state.event_intake = EventIntake(service.runtime)
    app.state.token_verifier = service.token_verifier
    app.state.targets = service.target_admin
    app.state.credential_vault = service.credential_vault
    install_problem_handlers(app)
    # Innermost first: errors and size limits are answered inside CORS, so they carry its headers.
    app.add_middleware(UnexpectedErrorMiddleware, is_transient=service.store.is_transient)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=service.settings.max_body_bytes,
        max_seconds=service.settings.request_body_timeout_seconds,
    )
    app.add_middleware(
        ProblemCORSMiddleware,
        allow_origins=service.settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        # The reference's allow-list too, so that its browser clients pass the preflight; the
        # service reads none of X-Amz-Date, X-Api-Key, X-Tenant-Id (the tenant is the token's).
        allow_headers=["Authorization", "Content-Type", "X-Amz-Date", "X-Api-Key", "X-Tenant-Id"],
        max_age=600,
    )
    # Answers any route can give: malformed JSON or bad query parameters (400), a head or body not
    # whole in time (408), a body over the limit (413), a body not sent as JSON (415), a head over
    # the limit (431, answered by the server before the app: ``fulfill.http_server``), and the
    # generic, correlation-id-carrying 500.
    common: dict[int | str, dict[str, Any]] = {
        400: PROBLEM,
        408: PROBLEM,
        413: PROBLEM,
        415: PROBLEM,
        431: PROBLEM,
        500: PROBLEM,
    }
    for router in (
        intents.router,
        executions.router,
        events.router,
        admin.router,
        notifications.router,
        policies.router,
        credentials.router,
        ledger.router,
        slack.router,
    ):
        app.include_router(router, responses=common)
    app.include_router(health.router, responses={500: PROBLEM})
    # The operator console (HTML pages at /console) reads through the same use cases; its
    # OpenID Connect login is there only with FULFILL_OIDC_ISSUER set.
    install_console(app, service.settings)
    oidc.install(app, service.settings)
    app.router.routes.append(Route("/mcp", endpoint=mcp_app))
    # The agent's door: user and agent tokens; a tool call proposes, a person approves.
    app.router.routes.append(Route("/agent/mcp", endpoint=agent_app))
    # A server span per request (the root of an approved execution's trace; W3C traceparent
    # honoured), outermost; no headers are recorded, so no token reaches a span.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="/healthz,/readyz,/metrics", exclude_spans=["receive", "send"]
    )
    # While no span is recorded (no export configured), only the span's trace context is made.
    record_server_spans_only_when_exporting(app)
    return app
