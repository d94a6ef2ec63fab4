"""``/agent/mcp``: the MCP server (Streamable HTTP) agents act through.

Callers authenticate with the same JWTs as the HTTP API (the engine's own service tokens are
not for this door). ``tools/list`` answers, for the caller's scopes, one tool per action type of
the registry (read on every listing) plus the fixed tools; ``tools/call`` of an action tool
proposes an intent (:mod:`fulfill.usecases.agent`) and never executes anything by itself.

A client that declared the Tasks extension (``io.modelcontextprotocol/tasks``) on a 2026-07-28
request gets ``resultType: "task"`` once the intent is committed, and follows it with
``tasks/get`` / ``tasks/cancel``. A 2025-11-25 client gets the same through that revision's
in-core task shape: action tools say ``execution.taskSupport: "optional"``, a call carrying the
``task`` parameter answers a ``CreateTaskResult`` once the intent is committed, and ``tasks/get``,
``tasks/result`` and ``tasks/cancel`` answer from the store. Any other client waits up to
``FULFILL_AGENT_WAIT_SECONDS`` for the outcome, then is told the action awaits approval and how
to follow it.

The SDK carries the 2025-11-25 task types but serves none of its methods, so this module answers
them itself: the door is a server middleware that short-circuits ``tools/call`` (the runner trusts
a short-circuited result as it is), and the ``tasks/*`` methods are bound as extension methods,
which the runner admits at every revision and never sieves.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    ListToolsResult,
    RequestParams,
    TextContent,
    ToolAnnotations,
    ToolExecution,
)
from mcp_types import Tool as MCPTool
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, ValidationError
from starlette.types import ASGIApp

import fulfill.mcp_logging  # noqa: F401  (before any MCP server is built)
from fulfill import __version__
from fulfill.config import SERVICE_TOKEN_ISSUER, Settings
from fulfill.domain.agent_tasks import (
    ACTION_TYPE_META,
    POLL_INTERVAL_MS,
    RISK_CLASS_META,
    TASKS_EXTENSION,
    IdempotencyKeyError,
    checked_idempotency_key,
    tool_name_of,
)
from fulfill.domain.models import RegistryEntry
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal, TokenError, TokenVerifier
from fulfill.usecases import agent, intents, resolutions
from fulfill.usecases.agent import TaskState, UnknownTask
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Forbidden, UseCaseError
from fulfill.usecases.resolutions import ResolveRequest

log = logging.getLogger(__name__)
T = TypeVar("T")

GET_ACTION_STATUS = "get_action_status"
CANCEL_ACTION = "cancel_action"
LIST_PENDING = "list_pending_approvals"
APPROVE_ACTION = "approve_action"
RESOLVE_ACTION = "resolve_action"
REJECT_ACTION = "reject_action"
SYNC_POLL_SECONDS = 0.25
LEGACY_TASK_VERSIONS = ("2025-11-25",)
"""The handshake-era revision with tasks in the core protocol."""

_INTENT_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[A-Za-z0-9_.:@-]+$"}
_COMMENT_SCHEMA = {"type": "string", "maxLength": intents.MAX_COMMENT_LENGTH}
_KEY_ADVICE = (
    "To make a retried call safe, send a key of 16 to 128 printable characters in the request's "
    '_meta: {"io.fulfill/idempotency-key": "<key>"}; the same key with the same arguments returns '
    "the same task and never a second proposal (the same key with other arguments is an error). "
    "Without a key, every call is a new proposal."
)


class AgentTokenVerifier:
    """The MCP SDK's token check for ``/agent/mcp``: a user or agent JWT, as the HTTP API takes;
    the engine's service tokens are refused (``None``: 401)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = await principal_of(self._verifier, token)
        if principal is None:
            return None
        expires = principal.claims.get("exp")
        return AccessToken(
            token=token,
            client_id=principal.subject,
            scopes=sorted(principal.scopes),
            subject=principal.subject,
            expires_at=int(expires) if isinstance(expires, int | float) else None,
            claims={**principal.claims, "tenant_id": principal.tenant_id},
        )


async def principal_of(verifier: TokenVerifier, token: str) -> Principal | None:
    try:
        if jwt.decode(token, options={"verify_signature": False}).get("iss") == SERVICE_TOKEN_ISSUER:
            return None
    except jwt.PyJWTError:
        return None
    try:
        # In a worker thread: a JWKS deployment may fetch the signing keys.
        return await anyio.to_thread.run_sync(verifier.verify, token)
    except TokenError:
        return None


