"""The Tasks extension (``io.modelcontextprotocol/tasks``, 2026-07-28) as a client declares it
through the MCP SDK's client-extension API, for the tests of ``/agent/mcp``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import anyio
import httpx2
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, Request, RequestParams, Result
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
