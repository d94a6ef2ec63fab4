"""The tracing module: ids without export, recording only while something receives spans, the
W3C trace context of an execution, and the trace id in every log line."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.span import format_trace_id

from fulfill import tracing
from fulfill.config import Settings, traces_endpoint
from fulfill.logging_setup import build_handler, log_context


@pytest.fixture(autouse=True)
def installed() -> None:
    tracing.install("all")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    collected = InMemorySpanExporter()
    processor = SimpleSpanProcessor(collected)
    tracing.add_span_processor(processor)
    yield collected
    tracing.remove_span_processor(processor)


def test_without_a_receiver_spans_have_ids_but_are_not_recorded() -> None:
    assert not tracing.recording()
    with tracing.span("outer") as outer, tracing.span("inner") as inner:
        assert not outer.is_recording()
        assert outer.get_span_context().is_valid
        assert inner.get_span_context().trace_id == outer.get_span_context().trace_id
        assert tracing.current_trace_id() == format_trace_id(outer.get_span_context().trace_id)
    assert tracing.current_trace_id() is None


def test_the_tracer_is_made_once_and_records_for_a_receiver_added_later() -> None:
    made = tracing.tracer()
    assert tracing.tracer() is made
    collected = InMemorySpanExporter()
    processor = SimpleSpanProcessor(collected)
    tracing.add_span_processor(processor)
    try:
        with tracing.span("after"):
            pass
    finally:
        tracing.remove_span_processor(processor)
    assert [span.name for span in collected.get_finished_spans()] == ["after"]


def test_with_a_receiver_spans_are_recorded_with_their_parents(exporter: InMemorySpanExporter) -> None:
    assert tracing.recording()
    with tracing.span("outer") as outer, tracing.span("inner", attributes={"fulfill.attempt": 2}):
        pass
    inner, outer_finished = exporter.get_finished_spans()
    assert outer_finished.name == "outer"
    assert inner.parent is not None
    assert inner.parent.span_id == outer.get_span_context().span_id
    assert dict(inner.attributes or {}) == {"fulfill.attempt": 2}


def test_an_execution_joins_the_current_trace_and_its_context_comes_back(
    exporter: InMemorySpanExporter,
) -> None:
    with tracing.span("approve") as approve:
        trace_id, traceparent = tracing.execution_trace()
    assert trace_id == format_trace_id(approve.get_span_context().trace_id)
    assert traceparent.split("-")[1] == trace_id
    with tracing.span("workflow", parent=tracing.context_from(traceparent)):
        pass
    workflow = next(s for s in exporter.get_finished_spans() if s.name == "workflow")
    assert workflow.parent is not None
    assert workflow.parent.span_id == approve.get_span_context().span_id


def test_an_execution_outside_any_span_gets_a_new_trace() -> None:
    first, second = tracing.execution_trace(), tracing.execution_trace()
    assert first[0] != second[0]
    assert len(first[0]) == 32
    assert first[1] == f"00-{first[0]}-{first[1].split('-')[2]}-01"
    assert tracing.context_from(first[1]) is not None


@pytest.mark.parametrize("value", [None, "", "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"])
def test_an_unusable_traceparent_gives_no_parent(value: str | None) -> None:
    assert tracing.context_from(value) is None


def test_outgoing_headers_carry_the_current_span() -> None:
    assert tracing.inject_headers({}) == {}
    with tracing.span("call") as call:
        headers = tracing.inject_headers({"Accept": "application/json"})
    assert headers["traceparent"].split("-")[2] == format(call.get_span_context().span_id, "016x")
    assert tracing.context_from_headers(headers) is not None
    assert tracing.context_from_headers({}) is None


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_lines_carry_the_current_trace_id(log_format: str) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("fulfill.test.tracing")
    handler = build_handler(log_format, stream=stream)  # type: ignore[arg-type]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with tracing.span("request") as request:
            logger.info("in a request")
            with log_context(trace_id="explicit"):
                logger.info("in an execution's context")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    expected = format_trace_id(request.get_span_context().trace_id)
    if log_format == "json":
        assert [json.loads(line).get("trace_id") for line in lines] == [expected, "explicit", None]
    else:
        assert f"trace_id={expected}" in lines[0]
        assert "trace_id=explicit" in lines[1]
        assert "trace_id" not in lines[2]


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        ("", {}, ""),
        ("  ", {}, ""),
        ("http://collector:4318", {}, "http://collector:4318/v1/traces"),
        ("http://collector:4318/", {}, "http://collector:4318/v1/traces"),
        ("http://collector:4318/v1/traces", {}, "http://collector:4318/v1/traces"),
        ("", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}, "http://otel:4318/v1/traces"),
        ("", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel:4318/custom"}, "http://otel:4318/custom"),
        (
            "http://mine:4318",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"},
            "http://mine:4318/v1/traces",
        ),
    ],
)
def test_the_traces_endpoint(configured: str, environ: dict[str, str], expected: str) -> None:
    assert traces_endpoint(configured, environ) == expected


def test_export_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "FULFILL_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    assert Settings().otlp_traces_endpoint == ""
    monkeypatch.setenv("FULFILL_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert Settings().otlp_traces_endpoint == "http://127.0.0.1:4318/v1/traces"


def test_the_process_provider_keeps_each_tracer_it_made(exporter: InMemorySpanExporter) -> None:
    """DBOS asks for its tracer at every span; the provider answers from what it made before,
    without the SDK's per-call work (which also reset the process's warning filters)."""
    provider = trace.get_tracer_provider()
    assert isinstance(provider, tracing._TracerProvider)
    first = trace.get_tracer("dbos-tracer")
    filters = list(warnings.filters)
    with warnings.catch_warnings():
        # The SDK's own path inserts (or moves) a filter at every call; this one must not.
        warnings.resetwarnings()
        assert trace.get_tracer("dbos-tracer") is first
        assert warnings.filters == []
    assert list(warnings.filters) == filters
    assert trace.get_tracer("dbos-tracer", "1.0") is not first
    # Asked for with attributes, a tracer comes from the SDK's own path, and records as well.
    with trace.get_tracer("dbos-tracer", attributes={"a": 1}).start_span("with attributes"):
        pass
    with first.start_span("dbos span"):
        pass
    finished = exporter.get_finished_spans()
    assert [span.name for span in finished] == ["with attributes", "dbos span"]
    assert {span.instrumentation_scope.name for span in finished} == {"dbos-tracer"}
