"""The Tasks extension (``io.modelcontextprotocol/tasks``, 2026-07-28) as a client declares it
through the MCP SDK's client-extension API, and the 2025-11-25 in-core tasks as the SDK's types
describe them, for the tests of ``/agent/mcp``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import anyio
import httpx2
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp_types import (
    CallToolRequest,
    CallToolRequestParams,
    CallToolResult,
    CancelTaskRequest,
    CancelTaskRequestParams,
    CancelTaskResult,
    CreateTaskResult,
    GetTaskPayloadRequest,
    GetTaskPayloadRequestParams,
    GetTaskRequest,
    GetTaskRequestParams,
    GetTaskResult,
    Request,
    RequestParams,
    Result,
    TaskMetadata,
)
from pydantic import ConfigDict

TASKS = "io.modelcontextprotocol/tasks"
KEY_META = "io.fulfill/idempotency-key"


class TaskHandle(Result):
    """A ``CreateTaskResult``: what a task-augmented ``tools/call`` answers."""

    model_config = ConfigDict(extra="allow")

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str | None = None
    last_updated_at: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TaskSnapshot(Result):
    """A ``tasks/get`` answer: the task, and its tool result once completed."""

    model_config = ConfigDict(extra="allow")

    task_id: str
    status: str
    status_message: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None

    def tool_result(self) -> CallToolResult:
        assert self.result is not None, self
        return CallToolResult.model_validate(self.result, by_name=False)


class TaskIdParams(RequestParams):
    task_id: str


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param: ClassVar[str | None] = "taskId"


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param: ClassVar[str | None] = "taskId"


class Anything(Result):
    model_config = ConfigDict(extra="allow")


class TasksExtension(ClientExtension):
    """Declares the extension; ``Client.call_tool`` then polls ``tasks/get`` to the end."""

    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=self._resolve)]

    async def _resolve(self, handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
        while True:
            snapshot = await get_task(ctx.session, handle.task_id)
            if snapshot.status != "working":
                return snapshot.tool_result()
            await anyio.sleep(0.1)


async def get_task(session: Any, task_id: str) -> TaskSnapshot:
    result: TaskSnapshot = await session.send_request(
        GetTask(params=TaskIdParams(task_id=task_id)), TaskSnapshot
    )
    return result


async def cancel_task(session: Any, task_id: str) -> None:
    await session.send_request(CancelTask(params=TaskIdParams(task_id=task_id)), Anything)


def agent_client(url: str, token: str, *, tasks: bool = True, mode: str = "auto") -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(
        streamable_http_client(f"{url}/agent/mcp", http_client=http),
        extensions=[TasksExtension()] if tasks else None,
        mode=mode,
    )


async def call_tool_as_task(
    session: Any,
    name: str,
    arguments: dict[str, Any],
    *,
    ttl_ms: int = 60_000,
    meta: dict[str, Any] | None = None,
) -> CreateTaskResult:
    """A task-augmented ``tools/call`` of 2025-11-25 (the ``task`` parameter).

    The SDK's ``ClientSession.send_request`` checks every ``tools/call`` answer of that revision
    against its plain ``CallToolResult`` surface (``mcp/client/session.py``, ``send_request``;
    ``mcp_types/methods.py`` ``SERVER_RESULTS[("tools/call", "2025-11-25")]``), so the request is
    built and the answer parsed with the SDK's own 2025-11-25 task types, and sent through the
    session's dispatcher with the session's stamp, as the SDK's ``subscriptions`` module does."""
    request = CallToolRequest(
        params=CallToolRequestParams(
            name=name, arguments=arguments, task=TaskMetadata(ttl=ttl_ms), _meta=meta
        )
    )
    data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    opts: dict[str, Any] = {}
    session._stamp(data, opts)
    raw = await session._dispatcher.send_raw_request(data["method"], data.get("params"), opts)
    return CreateTaskResult.model_validate(raw, by_name=False)


async def get_core_task(session: Any, task_id: str) -> GetTaskResult:
    result: GetTaskResult = await session.send_request(
        GetTaskRequest(params=GetTaskRequestParams(task_id=task_id)), GetTaskResult
    )
    return result


async def core_task_result(session: Any, task_id: str) -> CallToolResult:
    result: CallToolResult = await session.send_request(
        GetTaskPayloadRequest(params=GetTaskPayloadRequestParams(task_id=task_id)), CallToolResult
    )
    return result


async def cancel_core_task(session: Any, task_id: str) -> CancelTaskResult:
    result: CancelTaskResult = await session.send_request(
        CancelTaskRequest(params=CancelTaskRequestParams(task_id=task_id)), CancelTaskResult
    )
    return result
