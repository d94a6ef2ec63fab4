"""Input schemas from gateway targets are untrusted: they never make fulfill fetch a URL, their
patterns cannot stall the process, and parameters nested too deep are refused at the edge.

A real MCP target (``tests/support/mcp_target.py``) lists tools with hostile input schemas; a real
HTTP listener on 127.0.0.1 stands for the URL a ``$ref`` names and counts every connection to it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulfill.domain.schemas import MAX_PARAMETER_DEPTH, UntrustedSchema
from fulfill.store import targets as target_store
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import FaultyProxy
from tests.support.mcp_target import McpTarget
from tests.support.salesforce import SECRETS_KEY

pytestmark = pytest.mark.slow

TITLE_ONLY = {"title": {"toolParam": "title", "required": True}}


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections; it answers a minimal HTTP 200 with
    ``{}``, or, with ``hang``, never answers (until closed)."""

    def __init__(self, *, hang: bool) -> None:
        self.hits = 0
        self._hang = hang
        self._closed = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/schema.json"

    def _serve(self) -> None:
        held: list[socket.socket] = []
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self.hits += 1
            if self._hang:
                held.append(conn)  # read nothing, answer nothing
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            conn.close()
        for conn in held:
            conn.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path,
        gateway_egress_allow=["127.0.0.1"],
        gateway_targets_refresh_seconds=0.2,
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


@pytest.fixture
def answering() -> Iterator[Listener]:
    listener = Listener(hang=False)
    yield listener
    listener.close()


@pytest.fixture
def hanging() -> Iterator[Listener]:
    listener = Listener(hang=True)
    yield listener
    listener.close()


def add_target(client: httpx.Client, url: str) -> dict[str, Any]:
    response = client.post("/admin/gateway/targets", json={"name": "tickets", "url": url})
    assert response.status_code == 201, response.text
    return dict(response.json())


def map_action(client: httpx.Client, tool: str, mapping: dict[str, Any] | None = None) -> None:
    response = client.post(
        "/admin/registry",
        json={"action_type": "CREATE_TICKET", "tool_name": tool, "parameter_mapping": mapping or TITLE_ONLY},
    )
    assert response.status_code == 201, response.text


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body.get("code") == code, body
    return body


def ticket(title: str) -> dict[str, Any]:
    return {"action_type": "CREATE_TICKET", "account_id": "acc-1", "parameters": {"title": title}}


def with_schema(harness: Harness, tool: str, schema: dict[str, Any]) -> None:
    """Store ``schema`` as the tool's input schema, as an earlier discovery would have stored it."""
    with harness.db.write() as conn:
        stored = target_store.get_target(conn, "tickets")
        assert stored is not None
        tools = [
            spec.model_copy(update={"input_schema": schema}) if spec.name == tool else spec
            for spec in stored.tools
        ]
        assert target_store.replace_target(conn, stored.model_copy(update={"tools": tools}))


# --- 1: a $ref never makes fulfill fetch anything ----------------------------------------------


def test_a_tool_whose_schema_refers_to_a_url_is_skipped_and_the_url_is_never_fetched(
    service: Harness, target: McpTarget, answering: Listener
) -> None:
    target.add_tool(
        "fetching",
        {"type": "object", "properties": {"title": {"$ref": answering.url}}, "required": ["title"]},
    )
    target.add_tool(
        "local_refs",
        {
            "type": "object",
            "properties": {"title": {"$ref": "#/$defs/title"}},
            "required": ["title"],
            "$defs": {"title": {"type": "string", "maxLength": 50}},
        },
    )
    with service.client() as client:
        added = add_target(client, target.url)
        names = {tool["name"] for tool in added["tools"]}
        assert "tickets.fetching" not in names
        assert "tickets.local_refs" in names  # a $ref inside the schema itself is fine
        [reason] = [skipped for skipped in added["skipped_tools"] if skipped.startswith("fetching")]
        assert "$ref" in reason, reason
        assert "outside" in reason, reason
        response = client.post(
            "/admin/registry",
            json={
                "action_type": "CREATE_TICKET",
                "tool_name": "tickets.fetching",
                "parameter_mapping": TITLE_ONLY,
            },
        )
        problem(response, 422, "UNKNOWN_TOOL")
        map_action(client, "tickets.local_refs")
        problem(client.post("/intents", json=ticket("x" * 51)), 422, "INVALID_PARAMETERS")
        assert client.post("/intents", json=ticket("Printer on fire")).status_code == 201
    assert answering.hits == 0


def test_a_stored_schema_with_a_remote_ref_is_refused_without_fetching_and_delays_nobody(
    service: Harness, target: McpTarget, hanging: Listener
) -> None:
    with service.client() as client, service.client(tenant="t2") as other:
        add_target(client, target.url)
        map_action(client, "tickets.create_ticket")
        waiting = client.post("/intents", json=ticket("made before the schema changed"))
        assert waiting.status_code == 201, waiting.text
        # A schema stored before remote refs were refused at discovery.
        with_schema(
            service,
            "tickets.create_ticket",
            {"type": "object", "properties": {"title": {"$ref": hanging.url}}, "required": ["title"]},
        )
        time.sleep(0.5)  # past the catalog's refresh interval

        with ThreadPoolExecutor(max_workers=1) as pool:
            posted = pool.submit(client.post, "/intents", json=ticket("Printer on fire"))
            # While that request is checked, another tenant's work goes on.
            assert client.get("/healthz").status_code == 200
            other_task = service.run_task(other, parameters={"title": "another tenant's task"})
            body = problem(posted.result(timeout=25), 422, "UNCHECKABLE_SCHEMA")
        assert other_task["status"] == "SUCCEEDED"
        assert "outside" in body["detail"]

        # The gateway guard refuses the call whose schema it cannot check, without fetching.
        intent_id = waiting.json()["action_intent_id"]
        service.approve(client, intent_id)
        status = service.wait_terminal(client, intent_id)
        assert status["status"] == "FAILED", status
        assert status["error_code"] == "INVALID_TOOL_ARGUMENTS", status
    assert hanging.hits == 0
    assert target.calls("create_ticket") == 0


