"""The MCP tool gateway: an ``MCPServer`` served over Streamable HTTP at ``/mcp``.

Only the engine calls it: every request needs one of the engine's service tokens (issuer
``fulfill-service``, scope ``gateway:invoke``); user tokens are refused (401) whatever their
scopes. A refusal says why, as the HTTP API's do (``WWW-Authenticate`` ``error_description``, and
``code`` in the JSON body): expired, signature, issuer, or a user token, which is told that
``/mcp`` is for the engine and agents use the HTTP API. Never the token or a secret. Before a ``tools/call`` reaches a connector, the gateway checks, and answers with a tool
error (``isError``, a JSON text ``{error_code, error_class, error_message}``) when a check fails:

* the tool exists;
* the arguments satisfy the tool's input schema (the message names fields, never echoes values),
  checked by ``domain/schemas.py`` (a target's schema never makes this process fetch anything,
  its patterns run within a time budget, and it is checked in a worker thread; an in-process
  tool's own schema is checked on the event loop);
* the arguments ``tenant_id``, ``account_id``, ``action_intent_id`` and ``idempotency_key`` are
  the ones the token was minted for (the token binding; the message names the fields that differ,
  never their values).

Besides the in-process connectors' tools it serves every gateway target's tools
(``gateway/targets.py``) as ``{target}.{tool}``: listed by ``tools/list``, vetted by the same
guard against the remote tool's input schema and the token binding, then forwarded to the
target under the remote tool's own name (``gateway/remote.py``). A trusted argument the tool's
input schema does not declare is checked against the token and then left out of what the tool
receives (``domain/mapping.arguments_for_tool``), for internal and remote tools alike; the
idempotency key always travels in the request's ``_meta`` (``io.fulfill/idempotency-key``).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

import anyio
import jsonschema
from anyio.lowlevel import RunVar
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import Tool as MCPTool
from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

import fulfill.mcp_logging  # noqa: F401  (before any MCP server is built)
from fulfill import __version__, tracing
from fulfill.connectors.base import ConnectorTool, ToolSuccess, tool_failure
from fulfill.domain.errors import ErrorClass, printable
from fulfill.domain.flowcontrol import connector_of
from fulfill.domain.mapping import arguments_for_tool
from fulfill.domain.schemas import (
    MAX_PARAMETER_DEPTH,
    PatternTimeout,
    UncheckableSchema,
    UntrustedSchema,
    too_deep,
)
from fulfill.domain.scopes import Scope as TokenScope
from fulfill.domain.targets import IDEMPOTENCY_META_KEY, TIMEOUT_META_KEY, remote_timeout_seconds
from fulfill.gateway.remote import RemoteTargets
from fulfill.gateway.targets import TargetCatalog
from fulfill.tokens import SERVICE_BINDING_CLAIMS, TokenError, TokenVerifier

# What every tool the gateway serves answers on success; remote answers are normalised to it.
_SUCCESS_SCHEMA = ToolSuccess.model_json_schema()

# The most threads the gateway runs blocking work on at once, per event loop: the in-process
# connectors' tools (a Salesforce call waits on the network in one) and the schema checks. Not
# anyio's default limiter (40 threads per event loop, shared over HTTP with the API's own
# routes), which held every worker to 40 calls in flight to a slow connector whatever
# FULFILL_WORKER_CONCURRENCY said. As many as the most executions one worker may run at once, so
# the gateway is never what bounds the calls in flight; threads start only when needed.
GATEWAY_THREADS = 1024
_THREADS: RunVar[anyio.CapacityLimiter] = RunVar("fulfill_gateway_threads")

# How long a client may keep the gateway's tool listing (``ttlMs`` on ``tools/list``, private to
# the token's authorization context). The engine's in-memory sessions share one listing for that
# long (``gateway/session_share.py``); a tool a client's listing does not hold makes the MCP
# client list again at once, and a target's tools answer with one success schema whatever changes.
TOOL_LISTING_TTL_SECONDS = 60.0


def gateway_threads() -> anyio.CapacityLimiter:
    """This event loop's limiter for the gateway's blocking work (made at first use, as anyio
    makes its own default limiter: a limiter belongs to one loop)."""
    try:
        return _THREADS.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(GATEWAY_THREADS)
        _THREADS.set(limiter)
        return limiter


# True while a call runs on an event loop of its own, in the thread that made it (the in-memory
# client's calls from the engine's step threads): nothing else waits on that loop, so the call's
# blocking work (the tool, the schema check) runs right there instead of on another thread.
_CALLERS_OWN_LOOP: ContextVar[bool] = ContextVar("fulfill_gateway_callers_own_loop", default=False)


@contextmanager
def on_the_callers_own_loop() -> Iterator[None]:
    """Within this block, a call runs on a loop that carries nothing else (see above)."""
    token = _CALLERS_OWN_LOOP.set(True)
    try:
        yield
    finally:
        _CALLERS_OWN_LOOP.reset(token)


async def run_blocking(fn: Callable[[], Any]) -> Any:
    """``fn()`` on one of the gateway's threads (:func:`gateway_threads`), never on an event loop
    that carries other calls; on a call's own loop, right there."""
    if _CALLERS_OWN_LOOP.get():
        return fn()
    return await anyio.to_thread.run_sync(fn, limiter=gateway_threads())


