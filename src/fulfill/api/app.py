"""The ASGI application: the HTTP API plus the MCP gateway at ``/mcp``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import Route

from fulfill import __version__
from fulfill.api import admin, events, executions, health, intents
from fulfill.api.middleware import BodySizeLimitMiddleware, UnexpectedErrorMiddleware
from fulfill.api.problems import PROBLEM, install_problem_handlers
from fulfill.gateway.server import gateway_asgi_app
from fulfill.service import Service


def create_app(service: Service) -> FastAPI:
    mcp_app = gateway_asgi_app(service.gateway_server)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with service.gateway_server.session_manager.run():
            await anyio.to_thread.run_sync(service.start)
            try:
                yield
            finally:
                await anyio.to_thread.run_sync(service.stop)

    app = FastAPI(
        title="fulfill",
        version=__version__,
        description="Executes approved actions of AI agents exactly once, through an MCP tool gateway.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.runtime = service.runtime
    app.state.token_verifier = service.token_verifier
    app.state.targets = service.target_admin
    install_problem_handlers(app)
    # Innermost first: errors and size limits are answered inside CORS, so they carry its headers.
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=service.settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=service.settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    # Answers any route can give: malformed JSON or bad query parameters (400), a body over the
    # limit (413), and the generic, correlation-id-carrying 500.
    common: dict[int | str, dict[str, Any]] = {400: PROBLEM, 413: PROBLEM, 500: PROBLEM}
    for router in (intents.router, executions.router, events.router, admin.router):
        app.include_router(router, responses=common)
    app.include_router(health.router, responses={500: PROBLEM})
    app.router.routes.append(Route("/mcp", endpoint=mcp_app))
    return app