LEGACY_TASK_CAPABILITY: dict[str, Any] = {"cancel": {}, "requests": {"tools": {"call": {}}}}
"""``capabilities.tasks`` of a 2025-11-25 ``initialize``: task-augmented ``tools/call`` and
``tasks/cancel``; no ``tasks/list`` (a task is its caller's, never listed)."""
RELATED_TASK_META = "io.modelcontextprotocol/related-task"


def core_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """A request of the revision with tasks in the core protocol (2025-11-25)."""
    return ctx.protocol_version in LEGACY_TASK_VERSIONS


class TaskParams(RequestParams):
    model_config = ConfigDict(extra="allow")

    task_id: str


class AgentTasks(Extension):
    """The Tasks extension's methods, answered from the store (no task lives in memory)."""

    identifier = TASKS_EXTENSION

    def __init__(self, door: AgentDoor) -> None:
        self._door = door

    def methods(self) -> list[MethodBinding]:
        legacy = frozenset(LEGACY_TASK_VERSIONS)
        return [
            MethodBinding(method="tasks/get", params_type=TaskParams, handler=self._get),
            MethodBinding(method="tasks/cancel", params_type=TaskParams, handler=self._cancel),
            # 2025-11-25 only: the 2026-07-28 extension inlines the result in tasks/get.
            MethodBinding(
                method="tasks/result", params_type=TaskParams, handler=self._result, protocol_versions=legacy
            ),
        ]

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        principal = await self._door.principal()
        state = await self._door.task_call(agent.task_state, principal, params.task_id)
        if core_tasks(ctx):
            return legacy_task(state)
        return task_snapshot(state, detailed=True)

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        principal = await self._door.principal()
        if core_tasks(ctx):
            # 2025-11-25: cancelling a task already over is an invalid request, not a no-op.
            state = await self._door.task_call(agent.task_state, principal, params.task_id)
            if state.outcome.terminal:
                raise MCPError(
                    code=INVALID_PARAMS, message=f"cannot cancel a task already {state.outcome.status}"
                )
            state = await self._door.task_call(agent.cancel_task, principal, params.task_id)
            return legacy_task(state)
        await self._door.task_call(agent.cancel_task, principal, params.task_id)
        return {}

    async def _result(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        """2025-11-25 ``tasks/result``: the tool result, once the task is over. The revision has
        the receiver hold the answer until then; the store is polled, nothing is kept in memory."""
        principal = await self._door.principal()
        state = await self._door.task_call(agent.task_state, principal, params.task_id)
        # A held request may wait as long as the intent lives: it reads the store at the interval
        # the task itself advertises, not at the synchronous path's short one.
        while not state.outcome.terminal:
            await anyio.sleep(POLL_INTERVAL_MS / 1000)
            state = await self._door.task_call(agent.task_state, principal, params.task_id)
        result = outcome_result(state).model_dump(by_alias=True, mode="json", exclude_none=True)
        result["_meta"] = {**result.get("_meta", {}), RELATED_TASK_META: {"taskId": state.task_id}}
        return result


class AgentDoor:
    """Middleware that serves ``tools/list`` and ``tools/call`` of the agent's server itself."""

    def __init__(
        self, rt: UseCaseContext, verifier: TokenVerifier, settings: Settings, stopping: threading.Event
    ) -> None:
        self._rt = rt
        self._verifier = verifier
        self._settings = settings
        self._stopping = stopping

    async def principal(self) -> Principal:
        token = get_access_token()
        principal = await principal_of(self._verifier, token.token) if token is not None else None
        if principal is None:  # the SDK's bearer check let no such request through
            raise MCPError(code=INVALID_PARAMS, message="a user or agent token is required")
        return principal

    async def _use(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: fn(self._rt, *args))

    async def task_call(self, fn: Callable[..., TaskState], principal: Principal, task_id: str) -> TaskState:
        try:
            return await self._use(fn, principal, task_id)
        except UnknownTask:
            # The same error for an id that never existed and for another caller's task.
            raise MCPError(code=INVALID_PARAMS, message="unknown task") from None
        except UseCaseError as exc:
            raise MCPError(code=INVALID_PARAMS, message=exc.message) from None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "initialize":
            return _with_task_capability(await call_next(ctx))
        if ctx.method == "tools/list":
            principal = await self.principal()
            return ListToolsResult(tools=await self._tools(principal, legacy=core_tasks(ctx)))
        if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
            principal = await self.principal()
            return await self._call(ctx, principal, ctx.params)
        return await call_next(ctx)

    # --- tools/list ----------------------------------------------------------------------

    async def _tools(self, principal: Principal, *, legacy: bool) -> list[MCPTool]:
        tools: list[MCPTool] = []
        if principal.has_scope(Scope.INTENTS_WRITE):
            entries = await self._use(agent.proposable_entries)
            tools += [
                action_tool(entry, self._rt.tool_schemas.get(entry.tool_name, {}), legacy=legacy)
                for entry in entries
            ]
        if principal.has_scope(Scope.INTENTS_READ) or principal.has_scope(Scope.EXECUTIONS_READ):
            tools.append(
                _fixed(
                    GET_ACTION_STATUS,
                    "The execution status of an action intent (the status DTO, with the refs of what "
                    "it wrote once it SUCCEEDED).",
                    {"action_intent_id": _INTENT_ID_SCHEMA},
                    read_only=True,
                )
            )
        if principal.has_scope(Scope.INTENTS_WRITE) or principal.has_scope(Scope.INTENTS_APPROVE):
            tools.append(
                _fixed(
                    CANCEL_ACTION,
                    "Cancel an action intent you proposed: before approval it never runs; after, it "
                    "stops, and what it wrote is compensated where the registry says so.",
                    {"action_intent_id": _INTENT_ID_SCHEMA, "reason": _COMMENT_SCHEMA},
                )
            )
        if principal.has_scope(Scope.INTENTS_APPROVE):
            tools += [
                _fixed(
                    LIST_PENDING,
                    "The action intents of your tenant that wait for approval, newest first.",
                    {},
                    read_only=True,
                ),
                _fixed(
                    APPROVE_ACTION,
                    "Approve an action intent (a person's decision: agent tokens and the intent's "
                    "proposer are refused; one that needs several approvers stays pending until "
                    "enough distinct people approved).",
                    {"action_intent_id": _INTENT_ID_SCHEMA, "comment": _COMMENT_SCHEMA},
                ),
                _fixed(
                    REJECT_ACTION,
                    "Reject an action intent (a person's decision: agent tokens are refused).",
                    {"action_intent_id": _INTENT_ID_SCHEMA, "comment": _COMMENT_SCHEMA},
                ),
            ]
        if principal.has_scope(Scope.ADMIN) and not principal.is_agent:
            # An operator's tool: a person checked the target; an agent's token never resolves.
            tools.append(
                _fixed(
                    RESOLVE_ACTION,
                    "Resolve an AMBIGUOUS execution of your tenant (its call may have written at a "
                    "target that does not deduplicate, and its answer was lost), after checking the "
                    "target: committed (with the external_object_refs found: SUCCEEDED), "
                    "not_committed (the call is sent once more under the same idempotency key) or "
                    "abandon (with a reason: FAILED).",
                    {
                        "action_intent_id": _INTENT_ID_SCHEMA,
                        "resolution": {"type": "string", "enum": ["committed", "not_committed", "abandon"]},
                        "external_object_refs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "system": {"type": "string"},
                                    "object_type": {"type": "string"},
                                    "object_id": {"type": "string"},
                                    "object_url": {"type": "string"},
                                },
                                "required": ["system", "object_type", "object_id"],
                            },
                        },
                        "reason": _COMMENT_SCHEMA,
                    },
                )
            )
        return tools

    # --- tools/call ----------------------------------------------------------------------

    async def _call(
        self, ctx: ServerRequestContext[Any, Any], principal: Principal, params: Mapping[str, Any]
    ) -> HandlerResult:
        name = params.get("name")
        raw_arguments = params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(raw_arguments, Mapping):
            return tool_error("INVALID_TOOL_CALL", "the tool name must be a string and arguments an object")
        arguments = dict(raw_arguments)
        try:
            fixed = await self._fixed_call(principal, name, arguments)
            if fixed is not None:
                return fixed
            return await self._propose(ctx, principal, name, arguments)
        except UseCaseError as exc:
            return tool_error(exc.code or exc.kind.upper().replace("-", "_"), exc.message)

    async def _fixed_call(
        self, principal: Principal, name: str, arguments: dict[str, Any]
    ) -> CallToolResult | None:
        intent_id = arguments.get("action_intent_id")
        if name == LIST_PENDING:
            _require(principal, Scope.INTENTS_APPROVE)
            pending = await self._use(intents.list_pending_approval, principal)
            listed = [
                intent.model_dump(
                    mode="json",
                    include={
                        "action_intent_id",
                        "action_type",
                        "account_id",
                        "parameters",
                        "risk_class",
                        "created_at",
                        "expires_at",
                    },
                )
                for intent in pending
            ]
            return json_result({"pending": listed})
        if name == RESOLVE_ACTION:
            return await self._resolve(principal, arguments)
        if name not in (GET_ACTION_STATUS, CANCEL_ACTION, APPROVE_ACTION, REJECT_ACTION):
            return None
        if not isinstance(intent_id, str) or not intent_id:
            return tool_error("ACTION_INTENT_ID_REQUIRED", "action_intent_id is required")
        comment = arguments.get("comment")
        comment = comment if isinstance(comment, str) else None
        if name == GET_ACTION_STATUS:
            if not (principal.has_scope(Scope.INTENTS_READ) or principal.has_scope(Scope.EXECUTIONS_READ)):
                _require(principal, Scope.EXECUTIONS_READ)
            view = await self._use(agent.action_status, principal, intent_id)
            return json_result(view.model_dump(mode="json", exclude_none=True))
        if name == CANCEL_ACTION:
            if not principal.has_scope(Scope.INTENTS_APPROVE):
                _require(principal, Scope.INTENTS_WRITE)
            reason = arguments.get("reason")
            reason = reason if isinstance(reason, str) else None
            if reason is not None and len(reason) > intents.MAX_COMMENT_LENGTH:
                return tool_error(
                    "REASON_TOO_LONG", f"reason is longer than {intents.MAX_COMMENT_LENGTH} characters"
                )
            change = await self._use(agent.cancel_action, principal, intent_id, reason)
        elif name == APPROVE_ACTION:
            _require(principal, Scope.INTENTS_APPROVE)
            change = await self._use(agent.approve, principal, intent_id, comment)
        else:
            _require(principal, Scope.INTENTS_APPROVE)
            change = await self._use(agent.reject, principal, intent_id, comment)
        return json_result(change.model_dump(mode="json", exclude_none=True))

    async def _resolve(self, principal: Principal, arguments: dict[str, Any]) -> CallToolResult:
        _require(principal, Scope.ADMIN)
        intent_id = arguments.pop("action_intent_id", None)
        if not isinstance(intent_id, str) or not intent_id:
            return tool_error("ACTION_INTENT_ID_REQUIRED", "action_intent_id is required")
        try:
            body = ResolveRequest.model_validate(arguments)
        except ValidationError as exc:
            message = "; ".join(error["msg"] for error in exc.errors())
            return tool_error("INVALID_RESOLUTION", message)
        view = await self._use(resolutions.resolve_execution, principal, intent_id, body)
        return json_result(view.model_dump(mode="json", exclude_none=True))

    async def _propose(
        self, ctx: ServerRequestContext[Any, Any], principal: Principal, name: str, arguments: dict[str, Any]
    ) -> HandlerResult:
        _require(principal, Scope.INTENTS_WRITE)
        entry = await self._use(agent.proposable_entry, name)
        if entry is None:
            return tool_error("UNKNOWN_TOOL", f"unknown tool: {name[:128]}")
        try:
            key = checked_idempotency_key(ctx.meta)
        except IdempotencyKeyError as exc:
            return tool_error("INVALID_IDEMPOTENCY_KEY", str(exc))
        # Committed here, before any answer: a task id is never handed out for nothing.
        state, _created = await self._use(agent.propose, principal, entry, arguments, key)
        if _declared_tasks(ctx):
            return task_snapshot(state, detailed=False)
        if (
            core_tasks(ctx)
            and isinstance(ctx.params, Mapping)
            and isinstance(ctx.params.get("task"), Mapping)
        ):
            # 2025-11-25 task augmentation: the CreateTaskResult, after the commit above. The
            # task's ttl is the intent's, whatever the caller asked for.
            return {"task": legacy_task(state)}
        return await self._wait_for_outcome(principal, state)

    async def _wait_for_outcome(self, principal: Principal, state: TaskState) -> CallToolResult:
        """The outcome once terminal, else "awaiting" after ``agent_wait_seconds``, or at once when
        the process is stopping (the action is committed: the agent asks for it later)."""
        deadline = time.monotonic() + self._settings.agent_wait_seconds
        while not state.outcome.terminal and time.monotonic() < deadline and not self._stopping.is_set():
            await anyio.sleep(SYNC_POLL_SECONDS)
            state = await self._use(agent.task_state, principal, state.task_id)
        if state.outcome.terminal:
            return outcome_result(state)
        return awaiting_result(state)


