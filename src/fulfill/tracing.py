"""Tracing: one OpenTelemetry trace per execution, exported over OTLP/HTTP when configured.

The request that approves an execution (``POST /intents/{id}/approve``, ``POST /events``, or a
rerun) is the root of its trace. Its W3C trace context is stored with the QUEUED attempt (the
execution lock) and handed to DBOS when the workflow is enqueued, so the workflow, each of its
steps, the gateway's ``tools/call`` (client and server), the connector and its external HTTP call
are descendants of that request, whichever process runs the workflow and however late (a queue,
the reconciler, recovery after a restart). The trace id is the execution's ``trace_id``: it is in
every ledger entry, outcome and signal of the execution, and in every log line.

One process-wide ``TracerProvider`` (:func:`install`). Export is off by default: spans are then
not recorded (the sampler drops them), but they still get trace and span ids, which propagate,
so the ledger and the logs carry a trace id either way; the cost is a span object per operation.
Export is on when an endpoint is configured (``FULFILL_OTLP_ENDPOINT``, else the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``): spans are then recorded
and sent in batches. Span attributes never hold tokens, credentials or tool arguments.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState, format_trace_id
from opentelemetry.util.types import Attributes

TRACER_NAME = "fulfill"
SERVICE_NAME = "fulfill"
TRACEPARENT = "traceparent"

_PROPAGATOR = TraceContextTextMapPropagator()

A = TypeVar("A")
R = TypeVar("R")


class _Fanout(SpanProcessor):
    """The provider's one span processor: forwards to the processors attached now (an OTLP
    exporter, a test's in-memory exporter), which can come and go while the process runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processors: tuple[SpanProcessor, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self._processors)

    def add(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = (*self._processors, processor)

    def remove(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = tuple(p for p in self._processors if p is not processor)

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self._processors)


class _RecordWhenExporting(Sampler):
    """Drop every span while nothing would receive it (ids are still made and propagated);
    otherwise follow the parent's sampling decision, and sample new traces."""

    def __init__(self, fanout: _Fanout) -> None:
        self._fanout = fanout
        self._on = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if not self._fanout.active:
            parent = trace.get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)
        return self._on.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "RecordWhenExporting"


class _TracerProvider(TracerProvider):
    """The SDK's provider, with each tracer looked up by name without the SDK's work per call.

    DBOS asks for its tracer at every span it starts (``trace.get_tracer("dbos-tracer")`` in
    ``DBOSTracer.start_span``: a workflow's span and each step's, four or more per execution).
    The SDK's ``get_tracer`` then builds two scope objects, resets the process's warning filters
    (``warnings.filterwarnings``, which also empties every module's cache of warnings already
    decided) and takes a lock that every executing thread contends for. The tracer it returns is
    the same object each time for the same name, version and schema, so it is kept here after the
    first call. A tracer asked for with attributes goes to the SDK as before."""

    def __init__(self, *, resource: Resource, sampler: Sampler) -> None:
        super().__init__(resource=resource, sampler=sampler)
        self._by_name: dict[tuple[str, str | None, str | None], trace.Tracer] = {}

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        if attributes is not None:
            return super().get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        key = (instrumenting_module_name, instrumenting_library_version, schema_url)
        found = self._by_name.get(key)
        if found is None:
            # Two threads asking at once both get the SDK's one tracer for the name.
            found = super().get_tracer(instrumenting_module_name, instrumenting_library_version, schema_url)
            self._by_name[key] = found
        return found


_fanout = _Fanout()
_install_lock = threading.Lock()
_installed = False


def _drop_dbos_log_export_notice(record: logging.LogRecord) -> bool:
    """DBOS warns at every start that it exports no logs (it only makes spans here): not news."""
    return not str(record.msg).startswith("OTLP is enabled but logger provider not set")


