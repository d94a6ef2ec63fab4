"""The gateway's MCP client for its targets: discovery (``tools/list``) and forwarded ``tools/call``.

Every exchange opens its own MCP session over Streamable HTTP (the ``mcp`` SDK's client), on its
own connection pool whose connections go only to checked addresses (``gateway/egress.py``), with
a timeout on the whole exchange. Failures come back classified, never raised.

**Unknown outcomes.** A forwarded call that fails *before* any of its bytes were written (the
connection refused, the name did not resolve, the token URL failed, the session could not be
opened) wrote nothing: it is a transient failure, retried by the engine. A call whose request was
written and whose answer was lost (a timeout, a dropped connection, a gateway error such as HTTP
500/502/504, an unreadable answer) may have written. If the target deduplicates on the
idempotency key (sent in ``_meta`` as ``io.fulfill/idempotency-key``), that failure stays
transient and the retry, with the same key, is answered without a second write. If it does not,
the call ends ``UNKNOWN_OUTCOME`` (class ``UNKNOWN``, never retried) for a person to check.
Definite refusals (HTTP 4xx other than 408, a JSON-RPC "method not found" or "invalid params")
are classified as such: the target said no.

**What a target may answer.** The HTTP bodies of one exchange together may bring at most
``max_response_bytes`` (``FULFILL_GATEWAY_MAX_RESPONSE_BYTES``), counted while they stream in
(``gateway/egress.py``): past it the exchange stops reading, so memory never holds more. An
oversized listing fails discovery (``TARGET_ANSWER_TOO_LARGE``). An oversized ``tools/call``
answer reached the target, so the call may have written and nobody can read whether it did: on a
target that does not deduplicate it is ``UNKNOWN_OUTCOME`` like any lost answer; on one that does,
``TARGET_ANSWER_TOO_LARGE`` (class ``UNKNOWN``, not retried: the retry would be answered the same
oversized answer from the target's cache; a rerun with the same key writes nothing twice). A
listing keeps at most ``MAX_TOOLS_PER_TARGET`` tools and names at most ``MAX_SKIPPED_TOOLS``
skipped ones. A target's error code is namespaced (``TARGET:{CODE}``) and its message bounded
(``domain/errors.target_error``), so that it never reads as one of fulfill's own. A plain-text
answer (not JSON) keeps a bounded excerpt (``PLAIN_ANSWER_EXCERPT_BYTES``) for the timeline.

**Sessions.** Each exchange's MCP session is closed when the exchange ends: on a stateful target
(one that gave an ``Mcp-Session-Id``) with an HTTP ``DELETE``, so that the target can free it.

**The protocol version.** An exchange with a target not known yet opens with the SDK's probe
(``server/discover``, falling back to the ``initialize`` handshake). A target that adopted a modern
version (2026-07-28) is remembered with it, by URL, and the next exchanges adopt that version
without probing: a forwarded ``tools/call`` is then one request instead of two. A target that
refuses the remembered version (JSON-RPC ``-32022``) or answers the pinned call HTTP 400 is
forgotten, so that its next exchange probes. The same call is made again at once, with the probe,
only when the answer was ``-32022`` and the target deduplicates: otherwise that answer stands, as
it would have without a remembered version, so that a target that ran the call and then answered
so is never sent it twice. Discovery always probes, and learns again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from fulfill.connectors.base import tool_failure, tool_success
from fulfill.domain.egress import EgressAllowList, EgressRefused
from fulfill.domain.errors import ErrorClass, ExecutionError, classify, printable, target_error
from fulfill.domain.models import ExternalObjectRef
from fulfill.domain.schemas import refusal as schema_refusal
from fulfill.domain.targets import (
    IDEMPOTENCY_META_KEY,
    MAX_DESCRIPTION,
    MAX_SCHEMA_BYTES,
    MAX_TOOLS_PER_TARGET,
    REMOTE_TOOL_NAME,
    UNKNOWN_OUTCOME,
    RemoteToolSpec,
    TargetAuthView,
    gateway_tool_name,
)
from fulfill.gateway.egress import (
    AnswerTooLarge,
    CallTracker,
    Resolver,
    ResponseBudget,
    pinned_client,
    system_resolver,
)
from fulfill.gateway.results import (
    ANSWER_EXCERPT_KEY,
    PLAIN_ANSWER_EXCERPT_BYTES,
    REFS_NOTE_KEY,
    call_payload,
    excerpt,
    plain_text,
    target_error_details,
)
from fulfill.gateway.target_auth import OAuthTokens, TargetAuthFailed, auth_headers
from fulfill.logging_setup import describe_failure

log = logging.getLogger(__name__)

# JSON-RPC errors that say the server refused the request without running it.
_REFUSED_CODES = frozenset({types.METHOD_NOT_FOUND, types.INVALID_PARAMS})
# HTTP statuses that say the request was not (or not yet) processed: safe to send again.
_NOT_PROCESSED_STATUSES = frozenset({408, 429, 503})
_MAX_LIST_PAGES = 20
# Skipped tools named in a listing; the rest are counted in one last entry.
MAX_SKIPPED_TOOLS = 50
# What one exchange may answer unless the service says otherwise (FULFILL_GATEWAY_MAX_RESPONSE_BYTES).
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
TOO_LARGE = "TARGET_ANSWER_TOO_LARGE"


@dataclass(frozen=True)
class TargetEndpoint:
    """Everything needed to reach one target. ``secret`` never leaves this process's memory."""

    name: str
    url: str
    auth: TargetAuthView
    deduplicates: bool = False
    secret: dict[str, str] | None = field(default=None, repr=False)
    # The remote tool (its remote name) that looks a write up by its idempotency key, if declared.
    lookup_tool: str | None = None


