"""InvokeTool's MCP client: ``tools/call`` over Streamable HTTP to the gateway.

One background event loop owns one HTTP connection pool, shared by every call from every worker
thread. Each call gets its own service token, minted from the call's trusted arguments
(``tenant_id``, ``account_id``, ``action_intent_id``, ``idempotency_key``), so the gateway can
check that the call is the one the engine meant to make. Each call has its own timeout (below the
step's budget). Failures come back classified, never raised: the engine decides what to retry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from fulfill.domain.errors import ErrorClass, ExecutionError, classify
from fulfill.domain.ports import ToolCallOutcome
from fulfill.gateway.results import outcome_from_call_result
from fulfill.logging_setup import describe_failure
from fulfill.tokens import ServiceTokens, TokenError

log = logging.getLogger(__name__)


class McpToolGateway:
    def __init__(self, url: str, tokens: ServiceTokens, *, max_connections: int = 64) -> None:
        self._url = url
        self._tokens = tokens
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fulfill-mcp-client", daemon=True)
        self._thread.start()
        self._transport = httpx2.AsyncHTTPTransport(
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        )

    def call_tool(
        self, *, tenant_id: str, tool_name: str, arguments: dict[str, Any], timeout_seconds: float
    ) -> ToolCallOutcome:
        """One ``tools/call``. ``arguments`` carry the trusted bindings (``with_trusted_arguments``);
        the call's service token is bound to them."""
        if arguments.get("tenant_id") != tenant_id:
            return _transport_failure(
                ErrorClass.AUTH, "TOKEN_BINDING_MISMATCH", "the tool call's tenant_id is not its tenant"
            )
        try:
            token = self._tokens.token_for_call(arguments, timeout_seconds=timeout_seconds)
        except TokenError as exc:
            return _transport_failure(ErrorClass.VALIDATION, "TOOL_BINDING_MISSING", str(exc))
        future = asyncio.run_coroutine_threadsafe(
            self._call(token, tool_name, arguments, timeout_seconds), self._loop
        )
        return future.result(timeout=timeout_seconds + 5)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._transport.aclose(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _client(self, token: str, timeout_seconds: float, statuses: list[int]) -> Client:
        async def remember_status(response: httpx2.Response) -> None:
            statuses.append(response.status_code)

        http = httpx2.AsyncClient(
            transport=self._transport,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx2.Timeout(timeout_seconds),
            event_hooks={"response": [remember_status]},
        )
        return Client(streamable_http_client(self._url, http_client=http, terminate_on_close=False))

    async def _call(
        self, token: str, tool_name: str, arguments: dict[str, Any], timeout_seconds: float
    ) -> ToolCallOutcome:
        statuses: list[int] = []
        try:
            with anyio.fail_after(timeout_seconds):
                async with self._client(token, timeout_seconds, statuses) as mcp:
                    result = await mcp.call_tool(tool_name, arguments)
        except TimeoutError:
            return _transport_failure(
                ErrorClass.TIMEOUT,
                "TOOL_CALL_TIMEOUT",
                f"the tool call did not answer within {timeout_seconds:g}s",
            )
        except Exception as exc:  # the MCP client raises exception groups; classify the whole
            return _failure_from_exception(exc, statuses)
        return outcome_from_call_result(result)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _transport_failure(error_class: ErrorClass, code: str, message: str) -> ToolCallOutcome:
    return ToolCallOutcome(
        success=False, error=ExecutionError(error_class=error_class, error_code=code, error_message=message)
    )


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
