"""InvokeTool's MCP client: ``tools/call`` to the gateway, over Streamable HTTP or in memory.

Over HTTP (:class:`McpToolGateway`, when ``FULFILL_GATEWAY_URL`` names a gateway) one background
event loop owns one HTTP connection pool, shared by every call from every worker thread. In memory
(:class:`InProcessToolGateway`, the default: the engine calls its own process's gateway) the same
MCP client talks to the same ``MCPServer`` without a socket: the token is verified by the same
verifier and scope rule the HTTP endpoint applies, and the request then runs through the same
server, middleware (the gateway's guard) and tools. Each call gets its own service token, minted from the call's trusted arguments
(``tenant_id``, ``account_id``, ``action_intent_id``, ``idempotency_key``), so the gateway can
check that the call is the one the engine meant to make. Each call has its own timeout (below the
step's budget). Failures come back classified, never raised: the engine decides what to retry.

Every call carries, in its request ``_meta``, the idempotency key (``io.fulfill/idempotency-key``,
which the gateway forwards to remote targets) and how long this client waits
(``io.fulfill/timeout-ms``, so the gateway answers a remote call, classified, before that). For a
tool of a target that does not deduplicate (``confirm(tool_name)``), an answer lost after the
call was sent to the gateway (a timeout, a lost connection, HTTP 500/502/504) is
``UNKNOWN_OUTCOME``, never a retryable timeout: the call may have reached the target.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.mcpserver import MCPServer
from mcp.types import RequestParamsMeta
from opentelemetry.context import Context as OtelContext

from fulfill import tracing
from fulfill.domain.errors import ErrorClass, ExecutionError, classify
from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.scopes import Scope
from fulfill.domain.targets import IDEMPOTENCY_META_KEY, TIMEOUT_META_KEY, UNKNOWN_OUTCOME
from fulfill.gateway.results import outcome_from_call_result
from fulfill.gateway.server import GatewayTokenVerifier, on_the_callers_own_loop
from fulfill.logging_setup import describe_failure
from fulfill.tokens import ServiceTokens, TokenError

log = logging.getLogger(__name__)

# Below the idle timeout of the gateway's HTTP server (uvicorn's default, 5 s).
KEEPALIVE_EXPIRY_SECONDS = 2.0

# In a session's requests (initialize, tools/list, tools/call) only the call's body holds this.
_TOOLS_CALL = b'"tools/call"'


class McpToolGateway:
    def __init__(
        self,
        url: str,
        tokens: ServiceTokens,
        *,
        max_connections: int = 64,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        self._url = url
        self._tokens = tokens
        # True for a tool whose lost answer must not be retried (a non-deduplicating target's).
        self._confirm = confirm or (lambda _tool: False)
        # How much longer than the call's own timeout the calling thread waits for the loop.
        self._loop_grace_seconds = 5.0
        self._loop = asyncio.new_event_loop()
        self._stopped = self._loop.create_future()
        self._thread = threading.Thread(target=self._run_loop, name="fulfill-mcp-client", daemon=True)
        self._thread.start()
        # A connection for each call this worker may have in flight (the caller sizes it from
        # FULFILL_WORKER_CONCURRENCY). An idle connection is dropped before the gateway's server
        # drops it (uvicorn: 5 s): a call written on a connection the server is closing loses its
        # answer, which for a target that does not deduplicate is an UNKNOWN_OUTCOME.
        self._transport = httpx2.AsyncHTTPTransport(
            limits=httpx2.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
            )
        )

    def call_tool(
        self,
        *,
        tenant_id: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        on_send: Callable[[], None] | None = None,
    ) -> ToolCallOutcome:
        """One ``tools/call``. ``arguments`` carry the trusted bindings (``with_trusted_arguments``);
        the call's service token is bound to them. ``on_send`` runs as the ``tools/call`` request
        leaves, after the session's own requests."""
        if arguments.get("tenant_id") != tenant_id:
            return _transport_failure(
                ErrorClass.AUTH, "TOKEN_BINDING_MISMATCH", "the tool call's tenant_id is not its tenant"
            )
        try:
            token = self._tokens.token_for_call(arguments, timeout_seconds=timeout_seconds)
        except TokenError as exc:
            return _transport_failure(ErrorClass.VALIDATION, "TOOL_BINDING_MISSING", str(exc))
        future = asyncio.run_coroutine_threadsafe(
            self._traced_call(token, tool_name, arguments, timeout_seconds, on_send, tracing.capture()),
            self._loop,
        )
        try:
            return future.result(timeout=timeout_seconds + self._loop_grace_seconds)
        except TimeoutError:
            # The client's event loop did not end the call in time (a process starved of CPU):
            # it may have been sent. It is stopped and answered as a call that timed out, never
            # raised (an unclassified error would end the execution FAILED as unexpected).
            future.cancel()
            if self._confirm(tool_name):
                return _unknown_outcome(tool_name, arguments, "its answer did not arrive in time")
            return _transport_failure(
                ErrorClass.TIMEOUT,
                "TOOL_CALL_TIMEOUT",
                f"the tool call did not answer within {timeout_seconds:g}s",
            )

    async def _traced_call(
        self,
        token: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        on_send: Callable[[], None] | None,
        caller: OtelContext,
    ) -> ToolCallOutcome:
        """The call in a span (``gateway.call {tool}``), a child of the caller's (the InvokeTool
        step's) span. Below it the MCP SDK's own client span per request, whose trace context
        travels in the request's ``_meta``; over HTTP the ``traceparent`` header goes too."""
        detach = tracing.attach(caller)
        try:
            with tracing.span(
                f"gateway.call {tool_name}", attributes={"gen_ai.tool.name": tool_name}
            ) as span:
                outcome = await self._call(token, tool_name, arguments, timeout_seconds, on_send)
                span.set_attribute("fulfill.tool_success", outcome.success)
                if outcome.error is not None:
                    span.set_attribute("fulfill.error_code", outcome.error.error_code)
                    span.set_attribute("fulfill.error_class", outcome.error.error_class.value)
                return outcome
        finally:
            detach()

    def _run_loop(self) -> None:
        """The client's event loop, until :meth:`close`. It runs one long-lived task (not
        ``run_forever``): anyio takes that task as the loop's root, so the worker threads the
        in-memory gateway's blocking work runs on (``gateway.server.gateway_threads``) are kept
        between calls and reused, instead of being started for each call and stopped when its
        task ends (anyio ties a worker thread to the root task it finds)."""
        self._loop.run_until_complete(self._until_closed())

    async def _until_closed(self) -> None:
        await self._stopped

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._transport.aclose(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._stop_loop)
        self._thread.join(timeout=5)

    def _stop_loop(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)

    @asynccontextmanager
    async def _session(
        self,
        token: str,
        timeout_seconds: float,
        statuses: list[int],
        on_send: Callable[[], None] | None = None,
    ) -> AsyncIterator[Client]:
        async def remember_status(response: httpx2.Response) -> None:
            statuses.append(response.status_code)

        async def notice_send(request: httpx2.Request) -> None:
            if on_send is not None and _TOOLS_CALL in request.content:
                on_send()

        http = httpx2.AsyncClient(
            transport=self._transport,
            headers=tracing.inject_headers({"Authorization": f"Bearer {token}"}),
            timeout=httpx2.Timeout(timeout_seconds),
            event_hooks={"request": [notice_send], "response": [remember_status]},
        )
        async with Client(
            streamable_http_client(self._url, http_client=http, terminate_on_close=False)
        ) as mcp:
            yield mcp

    async def _call(
        self,
        token: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        on_send: Callable[[], None] | None,
    ) -> ToolCallOutcome:
        statuses: list[int] = []
        calling = False
        meta = cast(
            RequestParamsMeta,
            {
                IDEMPOTENCY_META_KEY: arguments.get("idempotency_key"),
                TIMEOUT_META_KEY: int(timeout_seconds * 1000),
            },
        )
        try:
            with anyio.fail_after(timeout_seconds):
                async with self._session(token, timeout_seconds, statuses, on_send) as mcp:
                    calling = True
                    result = await mcp.call_tool(tool_name, arguments, meta=meta)
        except TimeoutError:
            if calling and self._confirm(tool_name):
                return _unknown_outcome(tool_name, arguments, "its answer did not arrive in time")
            return _transport_failure(
                ErrorClass.TIMEOUT,
                "TOOL_CALL_TIMEOUT",
                f"the tool call did not answer within {timeout_seconds:g}s",
            )
        except Exception as exc:  # the MCP client raises exception groups; classify the whole
            if calling and self._confirm(tool_name) and _maybe_sent(exc, statuses):
                return _unknown_outcome(tool_name, arguments, "its answer was lost")
            return _failure_from_exception(exc, statuses)
        return outcome_from_call_result(result)