class TargetError(Exception):
    """Discovery failed; ``error`` says why (safe to show: no secret, no remote payload)."""

    def __init__(self, error: ExecutionError) -> None:
        super().__init__(error.error_message)
        self.error = error


@dataclass(frozen=True)
class Discovery:
    tools: list[RemoteToolSpec]
    skipped: list[str]


class _VersionRefused:
    """A call made with a remembered protocol version that a deduplicating target refused for that
    version: it is made again with the probe."""


@dataclass
class _Exchange:
    """What one session saw: the HTTP status of each JSON-RPC method, the call's progress, and
    how many bytes its answers brought."""

    budget: ResponseBudget
    tracker: CallTracker = field(default_factory=CallTracker)
    statuses: dict[str, int] = field(default_factory=dict)


class RemoteTargets:
    def __init__(
        self,
        allow: EgressAllowList,
        *,
        resolver: Resolver = system_resolver,
        tokens: OAuthTokens | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._allow = allow
        self._resolver = resolver
        self._tokens = tokens or OAuthTokens()
        self._max_response_bytes = max_response_bytes
        # The modern protocol version each target adopted at its last probe, by URL (module
        # docstring, "The protocol version").
        self._versions: dict[str, str] = {}

    def pinned_version(self, target: TargetEndpoint) -> str | None:
        """The protocol version the next exchange with ``target`` adopts without probing."""
        return self._versions.get(target.url)

    def _exchange(self) -> _Exchange:
        return _Exchange(budget=ResponseBudget(self._max_response_bytes))

    # --- discovery ---------------------------------------------------------------------------

    async def discover(self, target: TargetEndpoint, *, timeout: float) -> Discovery:
        """``tools/list`` (every page). Raises :class:`TargetError`."""
        exchange = self._exchange()
        listed: list[types.Tool] = []
        try:
            with anyio.fail_after(timeout):
                async with self._session(target, timeout, exchange) as client:
                    cursor: str | None = None
                    for _ in range(_MAX_LIST_PAGES):
                        page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                        listed.extend(page.tools)
                        cursor = page.next_cursor
                        if not cursor or len(listed) > MAX_TOOLS_PER_TARGET:
                            break
        except TimeoutError as exc:
            if exchange.budget.exceeded:
                raise TargetError(_setup_failure(target, exc, exchange)) from None
            raise TargetError(
                _error(
                    ErrorClass.TIMEOUT, "TARGET_TIMEOUT", f"{target.name} did not answer within {timeout:g}s"
                )
            ) from None
        except TargetAuthFailed as exc:
            raise TargetError(exc.error) from None
        except Exception as exc:
            raise TargetError(_setup_failure(target, exc, exchange)) from None
        return _specs(target.name, listed)

    # --- tools/call ----------------------------------------------------------------------------

    async def call(
        self,
        target: TargetEndpoint,
        remote_name: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str,
        timeout: float,
    ) -> types.CallToolResult:
        """Forward one ``tools/call``; the answer is normalised (below) or a classified tool error.
        With a remembered version the call adopts it; refused for it by a target that
        deduplicates, the call is made once more with the probe, within the same timeout."""
        pinned = self._versions.get(target.url)
        deadline = anyio.current_time() + timeout
        for version in (pinned, None) if pinned else (None,):
            answer = await self._call_once(
                target,
                remote_name,
                arguments,
                idempotency_key=idempotency_key,
                timeout=max(0.001, deadline - anyio.current_time()),
                version=version,
            )
            if not isinstance(answer, _VersionRefused):
                return answer
        raise AssertionError("a probed call is never refused for a remembered version")

    async def _call_once(
        self,
        target: TargetEndpoint,
        remote_name: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str,
        timeout: float,
        version: str | None,
    ) -> types.CallToolResult | _VersionRefused:
        """One exchange: the session (pinned to ``version``, or probed) and the call in it."""
        exchange = self._exchange()
        result: types.CallToolResult | None = None
        try:
            with anyio.fail_after(timeout):
                async with self._session(target, timeout, exchange, version=version) as client:
                    exchange.tracker.calling = True
                    result = await client.session.send_request(
                        types.CallToolRequest(
                            params=types.CallToolRequestParams(
                                name=remote_name,
                                arguments=arguments,
                                _meta={IDEMPOTENCY_META_KEY: idempotency_key},
                            )
                        ),
                        types.CallToolResult,
                        request_read_timeout_seconds=timeout,
                    )
        except TargetAuthFailed as exc:
            return _failure(exc.error)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            # With an answer in hand, a failure while closing the session changes nothing.
            if result is None:
                if not exchange.tracker.calling:
                    return _failure(
                        _error(ErrorClass.TIMEOUT, "TARGET_TIMEOUT", f"{target.name} did not answer in time")
                        if isinstance(exc, TimeoutError) and not exchange.budget.exceeded
                        else _setup_failure(target, exc, exchange)
                    )
                if version is not None and self._refused_version(target, exc, exchange):
                    return _VersionRefused()
                return _failure(self._call_failure(target, remote_name, idempotency_key, exc, exchange))
        assert result is not None
        return normalized_answer(
            result, target=target.name, tool=remote_name, idempotency_key=idempotency_key
        )

    def _refused_version(self, target: TargetEndpoint, exc: Exception, exchange: _Exchange) -> bool:
        """Whether a call made with a remembered version is made again with the probe: it was
        refused for that version (``-32022``) by a target that deduplicates. A ``-32022`` from a
        target that does not, or a bare HTTP 400, forgets the version (the next call probes) and
        stays this call's answer, as without a remembered version: a target that ran the call and
        then answered so is never sent it twice (module docstring, "The protocol version")."""
        mcp_error = next((leaf for leaf in _leaves(exc) if isinstance(leaf, MCPError)), None)
        refused_version = mcp_error is not None and mcp_error.code == types.UNSUPPORTED_PROTOCOL_VERSION
        if not refused_version and exchange.statuses.get("tools/call") != 400:
            return False
        self._versions.pop(target.url, None)
        return refused_version and target.deduplicates

    def _call_failure(
        self, target: TargetEndpoint, remote_name: str, key: str, exc: Exception, exchange: _Exchange
    ) -> ExecutionError:
        status = exchange.statuses.get("tools/call")
        leaves = _leaves(exc)
        if isinstance(exc, EgressRefused) or any(isinstance(leaf, EgressRefused) for leaf in leaves):
            return _error(ErrorClass.VALIDATION, "EGRESS_REFUSED", _first_message(leaves, EgressRefused))
        if exchange.budget.exceeded and exchange.tracker.sent:
            return _too_large_answer(target, remote_name, key, exchange.budget)
        if not exchange.tracker.sent:
            # Nothing of the call was written: whatever went wrong, the target never saw it.
            if isinstance(exc, TimeoutError):
                return _error(
                    ErrorClass.TIMEOUT, "TARGET_TIMEOUT", f"{target.name} could not be reached in time"
                )
            return _error(ErrorClass.DOWNSTREAM, "TARGET_UNAVAILABLE", f"{target.name} could not be reached")
        if status is not None and status >= 400 and status not in (500, 502, 504):
            if status == 401:
                self._tokens.forget(target.name)
            return _error(
                classify(http_status=status), f"TARGET_HTTP_{status}", f"{target.name} answered HTTP {status}"
            )
        mcp_error = next((leaf for leaf in leaves if isinstance(leaf, MCPError)), None)
        if mcp_error is not None and mcp_error.code in _REFUSED_CODES and (status is None or status < 400):
            return _error(ErrorClass.VALIDATION, "TARGET_REFUSED_CALL", str(mcp_error)[:300])
        what = _lost_answer(exc, leaves, status)
        if target.deduplicates:
            # Sent, answer lost; the target deduplicates on the key, so the retry is safe.
            error_class = ErrorClass.TIMEOUT if "time" in what else ErrorClass.DOWNSTREAM
            return _error(
                error_class,
                "TARGET_ANSWER_LOST",
                f"the call to {target.name}.{remote_name} was sent and {what}",
            )
        return _error(
            ErrorClass.UNKNOWN,
            UNKNOWN_OUTCOME,
            f"the call to {target.name}.{remote_name} was sent and {what}; {target.name} does not "
            f"deduplicate, so it is not retried: check {target.name} for idempotency key {key}",
        )

    # --- the session ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _session(
        self, target: TargetEndpoint, timeout: float, exchange: _Exchange, *, version: str | None = None
    ) -> AsyncIterator[Client]:
        async with AsyncExitStack() as stack:
            yield await self._open(target, timeout, exchange, stack, version)

    async def _open(
        self,
        target: TargetEndpoint,
        timeout: float,
        exchange: _Exchange,
        stack: AsyncExitStack,
        version: str | None,
    ) -> Client:
        """An MCP session with the target, closed with ``stack``: adopting ``version`` without a
        request, or probed (the version learned is remembered; with a cached OAuth token it is
        probed even with a ``version``). A 401 while it opens, with a cached OAuth token, is
        answered with one fresh token (the request was refused)."""
        for attempt in range(2):
            headers, fresh = await auth_headers(
                target.name,
                target.auth,
                target.secret,
                self._tokens,
                allow=self._allow,
                resolver=self._resolver,
                timeout=timeout,
            )
            exchange.statuses.clear()
            # A cached OAuth token (not ``fresh``) is tried by the probe, whose 401 is answered with
            # a fresh token (below) before anything is called: with such a token the exchange probes.
            pinned = version if fresh else None
            opening = AsyncExitStack()
            try:
                http = await opening.enter_async_context(
                    pinned_client(
                        self._allow,
                        self._resolver,
                        timeout=timeout,
                        headers=headers,
                        tracker=exchange.tracker,
                        event_hooks={"response": [_status_recorder(exchange)]},
                        budget=exchange.budget,
                    )
                )
                # terminate_on_close: a stateful target's session ends with an HTTP DELETE
                # when the exchange does (a target that keeps none has no session id: no DELETE).
                client = await opening.enter_async_context(
                    Client(
                        streamable_http_client(target.url, http_client=http, terminate_on_close=True),
                        cache=None,
                        read_timeout_seconds=timeout,
                        mode=pinned or "auto",
                    )
                )
            except Exception:
                await opening.aclose()
                if attempt or fresh or 401 not in exchange.statuses.values():
                    raise
                self._tokens.forget(target.name)
                continue
            stack.push_async_exit(opening)
            if pinned is None:
                self._learn_version(target, client)
            return client
        raise AssertionError("unreachable")

    def _learn_version(self, target: TargetEndpoint, client: Client) -> None:
        """Remember the modern version a probe adopted; forget any for a target that answered
        with the ``initialize`` handshake instead (each of its exchanges keeps the handshake)."""
        learned = client.session.protocol_version
        if client.session.discover_result is not None and learned in MODERN_PROTOCOL_VERSIONS:
            self._versions[target.url] = learned
        else:
            self._versions.pop(target.url, None)