def install(role: str) -> None:
    """Make this module's provider the process's tracer provider (once; later calls do nothing).

    The service name is ``OTEL_SERVICE_NAME`` or ``fulfill``; ``fulfill.role`` is the process's
    role (all, api or worker). When the host process already set an SDK provider, its spans go
    to the processors attached here as well.
    """
    global _installed  # one provider per process, as OpenTelemetry allows
    with _install_lock:
        if _installed:
            return
        _installed = True
        logging.getLogger("dbos").addFilter(_drop_dbos_log_export_notice)
        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            existing.add_span_processor(_fanout)
            return
        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME, "fulfill.role": role}
        )
        provider = _TracerProvider(resource=resource, sampler=_RecordWhenExporting(_fanout))
        provider.add_span_processor(_fanout)
        trace.set_tracer_provider(provider)


def add_span_processor(processor: SpanProcessor) -> None:
    """Record spans and hand each finished one to ``processor`` (until it is removed)."""
    _fanout.add(processor)


def remove_span_processor(processor: SpanProcessor) -> None:
    _fanout.remove(processor)


def recording() -> bool:
    """Whether spans are recorded now (something receives them: an OTLP export, a collector)."""
    return _fanout.active


class OtlpExport:
    """Batched OTLP/HTTP export of this process's spans to one endpoint, while it is started."""

    def __init__(self, endpoint: str) -> None:
        # The exporter (and the protobuf runtime under it) is imported only when export is on.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        self.endpoint = endpoint
        self._processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        add_span_processor(self._processor)

    def stop(self) -> None:
        """Send what is left and stop exporting."""
        remove_span_processor(self._processor)
        self._processor.shutdown()  # type: ignore[no-untyped-call]


# --- Spans and trace context ----------------------------------------------------------------------


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """fulfill's tracer, made once (the SDK makes a new tracer object at every ``get_tracer``).
    Made before :func:`install`, it is OpenTelemetry's proxy, which follows the provider set later."""
    global _tracer  # one tracer per process, like the provider
    if _tracer is None:
        _tracer = trace.get_tracer(TRACER_NAME)
    return _tracer


def current_trace_id() -> str | None:
    """The active span's trace id (32 lowercase hex digits), if a span is active."""
    span_context = trace.get_current_span().get_span_context()
    return format_trace_id(span_context.trace_id) if span_context.is_valid else None


def execution_trace() -> tuple[str, str]:
    """(trace id, W3C traceparent) for an execution accepted now: the active span's, so the
    execution joins the trace of the request that approved it; with no active span (a caller
    outside any request), a new trace's."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid and TRACEPARENT in carrier:
        return format_trace_id(span_context.trace_id), carrier[TRACEPARENT]
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, f"00-{trace_id}-{span_id}-01"


def context_from(traceparent: str | None) -> otel_context.Context | None:
    """The context a stored ``traceparent`` names, or None when there is none or it is unreadable."""
    if not traceparent:
        return None
    extracted = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


def context_from_headers(headers: Mapping[str, str]) -> otel_context.Context | None:
    """The context an incoming request's ``traceparent`` header names, if it has a valid one."""
    value = headers.get(TRACEPARENT)
    return context_from(value) if isinstance(value, str) else None


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the active span's ``traceparent`` (and ``tracestate``) to outgoing request headers."""
    _PROPAGATOR.inject(headers)
    return headers


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    attributes: Mapping[str, str | int | bool] | None = None,
) -> Iterator[trace.Span]:
    """A span around a block, the current span inside it; an exception marks it failed."""
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {})
    ) as current:
        yield current


def execution_attributes(context: object) -> dict[str, str | int | bool]:
    """What a step's span says about its execution (``context``: an ``ExecutionContext``)."""
    names = (("action_intent_id", "fulfill.action_intent_id"), ("tenant_id", "fulfill.tenant_id"))
    attributes: dict[str, str | int | bool] = {
        key: value for field, key in names if isinstance(value := getattr(context, field, None), str)
    }
    attempt = getattr(context, "attempt_count", None)
    if isinstance(attempt, int):
        attributes["fulfill.attempt"] = attempt
    return attributes


def attach(context: otel_context.Context | None) -> Callable[[], None]:
    """Make ``context`` current (in this thread or task); returns the function that undoes it."""
    if context is None:
        return lambda: None
    token = otel_context.attach(context)
    return lambda: otel_context.detach(token)


def capture() -> otel_context.Context:
    """The current context, to :func:`attach` where the work continues (another thread or loop)."""
    return otel_context.get_current()
