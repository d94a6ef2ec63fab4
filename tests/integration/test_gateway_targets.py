"""Remote MCP servers as gateway targets, end to end: a real MCP server built with the ``mcp`` SDK
runs in its own process (``tests/support/mcp_target.py``), is registered through
``/admin/gateway/targets``, and is called through the gateway when an intent executes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select

from fulfill.gateway.target_auth import OAuthTokens
from fulfill.store import executions
from fulfill.store import targets as target_store
from fulfill.store.tables import gateway_target_secrets
from fulfill_tools.launch import free_port, start_serve, stop_all
from tests.integration.test_gateway import service_token
from tests.support.harness import TEST_SECRET, Harness, approved_event, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for
from tests.support.mcp_target import McpTarget
from tests.support.salesforce import SECRETS_KEY

pytestmark = pytest.mark.slow

BEARER = "bearer-secret-9f8e7d6c5b4a"
OAUTH_SECRET = "oauth-client-secret-1a2b3c4d"
TICKET_MAPPING = {
    "title": {"toolParam": "title", "required": True},
    "priority": {"toolParam": "priority", "transform": "LOWERCASE"},
}


@pytest.fixture
def allowed(tmp_path: Path) -> Iterator[Harness]:
    """A service allowed to reach 127.0.0.1 (the tests' targets), with short refresh and timeouts."""
    settings = make_settings(
        tmp_path,
        gateway_egress_allow=["127.0.0.1"],
        gateway_targets_refresh_seconds=0.5,
        gateway_call_timeout_seconds=3.0,
        secrets_key=SECRETS_KEY,
    )
    running = Harness(settings).start()
    yield running
    running.stop()


@pytest.fixture
def target() -> Iterator[McpTarget]:
    running = McpTarget()
    yield running
    running.stop()


def add_target(client: httpx.Client, url: str, name: str = "tickets", **body: Any) -> dict[str, Any]:
    response = client.post("/admin/gateway/targets", json={"name": name, "url": url, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def map_action(
    client: httpx.Client, action_type: str = "CREATE_TICKET", tool: str = "tickets.create_ticket"
) -> None:
    response = client.post(
        "/admin/registry",
        json={"action_type": action_type, "tool_name": tool, "parameter_mapping": TICKET_MAPPING},
    )
    assert response.status_code == 201, response.text


def run_ticket(harness: Harness, client: httpx.Client, title: str = "Printer on fire") -> dict[str, Any]:
    return harness.run_task(
        client, action_type="CREATE_TICKET", parameters={"title": title, "priority": "HIGH"}
    )


def ledger(harness: Harness, intent_id: str) -> list[Any]:
    with harness.db.read() as conn:
        return list(executions.list_ledger(conn, "t1", intent_id))


def problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    if code is not None:
        assert body.get("code") == code, body
    return body


# --- end to end ------------------------------------------------------------------------------------


def test_an_intent_runs_on_a_remote_target_once_whatever_the_duplicates(
    allowed: Harness, target: McpTarget
) -> None:
    with allowed.client() as client:
        added = add_target(client, target.url)
        assert added["name"] == "tickets"
        assert added["url"] == target.url
        assert added["auth"] == {
            "type": "none",
            "token_url": None,
            "client_id": None,
            "scope": None,
            "audience": None,
        }
        tools = {tool["name"]: tool for tool in added["tools"]}
        assert set(tools) == {"tickets.create_ticket", "tickets.add_comment", "tickets.log_note"}
        assert tools["tickets.create_ticket"]["input_schema"]["required"] == ["title"]
        assert tools["tickets.create_ticket"]["description"].startswith("Create a ticket")
        map_action(client)

        intent = allowed.create_intent(
            client, action_type="CREATE_TICKET", parameters={"title": "Printer", "priority": "HIGH"}
        )
        intent_id = intent["action_intent_id"]
        allowed.approve(client, intent_id)

        def deliver(_: int) -> int:
            with allowed.client() as own:
                return own.post("/events", json=approved_event(intent_id)).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            assert list(pool.map(deliver, range(20))) == [202] * 20
        status = allowed.wait_terminal(client, intent_id)

    assert status["status"] == "SUCCEEDED", status
    assert status["external_object_refs"] == [
        {"system": "MCP:tickets", "object_type": "Ticket", "object_id": "T-1"}
    ]
    stats = target.stats()
    assert stats["calls"] == {"create_ticket": 1}
    assert stats["effects"] == 1
    # The mapped arguments only: trusted arguments its schema does not declare are not sent...
    assert stats["arguments"]["create_ticket"] == {"title": "Printer", "priority": "high"}
    # ...and the idempotency key travels in _meta (with the execution's W3C trace context).
    [executed] = [entry for entry in ledger(allowed, intent_id) if entry.event_type == "ACTION_EXECUTED"]
    meta = stats["meta"]["create_ticket"]
    assert meta["io.fulfill/idempotency-key"] == executed.data["idempotency_key"]
    assert set(meta) <= {"io.fulfill/idempotency-key", "traceparent", "tracestate"}
    assert meta["traceparent"].split("-")[1] == executed.trace_id
    assert executed.data["tool_name"] == "tickets.create_ticket"
    assert allowed.outcome_rows(intent_id) == 1


def test_the_gateway_lists_target_tools_and_vets_every_call_before_forwarding(
    allowed: Harness, target: McpTarget
) -> None:
    with allowed.client() as client:
        add_target(client, target.url)
    key = secrets.token_hex(32)
    bound = {
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai_remote",
        "idempotency_key": key,
    }

    async def session(arguments: dict[str, Any], tool: str, **claims: Any) -> Any:
        token = service_token(allowed, {**bound, **arguments}, **claims)
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10)
        async with Client(streamable_http_client(f"{allowed.url}/mcp", http_client=http)) as mcp:
            listed = {t.name for t in (await mcp.list_tools()).tools}
            result = await mcp.call_tool(tool, {**bound, **arguments})
            return listed, result

    listed, missing = asyncio.run(session({}, "tickets.create_ticket"))
    assert {
        "tickets.create_ticket",
        "tickets.add_comment",
        "tickets.log_note",
        "internal.create_task",
    } <= listed
    assert json.loads(missing.content[0].text)["error_code"] == "INVALID_TOOL_ARGUMENTS"
    assert "title" in json.loads(missing.content[0].text)["error_message"]

    _, mismatched = asyncio.run(session({"title": "x"}, "tickets.create_ticket", account_id="acc-2"))
    assert json.loads(mismatched.content[0].text)["error_code"] == "TOKEN_BINDING_MISMATCH"
    assert target.calls() == 0  # neither reached the target

    _, created = asyncio.run(session({"title": "x"}, "tickets.create_ticket"))
    assert created.is_error is False
    assert created.structured_content == {
        "external_object_refs": [{"system": "MCP:tickets", "object_type": "Ticket", "object_id": "T-1"}]
    }
    # A tool that declares a trusted argument receives it; one that answers no refs gets one.
    _, noted = asyncio.run(session({"summary": "met"}, "tickets.log_note"))
    assert noted.structured_content["external_object_refs"] == [
        {"system": "MCP:tickets", "object_type": "log_note", "object_id": "N-1"}
    ]
    _, commented = asyncio.run(session({"ticket_id": "T-1", "text": "hi"}, "tickets.add_comment"))
    assert commented.structured_content["external_object_refs"][0]["object_id"] == key
    arguments = target.stats()["arguments"]
    assert arguments["log_note"] == {"summary": "met", "account_id": "acc-1"}
    assert arguments["create_ticket"] == {"title": "x", "priority": "normal"}


# --- admin: registration, egress, sync, delete ---------------------------------------------------


def test_loopback_and_private_targets_are_refused_without_the_allow_list(
    harness: Harness, target: McpTarget
) -> None:
    with harness.client() as client:
        for url in (
            target.url,
            f"http://localhost:{target.port}/mcp",
            "http://10.1.2.3/mcp",
            "http://169.254.169.254/latest",
            "http://[::1]:8080/mcp",
            "http://[::ffff:127.0.0.1]/mcp",
            "http://0.0.0.0/mcp",
        ):
            body = problem(
                client.post("/admin/gateway/targets", json={"name": "t", "url": url}), 422, "EGRESS_REFUSED"
            )
            assert "FULFILL_GATEWAY_EGRESS_ALLOW" in body["detail"]
        assert client.get("/admin/gateway/targets").json() == {"targets": []}
    assert target.stats()["calls"] == {}


def test_registration_refuses_bad_input_with_problem_details(allowed: Harness, target: McpTarget) -> None:
    with allowed.client() as client:
        post = lambda body: client.post("/admin/gateway/targets", json=body)  # noqa: E731
        problem(post({"name": "t", "url": "ftp://127.0.0.1/mcp"}), 422, "INVALID_TARGET_URL")
        problem(post({"name": "t", "url": "file:///etc/passwd"}), 422, "INVALID_TARGET_URL")
        problem(
            post({"name": "t", "url": f"http://user:pw@127.0.0.1:{target.port}/mcp"}),
            422,
            "INVALID_TARGET_URL",
        )
        problem(post({"name": "internal", "url": target.url}), 422, "TARGET_NAME_RESERVED")
        problem(post({"name": "Bad-Name", "url": target.url}), 422)
        problem(post({"name": "t", "url": target.url, "auth": {"type": "basic"}}), 422)
        problem(post({"name": "t", "url": target.url, "extra": 1}), 422)
        problem(post({"name": "t", "url": "http://127.0.0.1:1/mcp"}), 422, "TARGET_UNAVAILABLE")
        problem(post({"name": "t", "url": "http://no-such-host.invalid/mcp"}), 422, "TARGET_UNREACHABLE")
        headers = {"Content-Type": "application/json"}
        problem(client.post("/admin/gateway/targets", content=b"{oops", headers=headers), 400)
        add_target(client, target.url)
        problem(post({"name": "tickets", "url": target.url}), 409, "TARGET_EXISTS")
        problem(client.post("/admin/gateway/targets/nothing/sync"), 404)
        problem(client.delete("/admin/gateway/targets/nothing"), 404)
        problem(client.delete("/admin/gateway/targets/Bad!"), 422)
        # A mapping is checked against the remote tool's input schema, as for internal tools.
        bad = {"action_type": "CREATE_TICKET", "tool_name": "tickets.create_ticket"}
        response = client.post(
            "/admin/registry", json={**bad, "parameter_mapping": {"t": {"toolParam": "headline"}}}
        )
        problem(response, 422, "INVALID_MAPPING")
        response = client.post("/admin/registry", json={**bad, "parameter_mapping": {}})
        problem(response, 422, "INVALID_MAPPING")  # title is required
        response = client.post(
            "/admin/registry", json={**bad, "tool_name": "tickets.nope", "parameter_mapping": {}}
        )
        problem(response, 422, "UNKNOWN_TOOL")


@pytest.mark.parametrize("scopes", [["admin"], ["intents:write", "admin"]])
def test_target_routes_need_platform_admin(allowed: Harness, scopes: list[str]) -> None:
    with allowed.client(scopes=scopes) as client:
        for response in (
            client.get("/admin/gateway/targets"),
            client.post("/admin/gateway/targets", json={"name": "t", "url": "https://example.com/mcp"}),
            client.post("/admin/gateway/targets/t/sync"),
            client.delete("/admin/gateway/targets/t"),
        ):
            assert problem(response, 403, "MISSING_SCOPE")


def test_sync_picks_up_a_new_tool_and_delete_removes_the_tools(allowed: Harness, target: McpTarget) -> None:
    with allowed.client() as client:
        added = add_target(client, target.url)
        target.add_tool("close_ticket")
        synced = client.post("/admin/gateway/targets/tickets/sync")
        assert synced.status_code == 200, synced.text
        assert "tickets.close_ticket" in {tool["name"] for tool in synced.json()["tools"]}
        assert synced.json()["revision"] == added["revision"] + 1
        assert allowed.service.runtime.tool_schemas.get("tickets.close_ticket") is not None
        closing = client.post(
            "/admin/registry",
            json={
                "action_type": "CLOSE_TICKET",
                "tool_name": "tickets.close_ticket",
                "parameter_mapping": {"ticket": {"toolParam": "ticket_id", "required": True}},
            },
        )
        assert closing.status_code == 201, closing.text
        status = allowed.run_task(client, action_type="CLOSE_TICKET", parameters={"ticket": "T-9"})
        assert status["status"] == "SUCCEEDED", status
        assert status["external_object_refs"] == [
            {"system": "MCP:tickets", "object_type": "close_ticket", "object_id": "T-9"}
        ]

        assert client.delete("/admin/gateway/targets/tickets").status_code == 204
        assert client.get("/admin/gateway/targets").json() == {"targets": []}
        assert "tickets.close_ticket" not in set(allowed.service.runtime.tool_schemas)
        problem(client.post("/admin/gateway/targets/tickets/sync"), 404)
        # An action type mapped to a removed tool can no longer be requested.
        response = client.post(
            "/intents",
            json={"action_type": "CLOSE_TICKET", "account_id": "acc-1", "parameters": {"ticket": "T-1"}},
        )
        problem(response, 422, "UNKNOWN_TOOL")
    assert target.calls("close_ticket") == 1


# --- unknown outcomes ------------------------------------------------------------------------------


@pytest.fixture
def behind_proxy(target: McpTarget) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(upstream=target.url)
    yield proxy
    proxy.close()


@pytest.mark.parametrize("fault", ["hold", "drop_after"])
def test_a_lost_answer_from_a_non_deduplicating_target_ends_ambiguous_and_is_not_retried(
    allowed: Harness, target: McpTarget, behind_proxy: FaultyProxy, fault: str
) -> None:
    behind_proxy.add_faults(Fault(fault))  # the target writes; its answer never arrives
    with allowed.client() as client:
        add_target(client, behind_proxy.url, deduplicates=False)
        map_action(client)
        status = run_ticket(allowed, client)
        timeline = client.get(f"/executions/{status['action_intent_id']}/timeline").json()["entries"]

    assert status["status"] == "AMBIGUOUS", status
    assert status["error_code"] == "UNKNOWN_OUTCOME"
    assert status["error_class"] == "UNKNOWN"
    assert target.calls() == 1
    assert target.stats()["effects"] == 1
    assert behind_proxy.state.tool_calls_seen == 1
    [unknown] = [entry for entry in timeline if entry["event_type"] == "OUTCOME_UNKNOWN"]
    [failed] = [entry for entry in timeline if entry["event_type"] == "ACTION_AMBIGUOUS"]
    assert unknown["data"]["target"] == "tickets"
    assert unknown["data"]["tool_name"] == "tickets.create_ticket"
    assert unknown["data"]["remote_tool"] == "create_ticket"
    assert unknown["data"]["idempotency_key"] == failed["data"]["idempotency_key"]
    assert (
        unknown["data"]["idempotency_key"]
        == target.stats()["meta"]["create_ticket"]["io.fulfill/idempotency-key"]
    )


def test_a_lost_answer_from_a_deduplicating_target_is_retried_with_one_effect(
    allowed: Harness, behind_proxy: FaultyProxy, tmp_path: Path
) -> None:
    deduplicating = McpTarget("--dedupe")
    behind_proxy.upstream = deduplicating.url
    try:
        behind_proxy.add_faults(Fault("hold"))
        with allowed.client() as client:
            add_target(client, behind_proxy.url, deduplicates=True)
            map_action(client)
            status = run_ticket(allowed, client)
        assert status["status"] == "SUCCEEDED", status
        assert status["external_object_refs"][0]["object_id"] == "T-1"
        stats = deduplicating.stats()
        assert stats["calls"] == {"create_ticket": 2}  # the retry, with the same key...
        assert stats["effects"] == 1  # ...wrote nothing new
    finally:
        deduplicating.stop()


def test_a_call_refused_before_the_target_saw_it_is_retried_even_without_deduplication(
    allowed: Harness, target: McpTarget, behind_proxy: FaultyProxy
) -> None:
    behind_proxy.add_faults(Fault("status_before", status=503))
    with allowed.client() as client:
        add_target(client, behind_proxy.url, deduplicates=False)
        map_action(client)
        status = run_ticket(allowed, client)
    assert status["status"] == "SUCCEEDED", status
    assert behind_proxy.state.tool_calls_seen == 2
    assert target.calls() == 1


def test_a_call_in_flight_when_its_process_stopped_is_never_sent_again(
    allowed: Harness, target: McpTarget
) -> None:
    with allowed.client() as client:
        add_target(client, target.url)
        map_action(client)
        intent_id = allowed.create_intent(client, action_type="CREATE_TICKET", parameters={"title": "x"})[
            "action_intent_id"
        ]
        # What InvokeTool leaves behind when its process dies after sending and before the answer.
        with allowed.db.write() as conn:
            target_store.mark_remote_call(
                conn,
                tenant_id="t1",
                account_id="acc-1",
                action_intent_id=intent_id,
                attempt_count=1,
                tool_name="tickets.create_ticket",
                idempotency_key="k" * 64,
                now="2026-01-01T00:00:00.000Z",
            )
        allowed.approve(client, intent_id)
        status = allowed.wait_terminal(client, intent_id)
    assert status["status"] == "AMBIGUOUS", status
    assert status["error_code"] == "UNKNOWN_OUTCOME"
    assert "in flight" in status["error_message"]
    assert target.calls() == 0
    assert [e.event_type for e in ledger(allowed, intent_id)].count("OUTCOME_UNKNOWN") == 1


# --- credentials ---------------------------------------------------------------------------------


def test_bearer_credentials_work_and_never_appear_in_answers_or_logs(
    allowed: Harness, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    protected = McpTarget("--token", BEARER)
    try:
        with allowed.client() as client:
            wrong = client.post(
                "/admin/gateway/targets",
                json={"name": "tickets", "url": protected.url, "auth": {"type": "bearer", "token": "not-it"}},
            )
            problem(wrong, 422, "TARGET_HTTP_401")
            added = client.post(
                "/admin/gateway/targets",
                json={"name": "tickets", "url": protected.url, "auth": {"type": "bearer", "token": BEARER}},
            )
            assert added.status_code == 201, added.text
            assert added.json()["auth"]["type"] == "bearer"
            map_action(client)
            status = run_ticket(allowed, client)
            assert status["status"] == "SUCCEEDED", status
            answers = [
                added.text,
                client.get("/admin/gateway/targets").text,
                client.post("/admin/gateway/targets/tickets/sync").text,
                client.get(f"/executions/{status['action_intent_id']}/timeline").text,
                client.get("/openapi.json").text,
            ]
        assert protected.calls() == 1
    finally:
        protected.stop()
    for text in answers:
        assert BEARER not in text
    with allowed.db.read() as conn:
        stored = [dict(row._mapping) for row in conn.execute(select(gateway_target_secrets)).all()]
    assert len(stored) == 1
    assert BEARER not in json.dumps(stored, default=str)  # sealed, never plaintext
    assert stored[0]["secret"]["sealed"].startswith("v1.")
    assert BEARER not in caplog.text
    captured = capfd.readouterr()
    assert BEARER not in captured.out + captured.err


def test_oauth_client_credentials_fetch_a_token_and_reuse_it_until_shortly_before_it_expires(
    allowed: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    # The token cache's clock is moved forward by hand (a slow machine must not make a 60 s
    # token look expired, nor the test wait for it): a data descriptor on the class wins over
    # the clock each instance keeps.
    ahead = [0.0]
    monkeypatch.setattr(
        OAuthTokens,
        "_clock",
        property(lambda _self: lambda: time.monotonic() + ahead[0], lambda _self, _value: None),
        raising=False,
    )
    protected = McpTarget("--oauth", f"svc-client:{OAUTH_SECRET}", "--token-lifetime", "60")
    auth = {
        "type": "oauth_client_credentials",
        "token_url": f"{protected.base}/oauth/token",
        "client_id": "svc-client",
        "client_secret": OAUTH_SECRET,
        "scope": "tickets.write",
    }
    try:
        with allowed.client() as client:
            refused = client.post(
                "/admin/gateway/targets",
                json={"name": "tickets", "url": protected.url, "auth": {**auth, "client_secret": "wrong"}},
            )
            problem(refused, 422, "TARGET_TOKEN_REFUSED")
            added = client.post(
                "/admin/gateway/targets", json={"name": "tickets", "url": protected.url, "auth": auth}
            )
            assert added.status_code == 201, added.text
            assert added.json()["auth"] == {
                "type": "oauth_client_credentials",
                "token_url": f"{protected.base}/oauth/token",
                "client_id": "svc-client",
                "scope": "tickets.write",
                "audience": None,
            }
            assert protected.stats()["token_requests"] == 2  # the refused one, then one token
            map_action(client)
            # The token fetched at registration (lifetime 60 s) serves the next calls...
            assert run_ticket(allowed, client, "one")["status"] == "SUCCEEDED"
            assert run_ticket(allowed, client, "two")["status"] == "SUCCEEDED"
            assert protected.stats()["token_requests"] == 2
            # ...until shortly before it expires (a tenth of its lifetime before): then a new one.
            ahead[0] = 54.5
            assert run_ticket(allowed, client, "three")["status"] == "SUCCEEDED"
            listing = client.get("/admin/gateway/targets").text
        stats = protected.stats()
        assert stats["calls"] == {"create_ticket": 3}
        assert stats["token_requests"] == 3
        assert stats["unauthorized"] == 0
    finally:
        protected.stop()
    assert OAUTH_SECRET not in added.text + listing
    assert OAUTH_SECRET not in caplog.text


def test_credentials_need_https_unless_the_host_is_allowed(harness: Harness) -> None:
    with harness.client() as client:
        response = client.post(
            "/admin/gateway/targets",
            json={"name": "t", "url": "http://example.com/mcp", "auth": {"type": "bearer", "token": BEARER}},
        )
        body = problem(response, 422, "INSECURE_TARGET_AUTH")
    assert BEARER not in json.dumps(body)


# --- other processes see the targets -------------------------------------------------------------


def test_a_target_added_from_the_cli_is_served_by_the_running_service_without_restart(
    allowed: Harness, target: McpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from fulfill.cli import app

    monkeypatch.setenv("FULFILL_DATABASE_URL", allowed.settings.database_url)
    monkeypatch.setenv("FULFILL_GATEWAY_EGRESS_ALLOW", "127.0.0.1")
    monkeypatch.setenv("TICKETS_TOKEN", "unused-token-value")
    monkeypatch.setenv("COLUMNS", "200")
    cli = CliRunner()
    added = cli.invoke(app, ["gateway", "add", "tickets", target.url, "--no-deduplicates"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["name"] == "tickets"
    listed = cli.invoke(app, ["gateway", "list"])
    assert listed.exit_code == 0
    assert "tickets.create_ticket" in listed.output
    again = cli.invoke(app, ["gateway", "add", "tickets", target.url])
    assert again.exit_code == 1
    assert "TARGET_EXISTS" in again.output

    # The service learns of it without a restart (its catalog follows the stored revision).
    wait_for(lambda: allowed.service.runtime.tool_schemas.get("tickets.create_ticket"), timeout=10)
    with allowed.client() as client:
        map_action(client)
        assert run_ticket(allowed, client)["status"] == "SUCCEEDED"
    assert target.calls() == 1

    target.add_tool("close_ticket")
    synced = cli.invoke(app, ["gateway", "sync", "tickets"])
    assert synced.exit_code == 0
    assert "tickets.close_ticket" in synced.output
    removed = cli.invoke(app, ["gateway", "remove", "tickets"])
    assert removed.exit_code == 0, removed.output
    wait_for(lambda: allowed.service.runtime.tool_schemas.get("tickets.create_ticket") is None, timeout=10)
    assert cli.invoke(app, ["gateway", "remove", "tickets"]).exit_code == 1


def test_connectors_list_names_the_gateway_targets_on_the_database_and_through_the_api(
    allowed: Harness, target: McpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from fulfill.cli import app

    with allowed.client() as client:
        add_target(client, target.url)
    monkeypatch.setenv("FULFILL_DATABASE_URL", allowed.settings.database_url)
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.delenv("FULFILL_URL", raising=False)
    monkeypatch.delenv("FULFILL_TOKEN", raising=False)
    cli = CliRunner()
    on_database = cli.invoke(app, ["connectors", "list"])
    assert on_database.exit_code == 0, on_database.output
    assert "tickets" in on_database.stdout
    assert "internal" in on_database.stdout
    # Through the API of the running service, which serves the target's tools.
    wait_for(lambda: allowed.service.runtime.tool_schemas.get("tickets.create_ticket"), timeout=10)
    through_api = cli.invoke(app, ["connectors", "list", "--json", "--url", allowed.url])
    assert through_api.exit_code == 0, through_api.output
    assert through_api.stderr.startswith(f"service: {allowed.url}")
    assert {"tickets", "internal"} <= {item["name"] for item in json.loads(through_api.stdout)}


def test_every_process_of_a_deployment_serves_the_same_targets(tmp_path: Path, target: McpTarget) -> None:
    """An api process takes the admin calls; a separate worker process runs the executions, with
    its own gateway, and follows every change of the targets without a restart."""
    settings = make_settings(
        tmp_path, role="api", gateway_egress_allow=["127.0.0.1"], gateway_targets_refresh_seconds=0.5
    )
    api = Harness(settings).start()
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": settings.database_url,
        "FULFILL_ROLE": "worker",
        "FULFILL_PORT": str(free_port()),
        "FULFILL_EXECUTOR_ID": "targets-worker",
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_GATEWAY_EGRESS_ALLOW": "127.0.0.1",
        "FULFILL_GATEWAY_TARGETS_REFRESH_SECONDS": "0.5",
        "FULFILL_RETRY_BACKOFF_BASE_SECONDS": "0.05",
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    worker = start_serve(env, tmp_path / "worker.log")
    try:
        with api.client() as client:
            add_target(client, target.url)
            map_action(client)
            assert run_ticket(api, client)["status"] == "SUCCEEDED"
            assert target.calls() == 1

            target.add_tool("close_ticket")
            assert client.post("/admin/gateway/targets/tickets/sync").status_code == 200
            response = client.post(
                "/admin/registry",
                json={
                    "action_type": "CLOSE_TICKET",
                    "tool_name": "tickets.close_ticket",
                    "parameter_mapping": {"ticket": {"toolParam": "ticket_id", "required": True}},
                },
            )
            assert response.status_code == 201, response.text
            closed = api.run_task(client, action_type="CLOSE_TICKET", parameters={"ticket": "T-1"})
            assert closed["status"] == "SUCCEEDED", closed
            assert target.calls("close_ticket") == 1

            assert client.delete("/admin/gateway/targets/tickets").status_code == 204
            intent = api.create_intent(client, action_type="CREATE_INTERNAL_TASK")
            api.approve(client, intent["action_intent_id"])
            assert api.wait_terminal(client, intent["action_intent_id"])["status"] == "SUCCEEDED"
            refused = client.post(
                "/intents",
                json={"action_type": "CREATE_TICKET", "account_id": "acc-1", "parameters": {"title": "x"}},
            )
            problem(refused, 422, "UNKNOWN_TOOL")
    finally:
        stop_all([worker])
        api.stop()


def test_a_lost_secrets_key_names_the_way_out_at_start_up_and_the_way_works(
    allowed: Harness, target: McpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the old FULFILL_SECRETS_KEY the service refuses to start; its error names the
    commands that get out (removing what the lost key sealed), and they work without that key."""
    from typer.testing import CliRunner

    from fulfill.cli import app
    from fulfill.credentials.vault import ConfigurationError
    from tests.integration.test_credentials_api import CREDENTIAL, _prepare
    from tests.support.salesforce import OTHER_SECRETS_KEY

    with allowed.client() as client:
        add_target(client, target.url, auth={"type": "bearer", "token": BEARER})
    with allowed.client(tenant="t-lost", scopes=["admin"]) as client:
        assert client.put("/admin/credentials/salesforce", json=CREDENTIAL).status_code == 201
        assert (
            client.put("/admin/credentials/salesforce?account_id=acc-9", json=CREDENTIAL).status_code == 201
        )
    for lost in ("", OTHER_SECRETS_KEY):  # unset, or replaced by a new key
        with pytest.raises(ConfigurationError) as refused:
            _prepare(allowed, lost)
        message = str(refused.value)
        assert "fulfill credentials delete salesforce --tenant t-lost`" in message
        assert "fulfill credentials delete salesforce --tenant t-lost --account acc-9`" in message
        assert "fulfill gateway remove tickets`" in message
        assert BEARER not in message
    # The named way out, with the new key only.
    monkeypatch.setenv("FULFILL_DATABASE_URL", allowed.settings.database_url)
    monkeypatch.setenv("FULFILL_SECRETS_KEY", OTHER_SECRETS_KEY)
    cli = CliRunner()
    for command in (
        ["credentials", "delete", "salesforce", "--tenant", "t-lost"],
        ["credentials", "delete", "salesforce", "--tenant", "t-lost", "--account", "acc-9"],
        ["gateway", "remove", "tickets"],
    ):
        result = cli.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    _prepare(allowed, OTHER_SECRETS_KEY)  # starts


def test_target_credentials_are_refused_without_a_secrets_key(tmp_path: Path, target: McpTarget) -> None:
    settings = make_settings(tmp_path, gateway_egress_allow=["127.0.0.1"])
    running = Harness(settings).start()
    try:
        with running.client() as client:
            refused = client.post(
                "/admin/gateway/targets",
                json={"name": "tickets", "url": target.url, "auth": {"type": "bearer", "token": BEARER}},
            )
            problem(refused, 422, "SECRETS_KEY_NOT_CONFIGURED")
            assert client.get("/admin/gateway/targets").json()["targets"] == []
    finally:
        running.stop()
    assert target.calls() == 0


def test_the_cli_without_a_secrets_key_says_what_to_set_and_no_restart(
    tmp_path: Path, target: McpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from fulfill.cli import app

    settings = make_settings(tmp_path, gateway_egress_allow=["127.0.0.1"])
    running = Harness(settings).start()
    try:
        monkeypatch.setenv("FULFILL_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("FULFILL_GATEWAY_EGRESS_ALLOW", "127.0.0.1")
        monkeypatch.delenv("FULFILL_SECRETS_KEY", raising=False)
        monkeypatch.setenv("TICKETS_TOKEN", BEARER)
        result = CliRunner().invoke(
            app, ["gateway", "add", "tickets", target.url, "--bearer-token-env", "TICKETS_TOKEN"]
        )
        assert result.exit_code == 1
        output = " ".join(result.output.split())
        assert "SECRETS_KEY_NOT_CONFIGURED" in output
        assert "set FULFILL_SECRETS_KEY" in output
        assert "and restart" not in output  # the command reads it at once
    finally:
        running.stop()