def _status_recorder(exchange: _Exchange) -> Any:
    async def record(response: httpx2.Response) -> None:
        try:
            method = json.loads(response.request.content).get("method")
        except (ValueError, AttributeError, httpx2.RequestNotRead):
            return
        if isinstance(method, str):
            exchange.statuses[method] = response.status_code

    return record


# --- answers ------------------------------------------------------------------------------------


def normalized_answer(
    result: types.CallToolResult, *, target: str, tool: str, idempotency_key: str
) -> types.CallToolResult:
    """A target's answer in the gateway's own shape.

    A failure becomes a tool error with the JSON text ``{error_code, error_class,
    error_message}`` (a class the target declared itself is kept; its code is namespaced and its
    message bounded: ``domain/errors.target_error``). A success becomes
    ``external_object_refs``: the ones the tool returned, each with ``system`` ``MCP:{target}``
    (an object lives in the system that answered, whatever it calls itself; an ``object_url``
    is kept only when it is http(s)), or, when it returned none, one ref to the call itself:
    ``{system: MCP:{target}, object_type: {tool}, object_id: <its "id" if it returned one, else
    the idempotency key>}``. A plain-text answer (its text is not a JSON object, whatever
    structured content came with it, such as the SDK's ``{"result": text}``) adds
    ``answer_excerpt``: the text's first ``PLAIN_ANSWER_EXCERPT_BYTES`` bytes, kept on the
    timeline since no ref holds what it said.
    """
    payload = call_payload(result)
    if result.is_error or (payload is not None and payload.get("success") is False):
        code, message, declared = target_error_details(result)
        error = target_error(code, message, declared_class=declared)
        return tool_failure(error.error_class, error.error_code, error.error_message)
    system = f"MCP:{target}"
    refs = _refs(payload, system)
    extra: dict[str, Any] = {}
    if not refs:
        object_id = _object_id(payload, idempotency_key)
        refs = [ExternalObjectRef(system=system, object_type=tool, object_id=object_id)]
        extra[REFS_NOTE_KEY] = _refs_note(result, payload, tool, by_id=object_id != idempotency_key)
    text = plain_text(result)
    if text is not None:
        extra[ANSWER_EXCERPT_KEY] = excerpt(text, PLAIN_ANSWER_EXCERPT_BYTES)
    return tool_success(refs, **extra)


