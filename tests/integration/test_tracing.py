"""Tracing end to end: one trace per execution, from the approving request to the external call.

Spans are collected in memory (an in-memory exporter attached to the process's tracer provider)
from a real service: the API request that approves the intent is the root; the DBOS workflow and
every step descend from it, although the workflow runs later, from the queue (or is started by
the reconciler, or forked after a failure); below InvokeTool come the gateway's ``tools/call``
(client and server spans), the connector and its HTTP request to a Salesforce-compatible server
on 127.0.0.1. The ledger and the log lines of the execution carry the trace id. OTLP export goes
to a real OTLP/HTTP receiver when configured, and nowhere when not.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.span import format_trace_id

from fulfill import tracing
from fulfill.engine import intake
from fulfill.engine.reconciler import reconcile_once
from fulfill.logging_setup import build_handler
from fulfill.store import executions
from fulfill.store.tables import execution_attempts
from fulfill_tools.dev.salesforce import DevSalesforce, DevSalesforceServer
from tests.support.harness import JWT_SHAPE, Harness, approved_event, make_settings
from tests.support.http_doubles import FaultyProxy, wait_for
from tests.support.outages import database_down
from tests.support.salesforce import CLIENT_ID, CLIENT_SECRET, SECRETS_KEY, dev_config
from tests.support.serving import serve_in_thread

WORKFLOW = "fulfill.execute_intent"
STEPS_OF_THE_WORKFLOW = ("PrepareToolCall", "InvokeTool", "RecordOutcome")
# The entries of the decision on the intent, written under its decision trace, not the execution's.
DECISION_ENTRIES = frozenset({"POLICY_EVALUATED", "ACTION_APPROVED"})
STEPS_OF_PREPARE = ("StartExecution", "ValidatePreflight", "MapActionToTool")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    tracing.add_span_processor(processor)
    yield exporter
    tracing.remove_span_processor(processor)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the service logs, as JSON lines, through the service's own handler."""
    stream = io.StringIO()
    handler = build_handler("json", stream=stream)
    logger = logging.getLogger("fulfill")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def dev() -> Iterator[DevSalesforceServer]:
    server = DevSalesforceServer(DevSalesforce(dev_config())).start()
    yield server
    server.stop()


