"""The engine's MCP client to its own process's gateway, in memory (the default deployment).

Only the transport differs from HTTP (:class:`fulfill.gateway.client.McpToolGateway`): the token
is checked by the gateway's own verifier and scope rule, then the request goes through the MCP
client and server, the gateway's guard and the tool, on the calling thread's own event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.mcpserver import MCPServer
from mcp.types import RequestParamsMeta

from fulfill import tracing
from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.scopes import Scope
from fulfill.domain.targets import IDEMPOTENCY_META_KEY, TIMEOUT_META_KEY
from fulfill.gateway.client import McpToolGateway, TokenRefused
from fulfill.gateway.results import outcome_from_call_result
from fulfill.gateway.server import GatewayTokenVerifier, on_the_callers_own_loop
from fulfill.gateway.session_share import SessionListing, SharedToolListing, install
from fulfill.tokens import ServiceTokens


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
    its own task's context), so the client's discovery is made once per loop, not per call. The
    tool listing and the compiled output-schema validators are the process's, shared by all its
    sessions (:mod:`fulfill.gateway.session_share`): one ``tools/list`` and one compile per
    schema for all the threads, not one per thread. A call naming a tool its session's listing
    does not hold has the listing fetched again for that session, as before; an answer that does
    not fit its session's listing's output schema is checked again against a listing fetched
    then, as over HTTP.
    """

    def __init__(
        self,
        server: MCPServer,
        verifier: GatewayTokenVerifier,
        tokens: ServiceTokens,
        *,
        confirm: Callable[[str], bool] | None = None,
        listing: SharedToolListing | None = None,
    ) -> None:
        super().__init__("", tokens, max_connections=1, confirm=confirm)
        self._server = server
        self._verifier = verifier
        self._sessions: dict[asyncio.AbstractEventLoop, _HeldSession] = {}
        self._shared_listing = listing or SharedToolListing()  # this gateway's sessions' own
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
        token = self._call_token(tenant_id, arguments, timeout_seconds)
        if isinstance(token, ToolCallOutcome):
            return token
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
        """This loop's session, holding the process's newest tool listing."""
        loop = asyncio.get_running_loop()
        with self._sessions_lock:
            held = self._sessions.get(loop)
            if held is None or held.ended:  # none yet, or one that failed to open or ended
                held = self._sessions[loop] = _HeldSession(self._server, loop, self._shared_listing)
        mcp = await held.client()
        await self._shared_listing.ensure_listed(held.listing, mcp)
        return mcp

    async def _call(
        self,
        token: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        on_send: Callable[[], None] | None,
    ) -> ToolCallOutcome:
        """The call through this loop's in-memory MCP session (token checked first)."""
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
                async with self._session(token, statuses, on_send) as mcp:
                    calling = True
                    result = await mcp.call_tool(tool_name, arguments, meta=meta)
        except Exception as exc:  # the MCP client raises exception groups; classified whole
            return self._failed_call(exc, tool_name, arguments, timeout_seconds, statuses, sent=calling)
        return outcome_from_call_result(result)

    @asynccontextmanager
    async def _session(
        self, token: str, statuses: list[int], on_send: Callable[[], None] | None
    ) -> AsyncIterator[Client]:
        """The loop's session with the call's verified token in the calling task's context, as the
        HTTP endpoint's middleware would set it; 401 and 403 are recorded as that endpoint's."""
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

    def __init__(self, server: MCPServer, loop: asyncio.AbstractEventLoop, shared: SharedToolListing) -> None:
        self._server = server
        self._shared = shared
        self.listing = SessionListing()
        self._ready: asyncio.Future[Client] = loop.create_future()
        self._closing = asyncio.Event()
        self._holder = loop.create_task(self._hold())

    async def _hold(self) -> None:
        try:
            async with self._shared.client(self._server) as mcp:
                install(self._shared, mcp, self.listing)
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