def _refs_note(
    result: types.CallToolResult, payload: dict[str, Any] | None, tool: str, *, by_id: bool
) -> str:
    """Why the answer's refs are a ref to the call itself, in words an operator can act on."""
    found = (payload or {}).get("external_object_refs")
    if isinstance(found, list) and found:
        why = f"none of its {len(found)} external_object_refs had a usable object_type and object_id"
    elif "external_object_refs" in (payload or {}):
        why = "its external_object_refs was empty or not a list"
    elif plain_text(result) is not None:
        why = "the tool answered plain text, with no external_object_refs"
    elif payload is None:
        why = "the tool answered no JSON object, so no external_object_refs"
    else:
        why = "its JSON answer has no external_object_refs"
    named = "its id" if by_id else "the idempotency key"
    return (
        f"{why} (looked for in the structured content, in a JSON string inside it and in the JSON "
        f"text): recorded one ref to the call itself, object_type {tool!r} and {named} as object_id"
    )


def _refs(payload: dict[str, Any] | None, system: str) -> list[ExternalObjectRef]:
    found = (payload or {}).get("external_object_refs")
    refs: list[ExternalObjectRef] = []
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, dict):
            continue
        object_type, object_id, url = item.get("object_type"), item.get("object_id"), item.get("object_url")
        if (
            not isinstance(object_type, str)
            or not isinstance(object_id, str | int)
            or isinstance(object_id, bool)
        ):
            continue
        if not object_type.strip() or not str(object_id).strip():
            continue
        keep_url = (
            isinstance(url, str) and url.lower().startswith(("https://", "http://")) and len(url) <= 2048
        )
        refs.append(
            ExternalObjectRef(
                system=system,
                object_type=object_type[:256],
                object_id=str(object_id)[:256],
                object_url=url if keep_url else None,
            )
        )
    return refs[:50]