def _with_task_capability(result: HandlerResult) -> HandlerResult:
    """A 2025-11-25 ``initialize`` answer says the server takes task-augmented ``tools/call``."""
    if not isinstance(result, dict):
        return result
    version = result.get("protocolVersion")
    capabilities = result.get("capabilities")
    if version in LEGACY_TASK_VERSIONS and isinstance(capabilities, dict):
        return {**result, "capabilities": {**capabilities, "tasks": LEGACY_TASK_CAPABILITY}}
    return result


def _declared_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """The client declared the Tasks extension on a 2026-07-28 request (a legacy wire cannot
    carry a task result)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    declared = capabilities.extensions if capabilities else None
    return bool(declared) and TASKS_EXTENSION in (declared or {})


def _require(principal: Principal, scope: str) -> None:
    if not principal.has_scope(scope):
        raise Forbidden(f"the token lacks the scope '{scope}'", code="MISSING_SCOPE")


def action_tool(entry: RegistryEntry, tool_schema: Mapping[str, Any], *, legacy: bool = False) -> MCPTool:
    """One action type as a tool: ``account_id`` plus the parameters its registry version maps,
    each described as the tool's own input schema describes the argument it becomes."""
    tool_properties = tool_schema.get("properties") if isinstance(tool_schema, Mapping) else None
    tool_properties = tool_properties if isinstance(tool_properties, Mapping) else {}
    tool_required = tool_schema.get("required") if isinstance(tool_schema, Mapping) else None
    tool_required = set(tool_required) if isinstance(tool_required, list) else set()
    properties: dict[str, Any] = {
        "account_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "The account the action is for.",
        }
    }
    required = ["account_id"]
    for parameter, rule in sorted(entry.parameter_mapping.items()):
        described = tool_properties.get(rule.tool_param)
        properties[parameter] = dict(described) if isinstance(described, Mapping) else {}
        if rule.required or rule.tool_param in tool_required:
            required.append(parameter)
    return MCPTool(
        name=tool_name_of(entry.action_type),
        description=(
            f"Propose the action {entry.action_type} (risk class {entry.risk_class.value}; tool "
            f"{entry.tool_name}, registry version {entry.registry_version}). A call never executes "
            "it by itself: it creates an action intent that a person approves, then fulfill "
            "executes it exactly once. With the Tasks extension the call returns a task to poll "
            "with tasks/get; without it, it waits a little for the outcome, else answers with the "
            f"action_intent_id to follow with {GET_ACTION_STATUS}. {_KEY_ADVICE}"
        ),
        input_schema={"type": "object", "properties": properties, "required": required},
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True, read_only_hint=False),
        # The 2025-11-25 tool field; the 2026-07-28 Tasks extension has no per-tool flag.
        execution=ToolExecution(task_support="optional") if legacy else None,
        _meta={ACTION_TYPE_META: entry.action_type, RISK_CLASS_META: entry.risk_class.value},
    )


