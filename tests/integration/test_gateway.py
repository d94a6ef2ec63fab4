"""The MCP gateway at /mcp, called over real Streamable HTTP with the MCP SDK's client."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from fulfill.tokens import mint_token
from tests.support.harness import Harness

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _client(harness: Harness, tenant: str = "t1", scopes: list[str] | None = None) -> Client:
    token = mint_token(harness.settings, tenant_id=tenant, scopes=scopes or ["gateway:invoke"])
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return Client(streamable_http_client(f"{harness.url}/mcp", http_client=http))


def _task_args(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": "from a test",
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai_gw",
        "idempotency_key": key,
        **extra,
    }


def test_tools_are_listed_with_input_and_output_schemas(shared: Harness) -> None:
    async def listed() -> dict[str, Any]:
        async with _client(shared) as client:
            return {tool.name: tool for tool in (await client.list_tools()).tools}

    tools = run(listed())
    assert set(tools) == {
        "internal.create_task",
        "internal.create_note",
        "internal.delete_task",
        "internal.delete_note",
    }
    create = tools["internal.create_task"]
    assert set(create.input_schema["required"]) == {
        "title",
        "tenant_id",
        "account_id",
        "action_intent_id",
        "idempotency_key",
    }
    assert "external_object_refs" in create.output_schema["properties"]


def test_calls_need_a_token_with_the_gateway_scope(shared: Harness) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    assert httpx.post(f"{shared.url}/mcp", json=body, headers=headers).status_code == 401
    wrong = mint_token(shared.settings, tenant_id="t1", scopes=["executions:read"])
    response = httpx.post(
        f"{shared.url}/mcp", json=body, headers={**headers, "Authorization": f"Bearer {wrong}"}
    )
    assert response.status_code == 403


def test_create_is_idempotent_and_concurrent_repeats_write_once(shared: Harness) -> None:
    key = secrets.token_hex(32)

    async def create() -> Any:
        async with _client(shared) as client:
            return await client.call_tool("internal.create_task", _task_args(key))

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: run(create()), range(10)))
    refs = {result.structured_content["external_object_refs"][0]["object_id"] for result in results}
    assert all(not result.is_error for result in results)
    assert refs == {f"task_{key[:24]}"}
    assert shared.task_rows("ai_gw") == 1


def test_business_and_guard_failures_are_structured(shared: Harness) -> None:
    async def calls() -> list[Any]:
        async with _client(shared) as client:
            return [
                await client.call_tool("internal.create_task", _task_args(secrets.token_hex(32), title=" ")),
                await client.call_tool("internal.nothing", {}),
                await client.call_tool("internal.create_task", {"title": 5, "tenant_id": "t1"}),
                await client.call_tool(
                    "internal.create_task", _task_args(secrets.token_hex(32), tenant_id="t2")
                ),
            ]

    empty_title, unknown, invalid, foreign = (result.structured_content for result in run(calls()))
    assert (empty_title["error_class"], empty_title["error_code"]) == ("VALIDATION", "VALIDATION_FAILED")
    assert (unknown["error_class"], unknown["error_code"]) == ("VALIDATION", "TOOL_NOT_FOUND")
    assert (invalid["error_class"], invalid["error_code"]) == ("VALIDATION", "INVALID_TOOL_ARGUMENTS")
    assert "title: must be of type string" in invalid["error_message"]
    assert "missing required argument(s)" in invalid["error_message"]
    assert (foreign["error_class"], foreign["error_code"]) == ("AUTH", "TENANT_MISMATCH")


def test_compensation_deletes_once_and_a_repeat_create_restores(shared: Harness) -> None:
    key = secrets.token_hex(32)

    async def scenario() -> list[Any]:
        async with _client(shared) as client:
            note = {
                "content": "n",
                "tenant_id": "t1",
                "account_id": "acc-1",
                "action_intent_id": "ai_gw_note",
                "idempotency_key": key,
            }
            created = await client.call_tool("internal.create_note", note)
            note_id = created.structured_content["external_object_refs"][0]["object_id"]
            args = {
                "object_id": note_id,
                "tenant_id": "t1",
                "account_id": "acc-1",
                "action_intent_id": "ai_gw_note",
                "idempotency_key": key,
            }
            first = await client.call_tool("internal.delete_note", args)
            second = await client.call_tool("internal.delete_note", args)
            restored = await client.call_tool("internal.create_note", note)
            return [created, first, second, restored]

    created, first, second, restored = run(scenario())
    assert first.structured_content["deleted"] is True
    assert second.structured_content["deleted"] is False  # deleting twice is safe
    assert restored.structured_content == created.structured_content
    from sqlalchemy import select

    from fulfill.store.tables import internal_notes

    with shared.db.read() as conn:
        [row] = conn.execute(
            select(internal_notes).where(internal_notes.c.action_intent_id == "ai_gw_note")
        ).all()
    assert row.deleted_at is None