def _object_id(payload: dict[str, Any] | None, idempotency_key: str) -> str:
    candidate = (payload or {}).get("id")
    if isinstance(candidate, str | int) and not isinstance(candidate, bool) and str(candidate).strip():
        return str(candidate)[:256]
    return idempotency_key


def _specs(target: str, listed: list[types.Tool]) -> Discovery:
    tools: list[RemoteToolSpec] = []
    skipped: list[str] = []
    unnamed = 0  # skipped tools past MAX_SKIPPED_TOOLS: counted, not named
    seen: set[str] = set()

    def skip(label: str, reason: str) -> None:
        nonlocal unnamed
        if len(skipped) < MAX_SKIPPED_TOOLS:
            skipped.append(f"{label} ({reason})")
        else:
            unnamed += 1

    for tool in listed:
        label = printable(tool.name, 100)
        if len(tools) >= MAX_TOOLS_PER_TARGET:
            skip(label, f"more than {MAX_TOOLS_PER_TARGET} tools")
            continue
        if not REMOTE_TOOL_NAME.match(tool.name):
            skip(label, "name not usable")
            continue
        if tool.name in seen:
            skip(label, "listed twice")
            continue
        schema = dict(tool.input_schema)
        if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
            skip(label, "input schema too large")
            continue
        refused = schema_refusal(schema)
        if refused is not None:
            skip(label, refused)
            continue
        if schema.get("type", "object") != "object":
            skip(label, "input schema is not an object")
            continue
        seen.add(tool.name)
        description = (tool.description or "").strip()[:MAX_DESCRIPTION] or None
        tools.append(
            RemoteToolSpec(
                name=gateway_tool_name(target, tool.name),
                remote_name=tool.name,
                description=description,
                input_schema=schema,
            )
        )
    if unnamed:
        skipped.append(f"... and {unnamed} more tool(s) skipped")
    return Discovery(tools=tools, skipped=skipped)