def _salesforce_service(tmp_path: Path, dev: DevSalesforceServer, **overrides: Any) -> Harness:
    settings = make_settings(
        tmp_path,
        secrets_key=SECRETS_KEY,
        salesforce_login_url=dev.url,
        salesforce_timeout_seconds=2.0,
        gateway_egress_allow=["127.0.0.1"],
        **overrides,
    )
    running = Harness(settings).start()
    with running.client(scopes=["admin"]) as client:
        response = client.put(
            "/admin/credentials/salesforce",
            json={"type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        )
        assert response.status_code == 201, response.text
    return running


# --- the span tree --------------------------------------------------------------------------------


def _trace_of(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [
        s for s in exporter.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id
    ]


def _request_span(exporter: InMemorySpanExporter, route: str) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.name == route and s.kind is SpanKind.SERVER]
    return span


def _one(spans: list[ReadableSpan], name: str, kind: SpanKind | None = None) -> ReadableSpan:
    found = [s for s in spans if s.name == name and (kind is None or s.kind is kind)]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def _execution_trace(exporter: InMemorySpanExporter, route: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The approving request's span and every span of its trace, once the workflow has ended."""
    root = _request_span(exporter, route)
    assert root.context is not None
    trace_id = root.context.trace_id
    wait_for(lambda: any(s.name == WORKFLOW for s in _trace_of(exporter, trace_id)))
    return root, _trace_of(exporter, trace_id)


def _check_engine_tree(root: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan:
    """Root → workflow → its steps → PrepareToolCall's three; returns the InvokeTool span."""
    assert root.parent is None
    workflow = _one(spans, WORKFLOW)
    assert _parent_of(workflow) == _span_id(root)
    steps = {name: _one(spans, name) for name in STEPS_OF_THE_WORKFLOW}
    for step in steps.values():
        assert _parent_of(step) == _span_id(workflow)
    for name in STEPS_OF_PREPARE:
        assert _parent_of(_one(spans, name)) == _span_id(steps["PrepareToolCall"])
    return steps["InvokeTool"]


def _check_gateway_tree(
    spans: list[ReadableSpan], invoke: ReadableSpan, tool: str, connector_name: str
) -> ReadableSpan:
    """InvokeTool → gateway.call (the engine's side) → the MCP server's tools/call (the MCP SDK's
    span) → the gateway's guard → the connector; returns the connector's span."""
    gateway_call = _one(spans, f"gateway.call {tool}")
    assert _parent_of(gateway_call) == _span_id(invoke)
    mcp_server = _one(spans, f"tools/call {tool}", SpanKind.SERVER)
    assert _descends(spans, mcp_server, gateway_call)
    guard = _one(spans, f"gateway.guard {tool}")
    assert _parent_of(guard) == _span_id(mcp_server)
    connector = _one(spans, f"connector {connector_name}")
    assert _parent_of(connector) == _span_id(guard)
    return connector


def _descends(spans: list[ReadableSpan], span: ReadableSpan, ancestor: ReadableSpan) -> bool:
    by_id = {_span_id(s): s for s in spans}
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        if current.parent.span_id == _span_id(ancestor):
            return True
        current = by_id.get(current.parent.span_id)
    return False


def _url(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("url.full") or attributes.get("http.url") or "")


def _all_attribute_text(spans: list[ReadableSpan]) -> str:
    return json.dumps([{k: str(v) for k, v in (s.attributes or {}).items()} for s in spans])


def test_one_trace_from_the_approving_request_to_the_external_http_call(
    tmp_path: Path, dev: DevSalesforceServer, spans: InMemorySpanExporter, log_lines: io.StringIO
) -> None:
    served = _salesforce_service(tmp_path, dev)
    try:
        with served.client() as client:
            intent = served.create_intent(
                client, action_type="CREATE_CRM_TASK", parameters={"title": "Call Ada", "priority": "high"}
            )
            intent_id = intent["action_intent_id"]
            served.approve(client, intent_id)
            status = served.wait_terminal(client, intent_id)
            timeline = client.get(f"/executions/{intent_id}/timeline").json()
        assert status["status"] == "SUCCEEDED", status
        root, trace = _execution_trace(spans, "POST /intents/{action_intent_id}/approve")
        invoke = _check_engine_tree(root, trace)

        # Below InvokeTool: the gateway (client and server side), the connector, the HTTP calls.
        connector = _check_gateway_tree(trace, invoke, "crm.create_task", "crm")
        http_calls = {_url(s): s for s in trace if s.kind is SpanKind.CLIENT and _url(s)}
        assert f"{dev.url}/services/data/v62.0/sobjects/Task/" in http_calls, list(http_calls)
        for url, span in http_calls.items():  # every external request hangs below the connector
            assert url.startswith(dev.url)
            assert _descends(trace, span, connector), url

        # No token or secret in any span.
        text = _all_attribute_text(spans.get_finished_spans())
        assert "authorization" not in text.lower()
        assert "Bearer" not in text
        assert JWT_SHAPE.search(text) is None  # no JWT (user or service token)
        for secret in [CLIENT_SECRET, served.settings.jwt_secret, *dev.dev.issued]:
            assert secret not in text

        # The ledger: every entry the execution wrote carries the trace id, as the timeline shows.
        assert root.context is not None
        trace_id = format_trace_id(root.context.trace_id)
        with served.db.read() as conn:
            ledger = executions.list_ledger(conn, "t1", intent_id)
            attempt = executions.get_attempt(conn, "t1", "acc-1", intent_id)
        assert attempt is not None
        assert attempt.trace_id == trace_id
        written = [e for e in ledger if e.event_type not in DECISION_ENTRIES]
        assert {e.event_type for e in written} >= {"EXECUTION_STARTED", "ACTION_EXECUTED", "SIGNAL"}
        assert {e.trace_id for e in written} == {trace_id}
        [started] = [e for e in timeline["entries"] if e["event_type"] == "EXECUTION_STARTED"]
        assert started["data"]["trace_id"] == trace_id

        # The log lines of the execution carry it: the API's (accepted) and the worker's (ended).
        lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
        mine = [line for line in lines if line.get("action_intent_id") == intent_id]
        assert {line["message"].split(" (")[0] for line in mine} >= {
            "execution accepted",
            "execution ended SUCCEEDED",
        }
        assert {line["trace_id"] for line in mine} == {trace_id}
    finally:
        served.stop()


def test_the_http_gateway_carries_the_trace_and_post_events_is_the_root(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    proxy = FaultyProxy()
    served = Harness(make_settings(tmp_path, gateway_url=proxy.url))
    proxy.upstream = f"{served.url}/mcp"
    served.start()
    try:
        with served.client() as client:
            intent_id = served.create_intent(
                client, approval={"approved_by": "upstream", "approval_timestamp": "2026-01-01T00:00:00Z"}
            )["action_intent_id"]
            assert client.post("/events", json=approved_event(intent_id)).status_code == 202
            assert served.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
        root, trace = _execution_trace(spans, "POST /events")
        invoke = _check_engine_tree(root, trace)
        # Over HTTP (through the proxy) only the requests carry the trace: the traceparent header
        # (the HTTP server's spans) and the MCP request's _meta (the MCP server's span).
        _check_gateway_tree(trace, invoke, "internal.create_task", "internal")
        gateway_call = _one(trace, "gateway.call internal.create_task")
        http_servers = [s for s in trace if s.name == "POST /mcp" and s.kind is SpanKind.SERVER]
        assert http_servers
        for span in http_servers:
            assert _descends(trace, span, gateway_call)
        text = _all_attribute_text(spans.get_finished_spans())
        assert "authorization" not in text.lower()
        assert JWT_SHAPE.search(text) is None  # the service token of the /mcp request is nowhere
        assert proxy.state.tool_calls_forwarded == 1
    finally:
        proxy.close()
        served.stop()


# --- started late: the reconciler, a fork -----------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    running = Harness(make_settings(tmp_path, reconcile_grace_seconds=0)).start()
    yield running
    running.stop()


def test_a_workflow_the_reconciler_starts_joins_the_approving_requests_trace(
    service: Harness, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(_request: Any, **_options: Any) -> None:
        raise ConnectionError("the process died between the commit and the enqueue")

    monkeypatch.setattr(intake, "start_execution", lost)
    with service.client() as client:
        intent_id = service.create_intent(client)["action_intent_id"]
        service.approve(client, intent_id)
        wait_for(lambda: service.count(execution_attempts, action_intent_id=intent_id) == 1)
        monkeypatch.undo()
        assert reconcile_once(service.service.runtime) == 1  # from this thread: no span is current
        assert service.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    root, trace = _execution_trace(spans, "POST /intents/{action_intent_id}/approve")
    _check_engine_tree(root, trace)


def test_a_forked_workflow_keeps_the_original_trace_id(
    service: Harness, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbos import DBOS

    real = executions.begin_attempt
    monkeypatch.setattr(executions, "begin_attempt", database_down)
    with service.client() as client:
        intent_id = service.create_intent(client)["action_intent_id"]
        service.approve(client, intent_id)

        def failed() -> bool:
            with service.db.read() as conn:
                attempt = executions.get_attempt(conn, "t1", "acc-1", intent_id)
            status = DBOS.get_workflow_status(attempt.workflow_id) if attempt else None
            return status is not None and status.status == "ERROR"

        wait_for(failed, timeout=30)
        monkeypatch.setattr(executions, "begin_attempt", real)
        assert reconcile_once(service.service.runtime) == 1
        assert service.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    root = _request_span(spans, "POST /intents/{action_intent_id}/approve")
    assert root.context is not None
    trace_id = root.context.trace_id
    # The first run and the fork: two workflow spans, both children of the approving request.
    wait_for(lambda: len([s for s in _trace_of(spans, trace_id) if s.name == WORKFLOW]) == 2)
    trace = _trace_of(spans, trace_id)
    assert {_parent_of(s) for s in trace if s.name == WORKFLOW} == {_span_id(root)}
    assert len([s for s in trace if s.name == "RecordOutcome"]) == 1
    with service.db.read() as conn:
        ledger = executions.list_ledger(conn, "t1", intent_id)
    assert {e.trace_id for e in ledger if e.event_type not in DECISION_ENTRIES} == {format_trace_id(trace_id)}


# --- OTLP export ------------------------------------------------------------------------------------


class OtlpReceiver:
    """An OTLP/HTTP receiver on 127.0.0.1: records every POST /v1/traces."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.paths.append(self.path)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = serve_in_thread(self._server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def spans(self) -> list[tuple[str, str, dict[str, str]]]:
        """(trace id, span name, resource attributes) of every span received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    found += [(s.trace_id.hex(), s.name, resource) for s in scope.spans]
        return found

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver()
    yield running
    running.close()


@pytest.mark.parametrize("configured_by", ["FULFILL_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_spans_are_exported_over_otlp_when_an_endpoint_is_configured(
    tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, configured_by: str
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    if configured_by == "OTEL_EXPORTER_OTLP_ENDPOINT":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        settings = make_settings(tmp_path)
    else:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        settings = make_settings(tmp_path, otlp_endpoint=receiver.url)
    served = Harness(settings).start()
    try:
        assert tracing.recording()
        with served.client() as client:
            status = served.run_task(client)
        assert status["status"] == "SUCCEEDED"
        with served.db.read() as conn:
            attempt = executions.get_attempt(conn, "t1", "acc-1", status["action_intent_id"])
    finally:
        served.stop()  # sends what is left
    assert not tracing.recording()
    assert attempt is not None
    exported = [
        (name, resource) for trace_id, name, resource in receiver.spans() if trace_id == attempt.trace_id
    ]
    names = {name for name, _ in exported}
    assert {"POST /intents/{action_intent_id}/approve", WORKFLOW, *STEPS_OF_THE_WORKFLOW} <= names
    assert {"tools/call internal.create_task", "connector internal"} <= names
    assert set(receiver.paths) == {"/v1/traces"}
    assert {resource["service.name"] for _, resource in exported} == {"fulfill"}
    assert {resource["fulfill.role"] for _, resource in exported} <= {"all", "api", "worker"}


def test_nothing_is_recorded_without_an_endpoint_yet_executions_have_trace_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    served = Harness(make_settings(tmp_path)).start()
    try:
        assert not tracing.recording()
        with served.client() as client:
            status = served.run_task(client)
        assert status["status"] == "SUCCEEDED"
        with served.db.read() as conn:
            attempt = executions.get_attempt(conn, "t1", "acc-1", status["action_intent_id"])
            ledger = executions.list_ledger(conn, "t1", status["action_intent_id"])
    finally:
        served.stop()
    assert not tracing.tracer().start_span("probe").is_recording()
    assert attempt is not None
    assert len(attempt.trace_id) == 32
    assert int(attempt.trace_id, 16)
    assert attempt.traceparent is not None
    assert attempt.trace_id in attempt.traceparent
    assert {e.trace_id for e in ledger if e.event_type not in DECISION_ENTRIES} == {attempt.trace_id}


def test_without_an_endpoint_the_approving_requests_traceparent_still_names_the_executions_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO
) -> None:
    """Unrecorded, the request's server span still joins the caller's trace (W3C traceparent), as
    it does when spans are exported: the execution it approves, its ledger and the log lines of
    the request carry the caller's trace id; a request without one gets a trace of its own."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    served = Harness(make_settings(tmp_path)).start()
    try:
        assert not tracing.recording()
        with served.client() as client:
            joined = served.create_intent(client)["action_intent_id"]
            approved = served.colleague(client).post(
                f"/intents/{joined}/approve",
                headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"},
            )
            assert approved.status_code == 202, approved.text
            own = served.create_intent(client)["action_intent_id"]
            served.approve(client, own)
            for intent_id in (joined, own):
                assert served.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
        with served.db.read() as conn:
            attempts = {i: executions.get_attempt(conn, "t1", "acc-1", i) for i in (joined, own)}
            ledger = executions.list_ledger(conn, "t1", joined)
    finally:
        served.stop()
    first, second = attempts[joined], attempts[own]
    assert first is not None
    assert second is not None
    assert first.trace_id == caller_trace
    assert first.traceparent is not None
    assert first.traceparent.split("-")[1] == caller_trace
    assert first.traceparent.split("-")[2] != "00f067aa0ba902b7"  # a span of its own in that trace
    assert {e.trace_id for e in ledger if e.event_type not in DECISION_ENTRIES} == {caller_trace}
    assert len(second.trace_id) == 32
    assert second.trace_id != caller_trace
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    accepted = [
        line
        for line in lines
        if line.get("action_intent_id") == joined and line["message"].startswith("execution accepted")
    ]
    assert accepted
    assert {line["trace_id"] for line in accepted} == {caller_trace}


def test_a_workflow_run_after_a_restart_by_another_process_keeps_the_approving_trace(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """An API-only process accepts the approval and stops; a worker started later on the same
    database runs the queued workflow, in the trace of the request that approved it."""
    api_settings = make_settings(tmp_path, role="api")
    api = Harness(api_settings).start()
    try:
        with api.client() as client:
            intent_id = api.create_intent(client)["action_intent_id"]
            api.approve(client, intent_id)
        assert api.count(execution_attempts, action_intent_id=intent_id) == 1
        assert api.outcome_rows(intent_id) == 0
    finally:
        api.server.stop()  # the process ends; its database stays for the worker
    worker = Harness(make_settings(tmp_path, database_url=api_settings.database_url)).start()
    try:
        with worker.client() as client:
            assert worker.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
        root, trace = _execution_trace(spans, "POST /intents/{action_intent_id}/approve")
        _check_engine_tree(root, trace)
        assert root.context is not None
        with worker.db.read() as conn:
            ledger = executions.list_ledger(conn, "t1", intent_id)
        assert {e.trace_id for e in ledger if e.event_type not in DECISION_ENTRIES} == {
            format_trace_id(root.context.trace_id)
        }
    finally:
        worker.stop()
