"""InvokeTool's MCP client: ``tools/call`` to the gateway, over Streamable HTTP or in memory.

Over HTTP (:class:`McpToolGateway`, when ``FULFILL_GATEWAY_URL`` names a gateway) one background
event loop owns one HTTP client and its connection pool, shared by every call from every worker
thread, and a call is one HTTP request: the gateway's stateless Streamable HTTP endpoint takes a
``tools/call`` that carries the protocol version in its own ``_meta`` (no handshake, no session),
with the call's own service token in that request's ``Authorization`` header and its own HTTP
status read from that request's answer. The tool list (for the output schemas the answer is
checked against) is fetched once, with the token of the call that first names a tool, not per
call. In memory
(:class:`fulfill.gateway.inprocess.InProcessToolGateway`, the default: the engine calls its own process's gateway) the same
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
import itertools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
from mcp import MCPError
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    encode_header_value,
    find_invalid_x_mcp_header,
    mcp_param_headers,
    x_mcp_header_map,
)
from mcp.types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    PROTOCOL_VERSION_META_KEY,
    CallToolResult,
    JSONRPCError,
    JSONRPCResponse,
    ListToolsResult,
    jsonrpc_message_adapter,
)
from mcp.types.methods import parse_server_result
from mcp.types.version import LATEST_MODERN_VERSION
from opentelemetry.context import Context as OtelContext
from pydantic import ValidationError

from fulfill import __version__, tracing
from fulfill.domain.errors import ErrorClass, ExecutionError, classify
from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.targets import IDEMPOTENCY_META_KEY, TIMEOUT_META_KEY, UNKNOWN_OUTCOME
from fulfill.gateway.results import outcome_from_call_result
from fulfill.logging_setup import describe_failure
from fulfill.tls import httpx2_context
from fulfill.tokens import ServiceTokens, TokenError

log = logging.getLogger(__name__)

# Below the idle timeout of the gateway's HTTP server (uvicorn's default, 5 s).
KEEPALIVE_EXPIRY_SECONDS = 2.0
# The most connections in one pool of :class:`ConnectionPools`.
POOL_CONNECTIONS = 8

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

# Over HTTP every request carries its protocol version (the gateway's endpoint is stateless).
PROTOCOL_VERSION = LATEST_MODERN_VERSION
_CLIENT_INFO = {"name": "fulfill-engine", "version": __version__}
# A tools/list answer that pages past this is not followed further (a listing that never ends).
_MAX_LIST_PAGES = 32


@dataclass(frozen=True)
class _ListedTool:
    """What the gateway's tool list says of one tool: the schema its answers are checked against
    (None: none declared), and which arguments it wants mirrored in ``Mcp-Param-*`` headers."""

    output_schema: dict[str, Any] | None
    header_map: dict[tuple[str, ...], str]


class ConnectionPools:
    """HTTP clients for the gateway, each with a pool of at most :data:`POOL_CONNECTIONS`
    connections, ``max_connections`` in all; a request goes to the pool with the most free
    connections, so none waits for a connection while fewer than ``max_connections`` are busy.

    Why not one pool: httpcore's pool looks at every connection it holds (expired? idle?) when a
    request starts and when a response ends, so a pool of 64 connections, the default worker
    concurrency, made about 64 checks twice per call; a pool of 8 makes 8. An idle connection is
    dropped before the gateway's server drops it (uvicorn: 5 s): a call written on a connection
    the server is closing loses its answer, which for a target that does not deduplicate is an
    UNKNOWN_OUTCOME. Used from one event loop only (the counts are not locked)."""

    def __init__(self, max_connections: int) -> None:
        total = max(1, max_connections)
        count = -(-total // POOL_CONNECTIONS)  # pools, rounded up
        base, extra = divmod(total, count)
        self.sizes = [base + (1 if pool < extra else 0) for pool in range(count)]
        self._clients = [
            httpx2.AsyncClient(
                transport=httpx2.AsyncHTTPTransport(
                    verify=httpx2_context(),
                    limits=httpx2.Limits(
                        max_connections=size,
                        max_keepalive_connections=size,
                        keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
                    ),
                )
            )
            for size in self.sizes
        ]
        self.busy = [0] * count  # requests in flight, by pool

    async def post(self, url: str, **options: Any) -> httpx2.Response:
        """``AsyncClient.post`` on the pool with the most free connections (its whole body read,
        so the connection is free again when it returns)."""
        index = max(range(len(self._clients)), key=lambda pool: self.sizes[pool] - self.busy[pool])
        self.busy[index] += 1
        try:
            return await self._clients[index].post(url, **options)
        finally:
            self.busy[index] -= 1

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


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
        # FULFILL_WORKER_CONCURRENCY), in pools of a few (no default headers: each request
        # carries its own token).
        self._http = ConnectionPools(max_connections)
        self._request_ids = itertools.count(1)
        # The gateway's tool list as last fetched, the output-schema validators compiled from it,
        # and the listing in flight that calls naming a tool not listed yet wait for.
        self._tools: dict[str, _ListedTool] = {}
        self._validators: dict[str, Validator] = {}
        self._listing: asyncio.Task[None] | None = None

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
        leaves (after the tool list, when this call is the one that fetches it)."""
        token = self._call_token(tenant_id, arguments, timeout_seconds)
        if isinstance(token, ToolCallOutcome):
            return token
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

    def _call_token(
        self, tenant_id: str, arguments: dict[str, Any], timeout_seconds: float
    ) -> str | ToolCallOutcome:
        """The call's service token, bound to its trusted arguments; or the failure that stops the
        call before anything is sent (the arguments name another tenant, or lack a binding)."""
        if arguments.get("tenant_id") != tenant_id:
            return _transport_failure(
                ErrorClass.AUTH, "TOKEN_BINDING_MISMATCH", "the tool call's tenant_id is not its tenant"
            )
        try:
            return self._tokens.token_for_call(arguments, timeout_seconds=timeout_seconds)
        except TokenError as exc:
            return _transport_failure(ErrorClass.VALIDATION, "TOOL_BINDING_MISSING", str(exc))

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
        asyncio.run_coroutine_threadsafe(self._http.aclose(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._stop_loop)
        self._thread.join(timeout=5)

    def _stop_loop(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)

    async def _call(
        self,
        token: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        on_send: Callable[[], None] | None,
    ) -> ToolCallOutcome:
        """The call as one ``tools/call`` POST on the shared client, its token in that request's
        header. Everything it learns (its statuses, its answer) is its own: another call's failure
        (a refused token, a lost connection, a malformed answer) is never this one's."""
        statuses: list[int] = []
        calling = False
        try:
            with anyio.fail_after(timeout_seconds):
                tool, listed_now = await self._listed_tool(tool_name, token, timeout_seconds, statuses)
                calling = True
                result = await self._post_tools_call(
                    token, tool_name, arguments, timeout_seconds, statuses, on_send, tool
                )
                if not result.is_error:
                    await self._check_output(tool_name, result, listed_now, token, timeout_seconds, statuses)
        except Exception as exc:  # a timeout, or what the transport or the answer raised
            return self._failed_call(exc, tool_name, arguments, timeout_seconds, statuses, sent=calling)
        return outcome_from_call_result(result)

    def _failed_call(
        self,
        exc: Exception,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        statuses: list[int],
        *,
        sent: bool,
    ) -> ToolCallOutcome:
        """A call that raised, classified (both transports): a call that may have reached a tool
        of a target that does not deduplicate is ``UNKNOWN_OUTCOME``, never retried; the rest by
        HTTP status, then transport, then protocol. ``sent``: the ``tools/call`` had left."""
        if isinstance(exc, TimeoutError):
            if sent and self._confirm(tool_name):
                return _unknown_outcome(tool_name, arguments, "its answer did not arrive in time")
            return _transport_failure(
                ErrorClass.TIMEOUT,
                "TOOL_CALL_TIMEOUT",
                f"the tool call did not answer within {timeout_seconds:g}s",
            )
        if sent and self._confirm(tool_name) and _maybe_sent(exc, statuses):
            return _unknown_outcome(tool_name, arguments, "its answer was lost")
        return _failure_from_exception(exc, statuses)

    async def _post_tools_call(
        self,
        token: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        statuses: list[int],
        on_send: Callable[[], None] | None,
        tool: _ListedTool | None,
    ) -> CallToolResult:
        """``tools/call``; sent again once, after the tool list is fetched again, when the gateway
        refuses it before dispatch because its ``Mcp-Param-*`` headers are not what the tool's
        input schema now asks for (``HEADER_MISMATCH``: the tool never ran)."""
        meta = {
            IDEMPOTENCY_META_KEY: arguments.get("idempotency_key"),
            TIMEOUT_META_KEY: int(timeout_seconds * 1000),
        }
        for attempt in range(2):
            headers = {MCP_NAME_HEADER: encode_header_value(tool_name)}
            if tool is not None and tool.header_map:
                headers.update(mcp_param_headers(tool.header_map, arguments))
            params = {"_meta": dict(meta), "name": tool_name, "arguments": arguments}
            try:
                raw = await self._post(
                    "tools/call", params, token, timeout_seconds, statuses, headers, on_send
                )
            except MCPError as exc:
                if exc.code != HEADER_MISMATCH or attempt > 0:
                    raise
                refused = len(statuses) - 1
                await self._refresh_tools(token, timeout_seconds, statuses, shared=False)
                # The refusal (400) is answered by the resend: the resend's own status decides.
                del statuses[refused:]
                tool = self._tools.get(tool_name)
                continue
            result = parse_server_result("tools/call", PROTOCOL_VERSION, raw)
            if not isinstance(result, CallToolResult):
                raise MCPError(
                    INVALID_REQUEST, f"the gateway answered tools/call with {type(result).__name__}"
                )
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(
        self,
        method: str,
        params: dict[str, Any],
        token: str,
        timeout_seconds: float,
        statuses: list[int],
        headers: Mapping[str, str] | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """One JSON-RPC request, one HTTP POST: its result, or an error raised as the MCP SDK's
        Streamable HTTP transport raises it (``MCPError``; the HTTP status is in ``statuses``)."""
        request_id = next(self._request_ids)
        meta = params.setdefault("_meta", {})
        meta[PROTOCOL_VERSION_META_KEY] = PROTOCOL_VERSION
        meta[CLIENT_INFO_META_KEY] = _CLIENT_INFO
        meta[CLIENT_CAPABILITIES_META_KEY] = {}
        tracing.inject_headers(meta)  # the MCP server's span is a child of this call's
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        request_headers = tracing.inject_headers(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
                MCP_PROTOCOL_VERSION_HEADER: PROTOCOL_VERSION,
                MCP_METHOD_HEADER: method,
                **(headers or {}),
            }
        )
        if on_send is not None:
            on_send()
        response = await self._http.post(
            self._url,
            content=body.encode(),
            headers=request_headers,
            timeout=httpx2.Timeout(timeout_seconds),
        )
        statuses.append(response.status_code)
        return _jsonrpc_result(response, request_id)

    async def _listed_tool(
        self, name: str, token: str, timeout_seconds: float, statuses: list[int]
    ) -> tuple[_ListedTool | None, bool]:
        """The tool as the gateway lists it (None: not listed), and whether this call fetched the
        list for it (a tool first named by this call)."""
        tool = self._tools.get(name)
        if tool is not None:
            return tool, False
        await self._refresh_tools(token, timeout_seconds, statuses, shared=True)
        return self._tools.get(name), True

    async def _refresh_tools(
        self, token: str, timeout_seconds: float, statuses: list[int], *, shared: bool
    ) -> None:
        """Fetch the tool list again. With ``shared``, a listing still in flight is waited for
        instead; when that one fails (another call's token or connection), this call fetches its
        own, with its own token: another call's failure is never this call's."""
        pending = self._listing
        if shared and pending is not None and not pending.done():
            try:
                await asyncio.shield(pending)
                return
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this call was cancelled, not the listing
            except Exception:  # noqa: S110 - this call lists on its own below
                pass
        own = asyncio.ensure_future(self._list_tools(token, timeout_seconds, statuses))
        own.add_done_callback(_retrieved)
        if self._listing is None or self._listing.done():
            self._listing = own
        await asyncio.shield(own)

    async def _list_tools(self, token: str, timeout_seconds: float, statuses: list[int]) -> None:
        listed: dict[str, _ListedTool] = {}
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            params: dict[str, Any] = {} if cursor is None else {"cursor": cursor}
            raw = await self._post("tools/list", params, token, timeout_seconds, statuses)
            if isinstance(raw.get("ttlMs"), int | float) and raw["ttlMs"] < 0:
                raw["ttlMs"] = 0
            page = parse_server_result("tools/list", PROTOCOL_VERSION, raw)
            assert isinstance(page, ListToolsResult)
            for tool in page.tools:
                if (reason := find_invalid_x_mcp_header(tool.input_schema)) is not None:
                    log.warning("tool %r left out: invalid x-mcp-header (%s)", tool.name[:128], reason)
                    continue
                listed[tool.name] = _ListedTool(tool.output_schema, x_mcp_header_map(tool.input_schema))
            cursor = page.next_cursor
            if cursor is None:
                break
        for name in list(self._validators):
            before, now = self._tools.get(name), listed.get(name)
            if before is None or now is None or now.output_schema != before.output_schema:
                del self._validators[name]
        self._tools = listed

    async def _check_output(
        self,
        name: str,
        result: CallToolResult,
        listed_now: bool,
        token: str,
        timeout_seconds: float,
        statuses: list[int],
    ) -> None:
        """The answer against the tool's output schema, as the MCP SDK's client checks it (a
        ``RuntimeError`` when it does not fit). The list is fetched once per tool, not per call:
        an answer that does not fit the schema listed before this call is checked again against
        a list fetched now, so a schema the gateway changed since is the one that decides."""
        try:
            self._validate_output(name, result)
        except RuntimeError:
            if listed_now:
                raise
            await self._refresh_tools(token, timeout_seconds, statuses, shared=False)
            self._validate_output(name, result)

    def _validate_output(self, name: str, result: CallToolResult) -> None:
        tool = self._tools.get(name)
        if tool is None:
            log.warning(
                "tool %s is not listed by the gateway: its answer's schema is not checked", name[:128]
            )
            return
        if tool.output_schema is None:
            return
        from jsonschema import SchemaError
        from jsonschema import exceptions as jsonschema_exceptions
        from jsonschema.validators import validator_for
        from referencing import Registry
        from referencing.exceptions import Unresolvable

        if result.structured_content is None and "structured_content" not in result.model_fields_set:
            raise RuntimeError(f"Tool {name} has an output schema but did not return structured content")
        validator = self._validators.get(name)
        if validator is None:
            validator_cls = validator_for(tool.output_schema)
            try:
                validator_cls.check_schema(tool.output_schema)
            except SchemaError as exc:
                raise RuntimeError(f"Invalid schema for tool {name}: {exc}") from exc
            validator = validator_cls(tool.output_schema, registry=Registry())
            self._validators[name] = validator
        try:
            error = jsonschema_exceptions.best_match(validator.iter_errors(result.structured_content))
        except Unresolvable as exc:
            raise RuntimeError(f"Invalid schema for tool {name}: {exc}") from exc
        if error is not None:
            raise RuntimeError(f"Invalid structured content returned by tool {name}: {error}") from error


class TokenRefused(Exception):
    """The in-memory gateway refused the call's token, as its HTTP endpoint would with 401 or 403."""


def _jsonrpc_result(response: httpx2.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC result of one POST's answer, or the ``MCPError`` the MCP SDK's transport would
    raise for it: the error the body states, else one that says what was wrong with the answer."""
    content_type = response.headers.get("content-type", "").lower()
    if response.status_code >= 400:
        if content_type.startswith("application/json"):
            try:
                message = jsonrpc_message_adapter.validate_json(response.content, by_name=False)
            except ValidationError:
                message = None
            if isinstance(message, JSONRPCError):
                raise MCPError.from_error_data(message.error)
        raise MCPError(INTERNAL_ERROR, "Server returned an error response")
    if response.status_code != 200:
        raise MCPError(
            INVALID_REQUEST, f"the gateway answered HTTP {response.status_code}, not a JSON-RPC answer"
        )
    if not content_type.startswith("application/json"):
        raise MCPError(INVALID_REQUEST, f"Unexpected content type: {content_type[:100]}")
    try:
        message = jsonrpc_message_adapter.validate_json(response.content, by_name=False)
    except ValidationError as exc:
        raise MCPError(PARSE_ERROR, f"Failed to parse JSON response: {exc}") from exc
    if isinstance(message, JSONRPCError) and message.id in (request_id, None):
        raise MCPError.from_error_data(message.error)
    if not isinstance(message, JSONRPCResponse) or message.id != request_id:
        raise MCPError(INVALID_REQUEST, "the gateway's answer is not the answer to this request")
    return dict(message.result)


def _retrieved(task: asyncio.Future[None]) -> None:
    """A listing nobody waits for any more (its call timed out): its failure is not logged as
    never retrieved (the call that waited for it was answered)."""
    if not task.cancelled():
        task.exception()


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