# --- 2: patterns from targets run under a bounded engine ---------------------------------------


@pytest.mark.parametrize(
    ("pattern", "code"),
    [
        # The probe's pattern: exponential for a backtracking engine, linear for the bounded one.
        ("^(a+)+$", "INVALID_PARAMETERS"),
        # Exponential for both: the bounded engine gives up within its budget.
        ("^(a|a)+$", "PATTERN_CHECK_TIMEOUT"),
    ],
)
def test_a_catastrophic_pattern_is_a_quick_422_and_stalls_nobody(
    service: Harness, target: McpTarget, pattern: str, code: str
) -> None:
    target.add_tool(
        "patterned",
        {
            "type": "object",
            "properties": {"title": {"type": "string", "pattern": pattern}},
            "required": ["title"],
        },
    )
    with service.client() as client:
        added = add_target(client, target.url)
        assert "tickets.patterned" in {tool["name"] for tool in added["tools"]}
        map_action(client, "tickets.patterned")
        assert client.post("/intents", json=ticket("aaaa")).status_code == 201
        problem(client.post("/intents", json=ticket("b")), 422, "INVALID_PARAMETERS")

        hostile = ticket("a" * 32 + "!")  # hours of backtracking for an unbounded engine
        with ThreadPoolExecutor(max_workers=1) as pool:
            posted = pool.submit(client.post, "/intents", json=hostile)
            started = time.monotonic()
            health = client.get("/healthz")
            health_seconds = time.monotonic() - started
            body = problem(posted.result(timeout=60), 422, code)
        assert health.status_code == 200
        # Generous: an unbounded engine holds the interpreter for hours on this value.
        assert health_seconds < 10, health_seconds
        assert "parameters.title" in body["detail"]


# --- 2b: where the gateway checks a call against its target's schema ---------------------------


@pytest.fixture
def over_http(tmp_path: Path) -> Iterator[Harness]:
    """A service whose engine calls its gateway over HTTP (through a relay), as a worker calls
    the api's: each call is checked by the gateway's HTTP endpoint, on its event loop's thread."""
    proxy = FaultyProxy()
    settings = make_settings(
        tmp_path,
        gateway_url=proxy.url,
        gateway_egress_allow=["127.0.0.1"],
        gateway_targets_refresh_seconds=0.2,
        gateway_call_timeout_seconds=10.0,
        secrets_key=SECRETS_KEY,
    )
    running = Harness(settings)
    proxy.upstream = f"{running.url}/mcp"
    running.start()
    yield running
    running.stop()
    proxy.close()


@pytest.mark.parametrize(
    ("schema", "on_the_loop"),
    [
        # The SDK's own listing of create_ticket(title, priority): a quick check, on the loop.
        (None, True),
        # A pattern (or a $ref, anyOf, ... or a value too big) is checked on a gateway thread.
        (
            {
                "type": "object",
                "properties": {"title": {"type": "string", "pattern": "^P"}},
                "required": ["title"],
            },
            False,
        ),
    ],
    ids=["quick", "pattern"],
)
def test_the_gateway_checks_a_quick_schema_on_its_loop_and_any_other_on_a_thread(
    over_http: Harness,
    target: McpTarget,
    monkeypatch: pytest.MonkeyPatch,
    schema: dict[str, Any] | None,
    on_the_loop: bool,
) -> None:
    checked_on: list[str] = []
    check = UntrustedSchema.errors

    def noting_the_thread(self: UntrustedSchema, instance: Any) -> list[Any]:
        checked_on.append(threading.current_thread().name)
        return check(self, instance)

    monkeypatch.setattr(UntrustedSchema, "errors", noting_the_thread)
    with over_http.client() as client:
        add_target(client, target.url)
        map_action(client, "tickets.create_ticket")
        if schema is not None:
            with_schema(over_http, "tickets.create_ticket", schema)
            time.sleep(0.5)  # past the catalog's refresh interval
        created = client.post("/intents", json=ticket("Printer on fire"))
        assert created.status_code == 201, created.text
        checked_on.clear()  # the intent's own check, at creation
        intent_id = created.json()["action_intent_id"]
        over_http.approve(client, intent_id)
        status = over_http.wait_terminal(client, intent_id)
    assert status["status"] == "SUCCEEDED", status
    assert target.calls("create_ticket") == 1
    # The HTTP server's thread runs its event loop; the gateway's threads have other names.
    assert ("fulfill-http" in checked_on) is on_the_loop, checked_on
    assert any(name != "fulfill-http" for name in checked_on) or on_the_loop, checked_on


# --- 16: parameters nested too deep ---------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [600, 900])
def test_parameters_nested_too_deep_are_a_422(service: Harness, depth: int) -> None:
    with service.client() as client:
        for body in (
            {
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x", "extra": nested(depth)},
            },
            {
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x", "extra": [nested(depth)]},
                "approval": {"approved_by": "someone", "approval_timestamp": "2026-01-01T00:00:00Z"},
            },
        ):
            body_problem = problem(client.post("/intents", json=body), 422, "PARAMETERS_TOO_DEEP")
            assert str(MAX_PARAMETER_DEPTH) in body_problem["detail"]
        # At the limit, parameters are accepted.
        deepest = {"title": "x", "extra": nested(MAX_PARAMETER_DEPTH - 1)}
        response = client.post(
            "/intents",
            json={"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": deepest},
        )
        assert response.status_code == 201, response.text