def off_the_loop(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A blocking tool function as a coroutine function that runs it with :func:`run_blocking`;
    the MCP SDK reads the same signature and annotations. A coroutine function is kept as it is."""
    if inspect.iscoroutinefunction(fn):
        return fn

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        return await run_blocking(functools.partial(fn, *args, **kwargs))

    return run


# A token this request's refusal check (:class:`ExplainedRefusals`) has just accepted, and what it
# gave: the MCP SDK's own check of the same request's token, further down the same request, takes
# it instead of verifying the same text again. Set only within that one request's handling.
_ACCEPTED_IN_THIS_REQUEST: ContextVar[tuple[str, AccessToken] | None] = ContextVar(
    "fulfill_gateway_accepted_token", default=None
)


class GatewayTokenVerifier:
    """Adapts fulfill's service-token verification to the MCP SDK's ``TokenVerifier`` protocol.

    Only service tokens pass; anything else (a user token, an expired or forged token, a service
    token without its binding claims) is ``None``, which the SDK answers with 401.
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def check(self, token: str) -> AccessToken | TokenError:
        """What the token gives the gateway, or why it is refused. HS256 only: no network, no
        blocking."""
        try:
            principal = self._verifier.verify_service(token)
        except TokenError as exc:
            return exc
        expires = principal.claims.get("exp")
        return AccessToken(
            token=token,
            client_id=principal.subject,
            scopes=sorted(principal.scopes),
            subject=principal.subject,
            expires_at=int(expires) if isinstance(expires, int | float) else None,
            claims={**principal.claims, "tenant_id": principal.tenant_id},
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        accepted = _ACCEPTED_IN_THIS_REQUEST.get()
        if accepted is not None and accepted[0] == token:
            return accepted[1]
        checked = self.check(token)
        return None if isinstance(checked, TokenError) else checked


class GatewayServer(MCPServer):
    """The gateway's MCP server: the in-process connectors' tools plus every target's tools."""

    def __init__(self, *args: Any, catalog: TargetCatalog | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalog = catalog
        verifier = kwargs.get("token_verifier")
        self.gateway_verifier = verifier if isinstance(verifier, GatewayTokenVerifier) else None

    async def internal_tools(self) -> list[MCPTool]:
        return await super().list_tools()

    async def list_tools(self) -> list[MCPTool]:
        tools = await self.internal_tools()
        if self.catalog is None:
            return tools
        snapshot = await self.catalog.current()
        return tools + [
            MCPTool(
                name=entry.spec.name,
                description=entry.spec.description,
                input_schema=entry.spec.input_schema,
                output_schema=_SUCCESS_SCHEMA,
            )
            for entry in snapshot.tools.values()
        ]


class ToolCallGuard:
    """Server middleware that vets every ``tools/call`` before a connector or target sees it."""

    def __init__(
        self, server: GatewayServer, remote: RemoteTargets | None = None, *, default_timeout: float = 10.0
    ) -> None:
        self._server = server
        self._remote = remote
        self._default_timeout = default_timeout
        self._internal: dict[str, tuple[dict[str, Any], UntrustedSchema]] | None = None

    async def _internal_tool(self, name: str) -> tuple[dict[str, Any], UntrustedSchema] | None:
        if self._internal is None:
            self._internal = {
                tool.name: (tool.input_schema, UntrustedSchema(tool.input_schema))
                for tool in await self._server.internal_tools()
            }
        return self._internal.get(name)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        name = ctx.params.get("name")
        # Below the MCP SDK's server span (``tools/call {tool}``); then the connector's span.
        with tracing.span(
            f"gateway.guard {name if isinstance(name, str) else ''}".rstrip(),
            parent=_caller_trace(ctx),
            attributes={"gen_ai.tool.name": str(name)[:128]},
        ):
            return await self._vet_and_call(ctx, call_next, ctx.params, name)

    async def _vet_and_call(
        self,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
        params: Mapping[str, Any],
        name: object,
    ) -> HandlerResult:
        arguments = params.get("arguments") or {}
        if not isinstance(name, str):
            return tool_failure(ErrorClass.VALIDATION, "TOOL_NOT_FOUND", "the tool name must be a string")
        internal = await self._internal_tool(name)
        remote = None
        if internal is None and self._server.catalog is not None and self._remote is not None:
            remote = await self._server.catalog.find(name)
        if internal is not None:
            schema, validator = internal
        elif remote is not None:
            schema, validator = remote.spec.input_schema, remote.validator
        else:
            return tool_failure(ErrorClass.VALIDATION, "TOOL_NOT_FOUND", f"unknown tool: {name[:128]}")
        if not isinstance(arguments, Mapping):
            return tool_failure(
                ErrorClass.VALIDATION, "INVALID_TOOL_ARGUMENTS", "arguments must be an object"
            )
        if too_deep(arguments):  # the bound POST /intents applies, before anything recurses
            return tool_failure(
                ErrorClass.VALIDATION,
                "INVALID_TOOL_ARGUMENTS",
                f"arguments are nested deeper than {MAX_PARAMETER_DEPTH} levels",
            )
        forwarded = arguments_for_tool(dict(arguments), schema)
        try:
            errors = (
                # An in-process tool's schema is this process's own (made from the tool function's
                # signature), and a quick check of a target's schema is bounded like any request's
                # own work: both on the loop, without two thread switches per call.
                validator.errors(forwarded)
                if internal is not None or validator.is_quick_for(forwarded)
                # Any other check of a target's schema never runs on an event loop that carries
                # other calls.
                else await run_blocking(functools.partial(validator.errors, forwarded))
            )
        except (UncheckableSchema, PatternTimeout) as exc:
            return tool_failure(ErrorClass.VALIDATION, "INVALID_TOOL_ARGUMENTS", str(exc))
        problems = {_describe(error) for error in errors}
        if problems:
            return tool_failure(
                ErrorClass.VALIDATION, "INVALID_TOOL_ARGUMENTS", "; ".join(sorted(problems)[:10])
            )
        mismatched = _binding_mismatches(arguments)
        meta: dict[str, Any] = dict(ctx.meta or {})
        if IDEMPOTENCY_META_KEY in meta and meta[IDEMPOTENCY_META_KEY] != arguments.get("idempotency_key"):
            mismatched.append(f"_meta {IDEMPOTENCY_META_KEY}")
        if mismatched:
            return tool_failure(
                ErrorClass.AUTH,
                "TOKEN_BINDING_MISMATCH",
                f"the tool call's {', '.join(mismatched)} differ(s) from what its token was issued for",
            )
        connector = connector_of(name)
        with tracing.span(f"connector {connector}", attributes={"fulfill.connector": connector}):
            if remote is not None and self._remote is not None:
                return await self._remote.call(
                    remote.endpoint,
                    remote.spec.remote_name,
                    forwarded,
                    idempotency_key=str(arguments["idempotency_key"]),
                    timeout=remote_timeout_seconds(self._engine_timeout(meta)),
                )
            if forwarded != dict(arguments):
                ctx = replace(ctx, params={**params, "arguments": forwarded})
            return await call_next(ctx)

    def _engine_timeout(self, meta: Mapping[str, Any]) -> float:
        """How long the engine waits for this call (its ``_meta`` says), at most the default."""
        value = meta.get(TIMEOUT_META_KEY)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return min(float(value) / 1000.0, self._default_timeout)
        return self._default_timeout


def _caller_trace(ctx: ServerRequestContext[Any, Any]) -> OtelContext | None:
    """The span a ``tools/call`` descends from: the one current here (in memory, the client's;
    over HTTP, the request's), else the ``traceparent`` header of the HTTP request."""
    if trace.get_current_span().get_span_context().is_valid:
        return None
    headers = getattr(ctx.request, "headers", None)
    return tracing.context_from_headers(headers) if isinstance(headers, Mapping) else None


def _binding_mismatches(arguments: Mapping[str, Any]) -> list[str]:
    """The trusted arguments that are not the ones the call's service token is bound to."""
    token = get_access_token()
    claims = (token.claims or {}) if token else {}
    return [
        name
        for name in SERVICE_BINDING_CLAIMS
        if not isinstance(claims.get(name), str) or arguments.get(name) != claims[name]
    ]


def _describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "arguments"
    if error.validator == "required":
        required = error.validator_value if isinstance(error.validator_value, list) else []
        present = error.instance if isinstance(error.instance, dict) else {}
        missing = [str(field) for field in required if field not in present]
        return f"missing required argument(s): {', '.join(missing)}"
    if error.validator == "additionalProperties":
        return f"{path}: unexpected argument"
    if error.validator == "type":
        return f"{path}: must be of type {error.validator_value}"
    return f"{path}: fails '{error.validator}'"


def build_gateway(
    verifier: TokenVerifier,
    tools: list[ConnectorTool],
    *,
    public_url: str,
    catalog: TargetCatalog | None = None,
    remote: RemoteTargets | None = None,
    call_timeout_seconds: float = 10.0,
) -> GatewayServer:
    server = GatewayServer(
        "fulfill-gateway",
        version=__version__,
        instructions=(
            "Executes approved actions for the fulfill engine. Every call is bound to the tenant, "
            "account, intent and idempotency key of its service token."
        ),
        token_verifier=GatewayTokenVerifier(verifier),
        auth=AuthSettings(
            issuer_url=public_url, resource_server_url=None, required_scopes=[TokenScope.GATEWAY_INVOKE]
        ),
        log_level="WARNING",
        catalog=catalog,
        cache_hints={"tools/list": CacheHint(ttl_ms=int(TOOL_LISTING_TTL_SECONDS * 1000), scope="private")},
    )
    for tool in tools:
        server.add_tool(
            off_the_loop(tool.fn), name=tool.name, description=tool.description, structured_output=True
        )
    server.middleware.append(ToolCallGuard(server, remote, default_timeout=call_timeout_seconds))
    return server


def gateway_asgi_app(server: MCPServer) -> ASGIApp:
    """The ASGI app serving ``/mcp``; its session manager must run in the host app's lifespan.

    Stateless Streamable HTTP with JSON responses: any worker can answer any call, no session
    affinity. The bearer token, not the Host header, is the protection, so DNS-rebinding checks
    are off (they would reject every non-localhost deployment).
    """
    app = server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    verifier = server.gateway_verifier if isinstance(server, GatewayServer) else None
    return ExplainedRefusals(app, verifier) if verifier is not None else app


ENGINE_ONLY = "/mcp is for the engine's own service tokens; agents use the HTTP API"


class ExplainedRefusals:
    """Answers a request to ``/mcp`` whose token is refused with the reason (401), before the MCP
    SDK's own check, which would say only ``invalid_token``. A token that passes goes on to the
    MCP app, whose check (and the scope rule, 403) then applies as before."""

    def __init__(self, app: ASGIApp, verifier: GatewayTokenVerifier) -> None:
        self._app = app
        self._verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            await _refuse(send, f"a bearer token is required: {ENGINE_ONLY}", "TOKEN_MISSING")
            return
        token = header[7:].strip()
        checked = self._verifier.check(token)
        if not isinstance(checked, TokenError):
            # The MCP app checks the same token again (and applies the scope rule): this
            # request's own verification is what it finds, not a second one of the same text.
            accepted = _ACCEPTED_IN_THIS_REQUEST.set((token, checked))
            try:
                await self._app(scope, receive, send)
            finally:
                _ACCEPTED_IN_THIS_REQUEST.reset(accepted)
            return
        refused = checked
        reason = str(refused)
        if refused.code == "SERVICE_TOKEN_REQUIRED":
            reason = f"{reason}: {ENGINE_ONLY}"
        await _refuse(send, reason, refused.code)


async def _refuse(send: Send, description: str, code: str) -> None:
    # The reason is one of TokenError's fixed messages; quotes and control characters are still
    # kept out of the header whatever it becomes.
    quoted = printable(description, 300).replace("\\", "").replace('"', "'")
    body = json.dumps({"error": "invalid_token", "error_description": quoted, "code": code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", f'Bearer error="invalid_token", error_description="{quoted}"'.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