# --- failures -----------------------------------------------------------------------------------


def _error(error_class: ErrorClass, code: str, message: str) -> ExecutionError:
    return ExecutionError(error_class=error_class, error_code=code, error_message=message)


def _failure(error: ExecutionError) -> types.CallToolResult:
    return tool_failure(error.error_class, error.error_code, error.error_message)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    found = [exc]
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, EgressRefused):
        found.append(cause)
    return found


def _first_message(leaves: list[BaseException], kind: type[BaseException]) -> str:
    return next((str(leaf) for leaf in leaves if isinstance(leaf, kind)), "the destination is not allowed")[
        :300
    ]


def _too_large_answer(
    target: TargetEndpoint, remote_name: str, key: str, budget: ResponseBudget
) -> ExecutionError:
    """The call reached the target, whose answer was too large to read: it may have written."""
    what = (
        f"its answer was {budget.exceeded} (FULFILL_GATEWAY_MAX_RESPONSE_BYTES is {budget.limit}), not read"
    )
    if target.deduplicates:
        return _error(
            ErrorClass.UNKNOWN,
            TOO_LARGE,
            f"the call to {target.name}.{remote_name} was sent and {what}; it may have written: "
            f"{target.name} deduplicates on idempotency key {key}, so a rerun writes nothing twice",
        )
    return _error(
        ErrorClass.UNKNOWN,
        UNKNOWN_OUTCOME,
        f"the call to {target.name}.{remote_name} was sent and {what}; {target.name} does not "
        f"deduplicate, so it is not retried: check {target.name} for idempotency key {key}",
    )


