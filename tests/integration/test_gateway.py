"""The MCP gateway at /mcp, called over real Streamable HTTP with the MCP SDK's client.

Only the engine's service tokens open it, and each one is bound to one call's trusted arguments
(tenant, account, intent, idempotency key): a user token, whatever its scopes, is refused, and a
service token cannot be reused for another account, intent, key or tenant."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select

from fulfill.store.tables import internal_notes, internal_tasks
from fulfill.tokens import mint_token
from tests.support import plain_http
from tests.support.harness import ALL_SCOPES, Harness, make_settings

T = TypeVar("T")
BINDING = ("tenant_id", "account_id", "action_intent_id", "idempotency_key")
SERVICE_SECRET = "gateway-service-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One service for the module, with service tokens and user tokens on different secrets."""
    settings = make_settings(tmp_path_factory.mktemp("gateway"), service_token_secret=SERVICE_SECRET)
    running = Harness(settings).start()
    yield running
    running.stop()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def service_token(
    harness: Harness,
    arguments: dict[str, Any],
    *,
    secret: str | None = None,
    expires_in: int = 60,
    **claims: Any,
) -> str:
    """A service token as the engine mints it: issuer ``fulfill-service``, bound to the call's
    trusted arguments (overridable per claim), signed with the service secret."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "fulfill-engine",
        "scope": "gateway:invoke",
        "iss": "fulfill-service",
        "aud": harness.settings.jwt_audience,
        "iat": now,
        "exp": now + expires_in,
        **{name: arguments[name] for name in BINDING if name in arguments},
        **claims,
    }
    key = secret or harness.settings.service_token_secret or harness.settings.jwt_secret
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="HS256")


def _client_with(harness: Harness, token: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return Client(streamable_http_client(f"{harness.url}/mcp", http_client=http))


def _client(harness: Harness, arguments: dict[str, Any], **claims: Any) -> Client:
    """A client whose service token is bound to ``arguments`` (``claims`` override the binding)."""
    return _client_with(harness, service_token(harness, arguments, **claims))


def _task_args(key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "title": "from a test",
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai_gw",
        "idempotency_key": key or secrets.token_hex(32),
        **extra,
    }


def _call(harness: Harness, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    async def call() -> Any:
        async with _client_with(harness, token) as client:
            return await client.call_tool(tool, arguments)

    return run(call())


def _error(result: Any) -> dict[str, Any]:
    """A tool error as a client reads it: ``isError`` and a JSON text with the classification."""
    assert result.is_error is True
    payload = json.loads(result.content[0].text)
    assert set(payload) >= {"error_code", "error_class", "error_message"}
    return dict(payload)


def _status_of(harness: Harness, token: str, body: dict[str, Any] | None = None) -> int:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    return plain_http.post(f"{harness.url}/mcp", json=body or LIST_TOOLS, headers=headers).status_code


def test_tools_are_listed_with_input_and_output_schemas(shared: Harness) -> None:
    async def listed() -> dict[str, Any]:
        async with _client(shared, _task_args()) as client:
            return {tool.name: tool for tool in (await client.list_tools()).tools}

    tools = run(listed())
    assert set(tools) == {
        "internal.create_task",
        "internal.create_note",
        "internal.delete_task",
        "internal.delete_note",
        "crm.create_task",
        "crm.create_opportunity",
        "crm.update_field",
        "crm.delete_task",
        "crm.delete_opportunity",
        "crm.restore_field",
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
    # The connector derives object ids from the key's first 24 characters: the schema says so.
    for tool in tools.values():
        if tool.name.startswith("internal."):
            assert tool.input_schema["properties"]["idempotency_key"]["minLength"] == 24, tool.name


def test_the_gateway_names_its_version(shared: Harness) -> None:
    from fulfill import __version__

    async def info() -> Any:
        async with _client(shared, _task_args()) as client:
            return client.server_info

    server = run(info())
    assert (server.name, server.version) == ("fulfill-gateway", __version__)


def test_a_short_idempotency_key_is_refused_by_the_schema(shared: Harness) -> None:
    arguments = _task_args(key="k" * 23)
    error = _error(_call(shared, service_token(shared, arguments), "internal.create_task", arguments))
    assert error["error_code"] == "INVALID_TOOL_ARGUMENTS"
    assert "idempotency_key: fails 'minLength'" in error["error_message"]


# --- who may call the gateway ------------------------------------------------------------------


def test_a_refused_token_is_told_why_without_echoing_a_secret(shared: Harness) -> None:
    def refusal(token: str | None) -> tuple[str, dict[str, Any]]:
        headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
        response = plain_http.post(f"{shared.url}/mcp", json=LIST_TOOLS, headers=headers)
        assert response.status_code == 401, response.text
        challenge = response.headers["www-authenticate"]
        body = dict(response.json())
        assert challenge.startswith('Bearer error="invalid_token", error_description="')
        assert body["error"] == "invalid_token"
        for secret in (SERVICE_SECRET, shared.settings.jwt_secret, *([token] if token else [])):
            assert secret not in challenge
            assert secret not in response.text
        return challenge, body

    user = shared.token(scopes=ALL_SCOPES)
    challenge, body = refusal(user)
    assert body["code"] == "SERVICE_TOKEN_REQUIRED"
    assert "/mcp is for the engine's own service tokens; agents use the HTTP API" in challenge
    assert body["error_description"] in challenge

    expired = service_token(shared, _task_args(), expires_in=-120)
    challenge, body = refusal(expired)
    assert (body["code"], body["error_description"]) == ("TOKEN_EXPIRED", "token expired")
    assert 'error_description="token expired"' in challenge

    forged = service_token(shared, _task_args(), secret="another-secret-0123456789abcdef0123")
    assert refusal(forged)[1]["code"] == "TOKEN_SIGNATURE_INVALID"

    other_issuer = service_token(shared, _task_args(), iss="someone-else")
    challenge, body = refusal(other_issuer)
    assert body["code"] == "SERVICE_TOKEN_REQUIRED"
    assert "agents use the HTTP API" in challenge

    assert refusal("not-a-jwt")[1]["code"] == "TOKEN_MALFORMED"
    challenge, body = refusal(None)
    assert body["code"] == "TOKEN_MISSING"
    assert "a bearer token is required" in challenge


def test_calls_need_a_service_token(shared: Harness) -> None:
    assert plain_http.post(f"{shared.url}/mcp", json=LIST_TOOLS, headers=MCP_HEADERS).status_code == 401
    assert _status_of(shared, "not-a-jwt") == 401
    assert _status_of(shared, service_token(shared, _task_args())) == 200


@pytest.mark.parametrize(
    "scopes",
    [["gateway:invoke"], [*ALL_SCOPES, "gateway:invoke", "platform:admin"], ["executions:read"]],
    ids=["gateway-scope", "tenant-and-platform-admin", "reader"],
)
def test_user_tokens_are_refused_whatever_their_scopes(shared: Harness, scopes: list[str]) -> None:
    user = mint_token(shared.settings, tenant_id="t1", scopes=scopes, account_ids=["acc-1"])
    assert _status_of(shared, user) == 401
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "internal.create_task", "arguments": _task_args(account_id="acc-2")},
    }
    assert _status_of(shared, user, call) == 401
    assert shared.count(internal_tasks, account_id="acc-2", title="from a test") == 0


def test_a_user_token_cannot_delete_a_task(shared: Harness) -> None:
    args = _task_args(action_intent_id="ai_gw_victim")
    created = _call(shared, service_token(shared, args), "internal.create_task", args)
    task_id = created.structured_content["external_object_refs"][0]["object_id"]
    admin = mint_token(shared.settings, tenant_id="t1", scopes=[*ALL_SCOPES, "gateway:invoke"])
    delete = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {
            "name": "internal.delete_task",
            "arguments": {**{name: args[name] for name in BINDING}, "object_id": task_id},
        },
    }
    assert _status_of(shared, admin, delete) == 401
    with shared.db.read() as conn:
        [row] = conn.execute(select(internal_tasks).where(internal_tasks.c.task_id == task_id)).all()
    assert row.deleted_at is None


def test_an_expired_service_token_is_refused(shared: Harness) -> None:
    assert _status_of(shared, service_token(shared, _task_args(), expires_in=-120)) == 401


def test_a_service_token_signed_with_the_user_token_secret_is_refused(shared: Harness) -> None:
    assert shared.settings.service_token_secret != shared.settings.jwt_secret
    args = _task_args()
    assert _status_of(shared, service_token(shared, args, secret=shared.settings.jwt_secret)) == 401
    assert _status_of(shared, service_token(shared, args)) == 200


def test_a_service_token_without_its_binding_is_refused(shared: Harness) -> None:
    unbound = service_token(shared, {"tenant_id": "t1"})
    assert _status_of(shared, unbound) == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("account_id", "acc-2"),
        ("action_intent_id", "ai_gw_other"),
        ("idempotency_key", "f" * 64),
    ],
)
def test_a_service_token_is_bound_to_its_call(shared: Harness, field: str, value: str) -> None:
    bound = _task_args(action_intent_id="ai_gw_bound")
    token = service_token(shared, bound)
    result = _call(shared, token, "internal.create_task", {**bound, field: value})
    error = _error(result)
    assert (error["error_class"], error["error_code"]) == ("AUTH", "TOKEN_BINDING_MISMATCH")
    assert field in error["error_message"]
    assert value not in error["error_message"]
    assert bound[field] not in error["error_message"]
    assert shared.count(internal_tasks, **{field: value}) == 0
    assert shared.count(internal_tasks, action_intent_id="ai_gw_bound") == 0


def test_a_service_token_for_one_tenant_cannot_touch_another(shared: Harness) -> None:
    theirs = _task_args(tenant_id="t2", action_intent_id="ai_gw_t2")
    created = _call(shared, service_token(shared, theirs), "internal.create_task", theirs)
    task_id = created.structured_content["external_object_refs"][0]["object_id"]
    ours = service_token(
        shared, _task_args(action_intent_id="ai_gw_t2", idempotency_key=theirs["idempotency_key"])
    )
    delete = {**{name: theirs[name] for name in BINDING}, "object_id": task_id}
    error = _error(_call(shared, ours, "internal.delete_task", delete))
    assert (error["error_class"], error["error_code"]) == ("AUTH", "TOKEN_BINDING_MISMATCH")
    assert "tenant_id" in error["error_message"]
    with shared.db.read() as conn:
        [row] = conn.execute(select(internal_tasks).where(internal_tasks.c.task_id == task_id)).all()
    assert (row.tenant_id, row.deleted_at) == ("t2", None)


def test_a_service_token_with_its_binding_works(shared: Harness) -> None:
    args = _task_args(action_intent_id="ai_gw_ok")
    result = _call(shared, service_token(shared, args), "internal.create_task", args)
    assert result.is_error is False
    assert (
        result.structured_content["external_object_refs"][0]["object_id"]
        == f"task_{args['idempotency_key'][:24]}"
    )
    assert shared.task_rows("ai_gw_ok") == 1


# --- what the gateway does ---------------------------------------------------------------------


def test_create_is_idempotent_and_concurrent_repeats_write_once(shared: Harness) -> None:
    args = _task_args()
    key = args["idempotency_key"]

    async def create() -> Any:
        async with _client(shared, args) as client:
            return await client.call_tool("internal.create_task", args)

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: run(create()), range(10)))
    refs = {result.structured_content["external_object_refs"][0]["object_id"] for result in results}
    assert all(not result.is_error for result in results)
    assert refs == {f"task_{key[:24]}"}
    assert shared.task_rows("ai_gw") == 1


def test_business_and_guard_failures_are_readable_tool_errors(shared: Harness) -> None:
    async def calls() -> list[Any]:
        empty_title = _task_args(title=" ")
        valid = _task_args()
        async with _client(shared, empty_title) as client:
            first = await client.call_tool("internal.create_task", empty_title)
        async with _client(shared, valid) as client:
            return [
                first,
                await client.call_tool("internal.nothing", {}),
                await client.call_tool("internal.create_task", {"title": 5, "tenant_id": "t1"}),
            ]

    results = run(calls())
    # No structured content on errors: what clients validate against the output schema is absent.
    assert all(result.structured_content is None for result in results)
    empty_title, unknown, invalid = (_error(result) for result in results)
    assert (empty_title["error_class"], empty_title["error_code"]) == ("VALIDATION", "VALIDATION_FAILED")
    assert (unknown["error_class"], unknown["error_code"]) == ("VALIDATION", "TOOL_NOT_FOUND")
    assert (invalid["error_class"], invalid["error_code"]) == ("VALIDATION", "INVALID_TOOL_ARGUMENTS")
    assert "title: must be of type string" in invalid["error_message"]
    # The missing arguments are named once, not once per missing argument.
    assert invalid["error_message"].count("missing required argument(s)") == 1
    assert (
        "missing required argument(s): account_id, action_intent_id, idempotency_key"
        in (invalid["error_message"])
    )


def test_compensation_deletes_once_and_a_repeat_create_restores(shared: Harness) -> None:
    key = secrets.token_hex(32)
    note = {
        "content": "n",
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai_gw_note",
        "idempotency_key": key,
    }

    async def scenario() -> list[Any]:
        async with _client(shared, note) as client:
            created = await client.call_tool("internal.create_note", note)
            note_id = created.structured_content["external_object_refs"][0]["object_id"]
            args = {**{name: note[name] for name in BINDING}, "object_id": note_id}
            first = await client.call_tool("internal.delete_note", args)
            second = await client.call_tool("internal.delete_note", args)
            restored = await client.call_tool("internal.create_note", note)
            return [created, first, second, restored]

    created, first, second, restored = run(scenario())
    assert first.structured_content["deleted"] is True
    assert second.structured_content["deleted"] is False  # deleting twice is safe
    assert restored.structured_content == created.structured_content

    with shared.db.read() as conn:
        [row] = conn.execute(
            select(internal_notes).where(internal_notes.c.action_intent_id == "ai_gw_note")
        ).all()
    assert row.deleted_at is None