class TokenRefused(Exception):
    """The in-memory gateway refused the call's token, as its HTTP endpoint would with 401 or 403."""


class InProcessToolGateway(McpToolGateway):
    """``tools/call`` to this process's own gateway server, in memory.

    Only the transport differs from HTTP: the token is checked by the gateway's own verifier
    (401 when it is not a valid service token, 403 without ``gateway:invoke``, recorded as the
    HTTP endpoint's statuses so the outcome is the same), then the request goes through the MCP
    client and server, the gateway's guard (which reads the verified token from the same context
    the HTTP middleware sets, here the calling task's own) and the tool.

    A call runs in the thread that makes it (the engine's step thread, which waits for it anyway),
    on an event loop of that thread's own, from the token check to the tool's write: no switch
    to another thread and back. A call made from a thread that is already running an event loop
    goes to the client's shared loop thread instead (the tool then runs on a gateway thread).

    Each event loop keeps one in-memory MCP session for all its calls (each call's token lives in
    its own task's context), so the client's discovery, tool list and output-schema validators
    are built once per loop, not per call; they are rebuilt when a call names a tool the session
    has not seen.
    """

    def __init__(
        self,
        server: MCPServer,
        verifier: GatewayTokenVerifier,
        tokens: ServiceTokens,
        *,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__("", tokens, max_connections=1, confirm=confirm)
        self._server = server
        self._verifier = verifier
        self._sessions: dict[asyncio.AbstractEventLoop, _HeldSession] = {}
        self._sessions_lock = threading.Lock()
        self._own = threading.local()  # each calling thread's event loop
        self._closed = False

    def call_tool(
        self,
        *,
        tenant_id: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        on_send: Callable[[], None] | None = None,
    ) -> ToolCallOutcome:
        loop = self._callers_loop()
        if loop is None:
            return super().call_tool(
                tenant_id=tenant_id,
                tool_name=tool_name,
                arguments=arguments,
                timeout_seconds=timeout_seconds,
                on_send=on_send,
            )
        if arguments.get("tenant_id") != tenant_id:
            return _transport_failure(
                ErrorClass.AUTH, "TOKEN_BINDING_MISMATCH", "the tool call's tenant_id is not its tenant"
            )
        try:
            token = self._tokens.token_for_call(arguments, timeout_seconds=timeout_seconds)
        except TokenError as exc:
            return _transport_failure(ErrorClass.VALIDATION, "TOOL_BINDING_MISSING", str(exc))
        with on_the_callers_own_loop():
            call = self._traced_call(token, tool_name, arguments, timeout_seconds, on_send, tracing.capture())
            return loop.run_until_complete(call)

    def _callers_loop(self) -> asyncio.AbstractEventLoop | None:
        """This thread's own event loop for its calls (made at its first call); None when the
        thread runs an event loop already, or once the gateway is closed."""
        if self._closed or _running_loop() is not None:
            return None
        loop: asyncio.AbstractEventLoop | None = getattr(self._own, "loop", None)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            self._own.loop = loop
        return loop

    def close(self) -> None:
        self._closed = True
        with self._sessions_lock:
            held = list(self._sessions.items())
            self._sessions.clear()
        for loop, session in held:
            if loop is self._loop:
                asyncio.run_coroutine_threadsafe(session.release(), self._loop).result(timeout=5)
            elif not loop.is_running() and not loop.is_closed():
                # An idle calling thread's loop: its session is ended here, then the loop closed.
                loop.run_until_complete(session.release())
                loop.close()
        super().close()

    async def _shared_session(self) -> Client:
        loop = asyncio.get_running_loop()
        with self._sessions_lock:
            held = self._sessions.get(loop)
            if held is None or held.ended:  # none yet, or one that failed to open or ended
                held = self._sessions[loop] = _HeldSession(self._server, loop)
        return await held.client()

    @asynccontextmanager
    async def _session(
        self,
        token: str,
        timeout_seconds: float,
        statuses: list[int],
        on_send: Callable[[], None] | None = None,
    ) -> AsyncIterator[Client]:
        access = await self._verifier.verify_token(token)
        if access is None:
            statuses.append(401)
            raise TokenRefused("the gateway refused the token")
        if Scope.GATEWAY_INVOKE not in access.scopes:
            statuses.append(403)
            raise TokenRefused(f"the token lacks {Scope.GATEWAY_INVOKE}")
        mcp = await self._shared_session()
        bound = auth_context_var.set(AuthenticatedUser(access))
        try:
            if on_send is not None:
                on_send()  # in memory, the call goes straight on to the tool
            yield mcp
        finally:
            auth_context_var.reset(bound)


class _HeldSession:
    """One in-memory MCP session on one event loop, entered and left in one task of that loop
    (as anyio requires), which waits between the loop's calls."""

    def __init__(self, server: MCPServer, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._ready: asyncio.Future[Client] = loop.create_future()
        self._closing = asyncio.Event()
        self._holder = loop.create_task(self._hold())

    async def _hold(self) -> None:
        try:
            async with Client(self._server) as mcp:
                self._ready.set_result(mcp)
                await self._closing.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    @property
    def ended(self) -> bool:
        return self._holder.done()

    async def client(self) -> Client:
        return await asyncio.shield(self._ready)

    async def release(self) -> None:
        self._closing.set()
        await asyncio.wait([self._holder], timeout=4)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _transport_failure(error_class: ErrorClass, code: str, message: str) -> ToolCallOutcome:
    return ToolCallOutcome(
        success=False, error=ExecutionError(error_class=error_class, error_code=code, error_message=message)
    )


def _unknown_outcome(tool_name: str, arguments: dict[str, Any], what: str) -> ToolCallOutcome:
    target = tool_name.split(".", 1)[0]
    return _transport_failure(
        ErrorClass.UNKNOWN,
        UNKNOWN_OUTCOME,
        f"the call to {tool_name} was sent and {what}; {target} does not deduplicate, so it is not "
        f"retried: check {target} for idempotency key {arguments.get('idempotency_key')}",
    )


def _maybe_sent(exc: BaseException, statuses: list[int]) -> bool:
    """Whether a failed call may have reached the gateway's tool: not when the connection was
    refused, the token was refused, or the gateway answered a status that means "not processed"."""
    if isinstance(exc, TokenRefused):
        return False
    failed_status = next((status for status in reversed(statuses) if status >= 400), None)
    if failed_status is not None:
        return failed_status in (500, 502, 504)
    leaves = _leaves(exc)
    return not all(isinstance(leaf, httpx2.ConnectError | httpx2.ConnectTimeout) for leaf in leaves)


def _failure_from_exception(exc: BaseException, statuses: list[int]) -> ToolCallOutcome:
    failed_status = next((status for status in reversed(statuses) if status >= 400), None)
    if failed_status is not None:
        error_class = classify(http_status=failed_status)
        return _transport_failure(
            error_class, f"GATEWAY_HTTP_{failed_status}", f"the gateway answered HTTP {failed_status}"
        )
    leaves = _leaves(exc)
    if any(isinstance(leaf, httpx2.TimeoutException | TimeoutError) for leaf in leaves):
        return _transport_failure(
            ErrorClass.TIMEOUT, "TOOL_CALL_TIMEOUT", "the gateway did not answer in time"
        )
    if any(isinstance(leaf, httpx2.TransportError | OSError) for leaf in leaves):
        return _transport_failure(
            ErrorClass.DOWNSTREAM, "GATEWAY_UNAVAILABLE", "the gateway could not be reached"
        )
    mcp_error = next((leaf for leaf in leaves if isinstance(leaf, MCPError)), None)
    if mcp_error is not None:
        message = str(mcp_error)[:300]
        return _transport_failure(classify(message=message), "MCP_PROTOCOL_ERROR", message)
    log.warning("tool call failed unexpectedly: %s", describe_failure(exc))
    return _transport_failure(ErrorClass.UNKNOWN, "GATEWAY_ERROR", "the tool call failed unexpectedly")