def _fixed(name: str, description: str, properties: dict[str, Any], *, read_only: bool = False) -> MCPTool:
    required = ["action_intent_id"] if "action_intent_id" in properties else []
    return MCPTool(
        name=name,
        description=description,
        input_schema={"type": "object", "properties": properties, "required": required},
        annotations=ToolAnnotations(
            read_only_hint=read_only, destructive_hint=not read_only, idempotent_hint=True
        ),
    )


def json_result(value: Any, *, is_error: bool = False, lead: str | None = None) -> CallToolResult:
    content = [TextContent(type="text", text=json.dumps(value, sort_keys=True))]
    if lead:
        content.insert(0, TextContent(type="text", text=lead))
    return CallToolResult(content=list(content), structured_content=value, is_error=is_error)


def tool_error(code: str, message: str) -> CallToolResult:
    """A tool error a person (or a model) can read: the sentence first, then the code."""
    return CallToolResult(
        content=[
            TextContent(type="text", text=message),
            TextContent(type="text", text=json.dumps({"error_code": code, "error_message": message})),
        ],
        structured_content={"error_code": code, "error_message": message},
        is_error=True,
    )


def outcome_result(state: TaskState) -> CallToolResult:
    """A finished task's tool result: the status DTO, as structured content and as JSON text."""
    view = state.view.model_dump(mode="json", exclude_none=True)
    lead = None if not state.outcome.is_error else f"{state.task_id}: {state.outcome.message}"
    return json_result(view, is_error=state.outcome.is_error, lead=lead)