def _setup_failure(target: TargetEndpoint, exc: BaseException, exchange: _Exchange) -> ExecutionError:
    """A failure before any tool was called (opening the session, listing): nothing was done."""
    leaves = _leaves(exc)
    if exchange.budget.exceeded or any(isinstance(leaf, AnswerTooLarge) for leaf in leaves):
        return _error(
            ErrorClass.VALIDATION,
            TOO_LARGE,
            f"{target.name} answered {exchange.budget.exceeded or 'too much'}; the gateway reads at "
            f"most {exchange.budget.limit} bytes of a target's answers, uncompressed "
            "(FULFILL_GATEWAY_MAX_RESPONSE_BYTES)",
        )
    if any(isinstance(leaf, EgressRefused) for leaf in leaves):
        return _error(ErrorClass.VALIDATION, "EGRESS_REFUSED", _first_message(leaves, EgressRefused))
    failed = next((status for status in exchange.statuses.values() if status >= 400), None)
    if failed is not None:
        return _error(
            classify(http_status=failed), f"TARGET_HTTP_{failed}", f"{target.name} answered HTTP {failed}"
        )
    if any(isinstance(leaf, httpx2.TimeoutException | TimeoutError) for leaf in leaves):
        return _error(ErrorClass.TIMEOUT, "TARGET_TIMEOUT", f"{target.name} did not answer in time")
    if any(isinstance(leaf, httpx2.TransportError | OSError) for leaf in leaves):
        return _error(ErrorClass.DOWNSTREAM, "TARGET_UNAVAILABLE", f"{target.name} could not be reached")
    mcp_error = next((leaf for leaf in leaves if isinstance(leaf, MCPError)), None)
    if mcp_error is not None:
        message = f"{target.name} answered with an MCP error: {str(mcp_error)[:200]}"
        return _error(ErrorClass.DOWNSTREAM, "TARGET_PROTOCOL_ERROR", message)
    if any(isinstance(leaf, ValidationError) for leaf in leaves):
        return _error(
            ErrorClass.DOWNSTREAM,
            "TARGET_PROTOCOL_ERROR",
            f"{target.name} answered something that is not MCP",
        )
    log.warning("target %s failed unexpectedly: %s", target.name, describe_failure(exc))
    return _error(
        ErrorClass.DOWNSTREAM, "TARGET_ERROR", f"the exchange with {target.name} failed unexpectedly"
    )


def _lost_answer(exc: BaseException, leaves: list[BaseException], status: int | None) -> str:
    if isinstance(exc, TimeoutError) or any(
        isinstance(leaf, httpx2.TimeoutException | TimeoutError) for leaf in leaves
    ):
        return "its answer did not arrive in time"
    if status is not None and status >= 500:
        return f"answered HTTP {status}"
    if any(isinstance(leaf, ValidationError) for leaf in leaves):
        return "its answer could not be read"
    if any(isinstance(leaf, httpx2.TransportError | OSError) for leaf in leaves):
        return "the connection was lost before its answer"
    mcp_error = next((leaf for leaf in leaves if isinstance(leaf, MCPError)), None)
    if mcp_error is not None and mcp_error.code == types.PARSE_ERROR:
        return "its answer was not valid JSON-RPC"
    if mcp_error is not None and "content type" in str(mcp_error).lower():
        return "its answer was not JSON (an unexpected content type)"
    return "its answer was lost"
