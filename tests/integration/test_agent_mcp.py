"""``/agent/mcp``, the agent's front door, called over real Streamable HTTP with the official MCP
Python SDK client, declaring the Tasks extension through the SDK's client-extension API, and on a
2025-11-25 connection through that revision's in-core tasks (the SDK's own task types).

A tool call proposes an intent and never executes by itself; the task it returns is read from
the store (a new process answers it too); a retried call with the same idempotency key finds the
same task; another caller's task is answered as unknown; agents never approve."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequest, CallToolRequestParams, CreateTaskResult, TaskMetadata
from pydantic import ValidationError

from fulfill.config import Settings
from fulfill.store.tables import action_intents
from fulfill.tokens import mint_token
from fulfill_tools.launch import free_port, kill, start_serve, stop_all
from tests.support import plain_http
from tests.support.agent_mcp import (
    KEY_META,
    TaskHandle,
    agent_client,
    call_tool_as_task,
    cancel_core_task,
    cancel_task,
    core_task_result,
    get_core_task,
    get_task,
)
from tests.support.console import Console
from tests.support.harness import ALL_SCOPES, TEST_SECRET, Harness, fresh_database_url, make_settings
from tests.support.http_doubles import wait_for

T = TypeVar("T")
TASK_ARGS = {"account_id": "acc-1", "title": "Call the customer back"}
AGENT_SCOPES = ["intents:write", "intents:read", "executions:read"]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    settings = make_settings(tmp_path_factory.mktemp("agent-door"), agent_wait_seconds=1.0)
    running = Harness(settings).start()
    yield running
    running.stop()


def agent_token(h: Harness, subject: str = "agent-7", tenant: str = "t1", **kwargs: Any) -> str:
    return h.token(tenant, AGENT_SCOPES, subject=subject, **kwargs)


def token_with(h: Harness, **claims: Any) -> str:
    """A user token with every scope and extra claims (``act``: RFC 8693's actor)."""
    now = int(time.time())
    payload = {
        "sub": "person",
        "tenant_id": "t1",
        "scope": " ".join(ALL_SCOPES),
        "iss": h.settings.jwt_issuer,
        "aud": h.settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(payload, h.settings.jwt_secret, algorithm="HS256")


def propose(h: Harness, token: str, arguments: dict[str, Any] | None = None, key: str | None = None) -> Any:
    async def call() -> Any:
        async with agent_client(h.url, token) as client:
            return await client.session.call_tool(
                "create_internal_task",
                arguments or TASK_ARGS,
                meta={KEY_META: key} if key else None,
                allow_claimed=True,
            )

    return run(call())


def read_task(h: Harness, token: str, task_id: str) -> Any:
    async def call() -> Any:
        async with agent_client(h.url, token) as client:
            return await get_task(client.session, task_id)

    return run(call())


def cancel(h: Harness, token: str, task_id: str) -> None:
    async def call() -> None:
        async with agent_client(h.url, token) as client:
            await cancel_task(client.session, task_id)

    run(call())


def call_tool(h: Harness, token: str, name: str, arguments: dict[str, Any], *, tasks: bool = True) -> Any:
    async def call() -> Any:
        async with agent_client(h.url, token, tasks=tasks) as client:
            return await client.call_tool(name, arguments)

    return run(call())


def unknown_task_error(h: Harness, token: str, task_id: str, *, cancelling: bool = False) -> tuple[int, str]:
    """The JSON-RPC error a ``tasks/get`` (or ``tasks/cancel``) of ``task_id`` answers."""

    async def call() -> tuple[int, str]:
        async with agent_client(h.url, token) as client:
            try:
                if cancelling:
                    await cancel_task(client.session, task_id)
                else:
                    await get_task(client.session, task_id)
            except MCPError as exc:
                return exc.error.code, exc.error.message
        raise AssertionError("the task was answered")

    return run(call())


def wait_completed(h: Harness, token: str, task_id: str) -> Any:
    def done() -> Any:
        snapshot = read_task(h, token, task_id)
        return snapshot if snapshot.status != "working" else None

    return wait_for(done, timeout=30)


def test_tools_are_listed_per_action_type_and_per_scope(door: Harness) -> None:
    async def listed(token: str) -> dict[str, Any]:
        async with agent_client(door.url, token) as client:
            return {tool.name: tool for tool in (await client.list_tools()).tools}

    tools = run(listed(agent_token(door)))
    task = tools["create_internal_task"]
    assert task.meta == {"io.fulfill/action-type": "CREATE_INTERNAL_TASK", "io.fulfill/risk-class": "MINIMAL"}
    assert task.input_schema["required"][0] == "account_id"
    assert "title" in task.input_schema["properties"]
    assert "title" in task.input_schema["required"]
    assert task.annotations is not None
    assert task.annotations.destructive_hint is True
    assert task.annotations.idempotent_hint is True
    assert "io.fulfill/idempotency-key" in (task.description or "")
    assert {"get_action_status", "cancel_action"} <= set(tools)
    assert not {"list_pending_approvals", "approve_action", "reject_action"} & set(tools)
    approver = run(listed(door.token("t1", ["intents:approve", "intents:read"], subject="person-1")))
    assert {"list_pending_approvals", "approve_action", "reject_action", "cancel_action"} <= set(approver)
    assert "create_internal_task" not in approver  # proposing needs intents:write


def test_the_registry_is_followed_without_a_restart(door: Harness) -> None:
    async def names() -> set[str]:
        async with agent_client(door.url, agent_token(door)) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    assert "create_follow_up_note" not in run(names())
    with door.client() as http:
        created = http.post(
            "/admin/registry",
            json={
                "action_type": "CREATE_FOLLOW_UP_NOTE",
                "tool_name": "internal.create_note",
                "risk_class": "LOW",
                "parameter_mapping": {"text": {"toolParam": "content", "required": True}},
            },
        )
        assert created.status_code in (200, 201), created.text
    assert "create_follow_up_note" in run(names())


def test_a_call_proposes_and_the_task_completes_with_refs_after_an_http_approval(door: Harness) -> None:
    token = agent_token(door)
    task = propose(door, token)
    assert isinstance(task, TaskHandle)
    assert task.status == "working"
    assert "approval" in (task.status_message or "")
    assert task.ttl_ms is not None
    assert task.ttl_ms > 0
    assert task.poll_interval_ms
    assert task.poll_interval_ms > 0
    with door.client() as http:
        intent = http.get(f"/intents/{task.task_id}").json()
        assert intent["approval_status"] == "PENDING_APPROVAL"  # proposed, never executed by itself
        assert intent["proposed_by"] == "agent-7"  # the token's subject
        assert intent["proposed_via"] == "mcp"  # it came in through the agent endpoint
        assert door.task_rows(task.task_id) == 0
        snapshot = read_task(door, token, task.task_id)
        assert snapshot.status == "working"
        assert "approval" in (snapshot.status_message or "")
        assert http.post(f"/intents/{task.task_id}/approve").status_code == 202
    done = wait_completed(door, token, task.task_id)
    assert done.status == "completed"
    result = done.tool_result()
    assert result.is_error is not True
    assert result.structured_content["status"] == "SUCCEEDED"
    assert result.structured_content["external_object_refs"][0]["system"] == "INTERNAL"
    assert door.task_rows(task.task_id) == 1


def test_a_console_approval_completes_the_task_and_the_console_shows_the_proposal(door: Harness) -> None:
    token = agent_token(door)
    task = propose(door, token, {"account_id": "acc-1", "title": "seen in the console"})
    browser = Console(door)
    try:
        browser.login(subject="alice")
        assert task.task_id in browser.get("/console/approvals").text
        approved = browser.post(f"/console/intents/{task.task_id}/approve", {"comment": "ok"})
        assert approved.status_code == 303
    finally:
        browser.close()
    done = wait_completed(door, token, task.task_id)
    assert done.status == "completed"
    assert done.tool_result().structured_content["external_object_refs"]


def test_the_sdk_client_follows_the_task_to_its_result(door: Harness) -> None:
    token = agent_token(door)
    person = door.token("t1", ["intents:approve", "intents:read"], subject="person-2")

    def approve_when_proposed() -> None:
        def pending() -> Any:
            rows = call_tool(door, person, "list_pending_approvals", {}).structured_content["pending"]
            return next((r for r in rows if r["parameters"].get("title") == "followed"), None)

        row = wait_for(pending, timeout=20)
        call_tool(door, person, "approve_action", {"action_intent_id": row["action_intent_id"]})

    approver = threading.Thread(target=approve_when_proposed)
    approver.start()
    result = call_tool(door, token, "create_internal_task", {"account_id": "acc-1", "title": "followed"})
    approver.join()
    assert result.is_error is not True
    assert result.structured_content["status"] == "SUCCEEDED"


def test_a_rejection_completes_the_task_with_an_error_that_says_so(door: Harness) -> None:
    token = agent_token(door)
    task = propose(door, token)
    person = door.token("t1", ["intents:approve", "intents:read"], subject="person-3")
    rejected = call_tool(door, person, "reject_action", {"action_intent_id": task.task_id, "comment": "no"})
    assert rejected.structured_content["approval_status"] == "REJECTED"
    done = read_task(door, token, task.task_id)
    assert done.status == "completed"
    result = done.tool_result()
    assert result.is_error is True
    assert "rejected" in result.content[0].text


def test_the_same_key_returns_the_same_task_and_one_intent_and_one_execution(door: Harness) -> None:
    token = agent_token(door)
    key = secrets.token_hex(16)
    first = propose(door, token, key=key)
    again = propose(door, token, key=key)  # a re-issued request
    assert again.task_id == first.task_id
    with door.client() as http:
        assert http.post(f"/intents/{first.task_id}/approve").status_code == 202
    wait_completed(door, token, first.task_id)
    after = propose(door, token, key=key)  # a restarted agent, after the outcome
    assert after.task_id == first.task_id
    assert after.status == "completed"
    assert door.count(action_intents, action_intent_id=first.task_id) == 1
    assert door.task_rows(first.task_id) == 1
    assert door.outcome_rows(first.task_id) == 1
    # The key is the caller's: another caller with the same key proposes its own.
    other = propose(door, agent_token(door, subject="agent-8"), key=key)
    assert other.task_id != first.task_id


def test_the_same_key_with_other_arguments_is_an_error_never_a_task(door: Harness) -> None:
    token = agent_token(door)
    key = secrets.token_hex(16)
    first = propose(door, token, key=key)
    changed = propose(door, token, {"account_id": "acc-1", "title": "something else"}, key=key)
    assert not isinstance(changed, TaskHandle)
    assert changed.is_error is True
    assert "idempotency key" in changed.content[0].text
    assert door.count(action_intents, action_intent_id=first.task_id) == 1
    short = propose(door, token, key="short")
    assert short.is_error is True
    assert "16 to 128" in short.content[0].text


def test_without_a_key_every_call_is_a_new_proposal(door: Harness) -> None:
    token = agent_token(door)
    assert propose(door, token).task_id != propose(door, token).task_id


def test_another_callers_or_tenants_task_is_answered_as_unknown(door: Harness) -> None:
    task = propose(door, agent_token(door))
    random_id = f"mcp_{secrets.token_hex(12)}_{secrets.token_hex(12)}"
    expected = unknown_task_error(door, agent_token(door), random_id)
    assert expected[0] == -32602
    for stranger in (agent_token(door, subject="agent-9"), agent_token(door, tenant="t2")):
        assert unknown_task_error(door, stranger, task.task_id) == expected
        assert unknown_task_error(door, stranger, task.task_id, cancelling=True) == expected
    assert read_task(door, agent_token(door), task.task_id).status == "working"  # untouched


def test_cancel_before_approval_then_an_approval_is_a_conflict(door: Harness) -> None:
    token = agent_token(door)
    task = propose(door, token)
    cancel(door, token, task.task_id)
    assert read_task(door, token, task.task_id).status == "cancelled"
    with door.client() as http:
        assert http.post(f"/intents/{task.task_id}/approve").status_code == 409
    assert door.task_rows(task.task_id) == 0


def test_cancel_after_approval_cancels_the_intent_as_the_api_does(door: Harness) -> None:
    token = agent_token(door)
    task = propose(door, token)
    with door.client() as http:
        assert http.post(f"/intents/{task.task_id}/approve").status_code == 202
        wait_completed(door, token, task.task_id)
        cancel(door, token, task.task_id)
        assert read_task(door, token, task.task_id).status == "cancelled"
        assert http.get(f"/intents/{task.task_id}").json()["approval_status"] == "CANCELLED"

        def compensated() -> Any:  # the registry says AUTOMATIC: the write is undone
            status = http.get(f"/executions/{task.task_id}/status").json()
            return status if status.get("compensation_status") == "COMPLETED" else None

        wait_for(compensated, timeout=30)


def test_cancel_action_keeps_its_reason_in_the_ledger(door: Harness) -> None:
    token = agent_token(door)
    task = propose(door, token)
    too_long = call_tool(
        door, token, "cancel_action", {"action_intent_id": task.task_id, "reason": "x" * 5000}
    )
    assert too_long.is_error is True
    assert read_task(door, token, task.task_id).status == "working"  # nothing changed
    done = call_tool(
        door, token, "cancel_action", {"action_intent_id": task.task_id, "reason": "the customer called back"}
    )
    assert done.is_error is not True
    assert read_task(door, token, task.task_id).status == "cancelled"
    with door.client() as http:
        entries = http.get(f"/executions/{task.task_id}/timeline").json()["entries"]
    [cancelled] = [entry for entry in entries if entry["event_type"] == "INTENT_CANCELLED"]
    assert cancelled["data"]["comment"] == "the customer called back"
    assert cancelled["data"]["decided_by"] == "agent-7"


def test_an_agent_token_cannot_approve(door: Harness) -> None:
    task = propose(door, agent_token(door))
    marked = token_with(door, sub="person-4", act={"sub": "bot-1"})
    refused = call_tool(door, marked, "approve_action", {"action_intent_id": task.task_id})
    assert refused.is_error is True
    assert refused.structured_content["error_code"] == "AGENT_CANNOT_APPROVE"
    refused = call_tool(door, marked, "reject_action", {"action_intent_id": task.task_id})
    assert refused.is_error is True
    assert read_task(door, agent_token(door), task.task_id).status == "working"


def test_nobody_approves_their_own_proposal_through_the_door(door: Harness) -> None:
    person = door.token("t1", ALL_SCOPES, subject="person-5")
    task = propose(door, person)
    refused = call_tool(door, person, "approve_action", {"action_intent_id": task.task_id})
    assert refused.is_error is True
    assert refused.structured_content["error_code"] == "SELF_APPROVAL"
    other = door.token("t1", ["intents:approve", "intents:read"], subject="person-6")
    approved = call_tool(door, other, "approve_action", {"action_intent_id": task.task_id})
    assert approved.structured_content["approval_status"] == "APPROVED"


def test_an_agent_token_without_approve_scope_is_refused_too(door: Harness) -> None:
    task = propose(door, agent_token(door))
    refused = call_tool(door, agent_token(door), "approve_action", {"action_intent_id": task.task_id})
    assert refused.is_error is True
    assert "intents:approve" in refused.content[0].text


def test_service_tokens_do_not_open_the_door(door: Harness) -> None:
    service = mint_token(door.settings, tenant_id="t1", scopes=["gateway:invoke"])
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": "Bearer nope"}
    assert plain_http.post(f"{door.url}/agent/mcp", json=body, headers=headers).status_code == 401
    assert service  # a user token with gateway:invoke only lists no action tool
    listed = run(_names(door, service))
    assert not {name for name in listed if name.startswith("create_")}


async def _names(h: Harness, token: str) -> set[str]:
    async with agent_client(h.url, token) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


def test_without_tasks_a_call_waits_and_then_says_it_awaits_approval(door: Harness) -> None:
    token = agent_token(door)
    started = time.monotonic()
    result = call_tool(door, token, "create_internal_task", TASK_ARGS, tasks=False)
    assert time.monotonic() - started >= 1.0  # FULFILL_AGENT_WAIT_SECONDS of this service
    assert result.is_error is not True
    intent_id = result.structured_content["action_intent_id"]
    assert "get_action_status" in result.content[0].text
    assert intent_id in result.content[0].text
    status = call_tool(door, token, "get_action_status", {"action_intent_id": intent_id}, tasks=False)
    assert status.structured_content["status"] == "PENDING"


def test_a_task_is_durable_before_it_is_answered(tmp_path: Path) -> None:
    """Kill the process right after its CreateTaskResult; a new process answers the task."""
    port = free_port()
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": fresh_database_url(tmp_path),
        "FULFILL_PORT": str(port),
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "service.log"
    settings = Settings(jwt_secret=TEST_SECRET)
    token = mint_token(settings, tenant_id="t1", scopes=AGENT_SCOPES, subject="agent-durable")

    class Url:
        pass

    target = Url()
    target.url = url  # type: ignore[attr-defined]
    process = start_serve(env, log)
    try:
        task = propose(target, token, key=secrets.token_hex(16))  # type: ignore[arg-type]
        assert isinstance(task, TaskHandle)
        kill(process)
        process = start_serve(env, log)
        snapshot = read_task(target, token, task.task_id)  # type: ignore[arg-type]
        assert snapshot.status == "working"
        assert "approval" in (snapshot.status_message or "")
        # The same for a 2025-11-25 CreateTaskResult.
        created = legacy(target, token, lambda s: call_tool_as_task(s, "create_internal_task", TASK_ARGS))  # type: ignore[arg-type]
        kill(process)
        process = start_serve(env, log)
        polled = legacy(target, token, lambda s: get_core_task(s, created.task.task_id))  # type: ignore[arg-type]
        assert polled.status == "working"
        assert "approval" in (polled.status_message or "")
    finally:
        stop_all([process])


def test_a_2025_11_25_call_without_task_gets_a_result_never_a_2026_task(door: Harness) -> None:
    token = agent_token(door)

    async def call() -> Any:
        async with agent_client(door.url, token, mode="legacy") as client:
            assert client.protocol_version == "2025-11-25"
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "create_internal_task" in names
            return await client.call_tool("create_internal_task", TASK_ARGS)

    result = run(call())
    assert result.is_error is not True
    assert "get_action_status" in result.content[0].text
    assert result.structured_content["approval_status"] == "PENDING_APPROVAL"


# --- 2025-11-25: tasks in the core protocol (execution.taskSupport, the task parameter) -------


def legacy(h: Harness, token: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(session)`` on a 2025-11-25 connection of the SDK client (no 2026 extension)."""

    async def call() -> T:
        async with agent_client(h.url, token, tasks=False, mode="legacy") as client:
            assert client.protocol_version == "2025-11-25"
            return await work(client.session)

    return run(call())


def test_a_2025_11_25_client_sees_task_support_on_action_tools_and_in_the_capabilities(door: Harness) -> None:
    async def work(session: Any) -> tuple[Any, dict[str, Any]]:
        listed = await session.list_tools()
        return session.server_capabilities, {tool.name: tool for tool in listed.tools}

    capabilities, tools = legacy(door, agent_token(door), work)
    assert capabilities.tasks is not None
    assert capabilities.tasks.requests is not None
    assert capabilities.tasks.requests.tools is not None
    assert capabilities.tasks.requests.tools.call is not None
    assert capabilities.tasks.cancel is not None
    assert capabilities.tasks.list is None  # a task is its caller's: never listed
    assert tools["create_internal_task"].execution.task_support == "optional"
    assert tools["get_action_status"].execution is None

    async def modern(client: Any) -> Any:
        return {tool.name: tool for tool in (await client.list_tools()).tools}

    async def listed_modern() -> Any:
        async with agent_client(door.url, agent_token(door)) as client:
            assert client.protocol_version == "2026-07-28"
            return await modern(client)

    assert run(listed_modern())["create_internal_task"].execution is None  # no such field in 2026


def test_a_2025_11_25_task_is_working_then_completed_with_refs_after_an_http_approval(door: Harness) -> None:
    token = agent_token(door)
    created = legacy(door, token, lambda s: call_tool_as_task(s, "create_internal_task", TASK_ARGS))
    task = created.task
    assert task.status == "working"
    assert "approval" in (task.status_message or "")
    assert task.ttl is not None
    assert task.ttl > 0
    assert task.poll_interval is not None
    assert task.poll_interval > 0
    with door.client() as http:  # committed before it was answered, and never executed by itself
        intent = http.get(f"/intents/{task.task_id}").json()
        assert intent["approval_status"] == "PENDING_APPROVAL"
        assert intent["proposed_by"] == "agent-7"
        assert intent["proposed_via"] == "mcp"
        assert door.task_rows(task.task_id) == 0
        polled = legacy(door, token, lambda s: get_core_task(s, task.task_id))
        assert polled.status == "working"
        assert "approval" in (polled.status_message or "")
        assert http.post(f"/intents/{task.task_id}/approve").status_code == 202

    async def result_when_done(session: Any) -> tuple[Any, Any]:
        # tasks/result holds the answer until the task is over (2025-11-25).
        result = await core_task_result(session, task.task_id)
        return result, await get_core_task(session, task.task_id)

    result, after = legacy(door, token, result_when_done)
    assert after.status == "completed"
    assert result.is_error is not True
    assert result.structured_content["status"] == "SUCCEEDED"
    assert result.structured_content["external_object_refs"][0]["system"] == "INTERNAL"
    assert result.meta["io.modelcontextprotocol/related-task"] == {"taskId": task.task_id}
    assert door.task_rows(task.task_id) == 1


def test_a_2025_11_25_rejection_completes_the_task_with_an_error_that_says_so(door: Harness) -> None:
    token = agent_token(door)
    task = legacy(door, token, lambda s: call_tool_as_task(s, "create_internal_task", TASK_ARGS)).task
    with door.client() as http:
        assert http.post(f"/intents/{task.task_id}/reject").status_code == 202
    result = legacy(door, token, lambda s: core_task_result(s, task.task_id))
    assert result.is_error is True
    assert "rejected" in result.content[0].text
    assert legacy(door, token, lambda s: get_core_task(s, task.task_id)).status == "completed"


def test_a_2025_11_25_retry_with_the_same_key_returns_the_same_task(door: Harness) -> None:
    token = agent_token(door)
    key = secrets.token_hex(16)
    first, second = (
        legacy(
            door,
            token,
            lambda s: call_tool_as_task(s, "create_internal_task", TASK_ARGS, meta={KEY_META: key}),
        )
        for _ in range(2)
    )
    assert first.task.task_id == second.task.task_id


def test_a_2025_11_25_task_of_another_caller_or_tenant_is_unknown(door: Harness) -> None:
    task = legacy(
        door, agent_token(door), lambda s: call_tool_as_task(s, "create_internal_task", TASK_ARGS)
    ).task
    random_id = f"mcp_{secrets.token_hex(12)}_{secrets.token_hex(12)}"

    def error_of(token: str, task_id: str, work: Callable[[Any, str], Awaitable[Any]]) -> tuple[int, str]:
        async def refused(session: Any) -> tuple[int, str]:
            try:
                await work(session, task_id)
            except MCPError as exc:
                return exc.error.code, exc.error.message
            raise AssertionError("the task was answered")

        return legacy(door, token, refused)

    expected = error_of(agent_token(door), random_id, get_core_task)
    assert expected == (-32602, "unknown task")
    for stranger in (agent_token(door, subject="agent-9"), agent_token(door, tenant="t2")):
        for work in (get_core_task, cancel_core_task, core_task_result):
            assert error_of(stranger, task.task_id, work) == expected
    assert legacy(door, agent_token(door), lambda s: get_core_task(s, task.task_id)).status == "working"


def test_a_2025_11_25_cancel_before_approval_then_an_approval_is_a_conflict(door: Harness) -> None:
    token = agent_token(door)
    task = legacy(door, token, lambda s: call_tool_as_task(s, "create_internal_task", TASK_ARGS)).task
    cancelled = legacy(door, token, lambda s: cancel_core_task(s, task.task_id))
    assert cancelled.task_id == task.task_id
    assert cancelled.status == "cancelled"
    assert legacy(door, token, lambda s: get_core_task(s, task.task_id)).status == "cancelled"
    with door.client() as http:
        assert http.get(f"/intents/{task.task_id}").json()["approval_status"] == "CANCELLED"
        assert http.post(f"/intents/{task.task_id}/approve").status_code == 409
    assert door.task_rows(task.task_id) == 0

    # 2025-11-25: a task already over cannot be cancelled again.
    async def cancel_again(session: Any) -> int:
        with pytest.raises(MCPError) as refused:
            await cancel_core_task(session, task.task_id)
        return refused.value.error.code

    assert legacy(door, token, cancel_again) == -32602


def test_the_sdk_client_checks_a_2025_11_25_tools_call_answer_as_a_plain_tool_result(door: Harness) -> None:
    """Why ``call_tool_as_task`` sends through the session's dispatcher: the SDK client's
    ``send_request`` refuses a ``CreateTaskResult`` to a 2025-11-25 ``tools/call``. When it stops
    doing so, that helper can use ``send_request`` like the others."""

    async def work(session: Any) -> None:
        request = CallToolRequest(
            params=CallToolRequestParams(
                name="create_internal_task", arguments=TASK_ARGS, task=TaskMetadata(ttl=60_000)
            )
        )
        with pytest.raises(ValidationError):
            await session.send_request(request, CreateTaskResult)

    legacy(door, agent_token(door), work)
