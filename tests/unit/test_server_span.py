"""The request's server span: OpenTelemetry's middleware while spans are recorded, only the span's
trace context otherwise (the same trace a caller's ``traceparent`` names)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.span import format_trace_id
from opentelemetry.util.http import parse_excluded_urls

from fulfill import tracing
from fulfill.api.middleware import ServerSpanWhenRecording
from tests.support.http_doubles import run_asgi

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class _Inner:
    """The application: answers 200 and notes the span current while it ran."""

    def __init__(self) -> None:
        self.seen: list[trace.SpanContext] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append(trace.get_current_span().get_span_context())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


def _middleware() -> tuple[ServerSpanWhenRecording, _Inner, list[str]]:
    named: list[str] = []

    def span_details(scope: Any) -> tuple[str, dict[str, str]]:
        named.append(scope["path"])  # what OpenTelemetry's middleware does first for each span
        return f"{scope['method']} {scope['path']}", {}

    inner = _Inner()
    traced = OpenTelemetryMiddleware(
        inner,
        excluded_urls=parse_excluded_urls("/healthz"),
        default_span_details=span_details,
        tracer=tracing.tracer(),
        exclude_spans=["receive", "send"],
    )
    return ServerSpanWhenRecording(traced), inner, named


def _request(app: Any, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *(headers or [])],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    return run_asgi(app, scope)


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    tracing.add_span_processor(processor)
    yield exporter
    tracing.remove_span_processor(processor)


@pytest.fixture(autouse=True)
def _installed() -> None:
    tracing.install("all")


def test_unrecorded_the_span_joins_the_callers_trace_without_opentelemetrys_middleware() -> None:
    assert not tracing.recording()
    app, inner, named = _middleware()
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01".encode()
    sent = _request(app, "/intents/ai_1/approve", [(b"traceparent", traceparent)])
    assert sent[0]["status"] == 200
    assert named == []  # OpenTelemetry's middleware did not run
    [joined] = inner.seen
    assert joined.is_valid
    assert format_trace_id(joined.trace_id) == CALLER_TRACE
    assert f"{joined.span_id:016x}" != CALLER_SPAN  # a span of its own, in the caller's trace
    _request(app, "/executions/ai_1/status")
    own = inner.seen[1]
    assert own.is_valid
    assert format_trace_id(own.trace_id) != CALLER_TRACE  # no traceparent: a new trace
    assert trace.get_current_span().get_span_context().is_valid is False  # nothing left attached


def test_unrecorded_an_excluded_path_gets_no_span() -> None:
    app, inner, named = _middleware()
    _request(app, "/healthz")
    assert named == []
    assert not inner.seen[0].is_valid


def test_recorded_the_request_goes_through_opentelemetrys_middleware(exported: InMemorySpanExporter) -> None:
    assert tracing.recording()
    app, inner, named = _middleware()
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01".encode()
    _request(app, "/intents/ai_1/approve", [(b"traceparent", traceparent)])
    assert named == ["/intents/ai_1/approve"]
    [span] = exported.get_finished_spans()
    assert span.name == "GET /intents/ai_1/approve"
    assert span.kind is trace.SpanKind.SERVER
    assert span.context is not None
    assert format_trace_id(span.context.trace_id) == CALLER_TRACE
    assert inner.seen[0].span_id == span.context.span_id