def awaiting_result(state: TaskState) -> CallToolResult:
    """Not finished within the wait: a normal result that says what to do next."""
    value = {
        "action_intent_id": state.task_id,
        "status": state.view.status.value,
        "approval_status": state.intent.approval_status.value,
        "waiting_for": state.outcome.message,
        "next": f'call {GET_ACTION_STATUS} with {{"action_intent_id": "{state.task_id}"}} later',
    }
    lead = (
        f"The action was proposed and is {state.outcome.message} (action_intent_id "
        f"{state.task_id}). Call {GET_ACTION_STATUS} with this action_intent_id later for its result."
    )
    return json_result(value, lead=lead)


def legacy_task(state: TaskState) -> dict[str, Any]:
    """The task in the 2025-11-25 core shape (``Task``: ``ttl`` and ``pollInterval`` in ms)."""
    outcome = state.outcome
    return {
        "taskId": state.task_id,
        "status": outcome.status,
        "statusMessage": outcome.message,
        "createdAt": state.intent.created_at,
        "lastUpdatedAt": state.intent.updated_at,
        "ttl": state.ttl_ms,
        "pollInterval": POLL_INTERVAL_MS,
    }


def task_snapshot(state: TaskState, *, detailed: bool) -> dict[str, Any]:
    """The task as the Tasks extension shapes it: a ``CreateTaskResult`` (``resultType: task``)
    right after the call, the detailed task (with its tool result once completed) for tasks/get."""
    outcome = state.outcome
    snapshot: dict[str, Any] = {
        "taskId": state.task_id,
        "status": outcome.status,
        "statusMessage": outcome.message,
        "createdAt": state.intent.created_at,
        "lastUpdatedAt": state.intent.updated_at,
        "ttlMs": state.ttl_ms,
        "pollIntervalMs": POLL_INTERVAL_MS,
    }
    if not detailed:
        return {"resultType": "task", **snapshot}
    if outcome.status == "completed":
        snapshot["result"] = outcome_result(state).model_dump(by_alias=True, mode="json", exclude_none=True)
    return snapshot


def build_agent_server(
    rt: UseCaseContext, verifier: TokenVerifier, settings: Settings, *, stopping: threading.Event
) -> MCPServer:
    """``stopping``: set when the process stops; a call waiting for its outcome then answers."""
    door = AgentDoor(rt, verifier, settings, stopping)
    server = MCPServer(
        "fulfill-agent",
        version=__version__,
        instructions=(
            "Propose actions for a person to approve; fulfill executes each approved action exactly "
            "once. A tool call returns a task (Tasks extension) or waits briefly for the outcome."
        ),
        token_verifier=AgentTokenVerifier(verifier),
        auth=AuthSettings(
            issuer_url=settings.effective_gateway_url, resource_server_url=None, required_scopes=[]
        ),
        log_level="WARNING",
        extensions=[AgentTasks(door)],
        middleware=[door],
    )
    return server


def agent_asgi_app(server: MCPServer) -> ASGIApp:
    """The ASGI app serving ``/agent/mcp``; its session manager runs in the host app's lifespan.

    Stateless Streamable HTTP with JSON responses, as ``/mcp``: any worker answers any call, and
    nothing about a task is kept in memory (it is its intent in the store)."""
    return server.streamable_http_app(
        streamable_http_path="/agent/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
