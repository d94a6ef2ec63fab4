"""What one span costs the service's tracer: not recorded (the default, nothing receives spans)
and recorded into memory (what an OTLP export adds before its batches are sent).

    python -m bench.span_cost                    # 100,000 spans each way
    python -m bench.span_cost --spans 20000

Each span is made the way the engine makes its step spans (``tracing.span`` with an execution's
attributes), nested one level under a parent, as a step's span is under its workflow's. A third
series makes each span the way DBOS makes its workflow and step spans: the tracer asked of the
process's provider by name at every span (``trace.get_tracer("dbos-tracer")``), then the span
started and ended under its parent, not recorded. ``--threads N`` makes the spans from N threads
at once (the executions of a worker), each its share, and reports the wall time per span.
"""

from __future__ import annotations

import argparse
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fulfill import tracing

ATTRIBUTES: dict[str, str | int | bool] = {
    "fulfill.tenant_id": "t1",
    "fulfill.action_intent_id": "ai_1",
    "fulfill.attempt": 1,
}


def per_span_microseconds(spans: int) -> float:
    with tracing.span("parent"):
        began = time.perf_counter()
        for _ in range(spans):
            with tracing.span("StartExecution", attributes=ATTRIBUTES):
                pass
        return (time.perf_counter() - began) / spans * 1e6


def dbos_span_microseconds(spans: int, threads: int = 1) -> float:
    """Spans made as DBOS's ``DBOSTracer.start_span`` makes them, from ``threads`` threads at once."""

    def make(count: int) -> None:
        with tracing.span("workflow") as parent:
            context = trace.set_span_in_context(parent)
            for _ in range(count):
                span = trace.get_tracer("dbos-tracer").start_span(name="InvokeTool", context=context)
                span.end()

    workers = [threading.Thread(target=make, args=(spans // threads,)) for _ in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - began) / spans * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1, help="threads making DBOS's spans at once")
    args = parser.parse_args()
    tracing.install("all")
    per_span_microseconds(1_000)  # warm up
    print(f"not recorded: {per_span_microseconds(args.spans):.1f} µs per span")
    dbos_span_microseconds(1_000)
    print(
        f"DBOS's way, not recorded, {args.threads} thread(s): "
        f"{dbos_span_microseconds(args.spans, args.threads):.1f} µs per span"
    )
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    tracing.add_span_processor(processor)
    try:
        print(f"recorded in memory: {per_span_microseconds(args.spans):.1f} µs per span")
    finally:
        tracing.remove_span_processor(processor)


if __name__ == "__main__":
    main()
