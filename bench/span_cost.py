"""What one span costs the service's tracer: not recorded (the default, nothing receives spans)
and recorded into memory (what an OTLP export adds before its batches are sent).

    python -m bench.span_cost                    # 100,000 spans each way
    python -m bench.span_cost --spans 20000

Each span is made the way the engine makes its step spans (``tracing.span`` with an execution's
attributes), nested one level under a parent, as a step's span is under its workflow's.
"""

from __future__ import annotations

import argparse
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=100_000)
    args = parser.parse_args()
    tracing.install("all")
    per_span_microseconds(1_000)  # warm up
    print(f"not recorded: {per_span_microseconds(args.spans):.1f} µs per span")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    tracing.add_span_processor(processor)
    try:
        print(f"recorded in memory: {per_span_microseconds(args.spans):.1f} µs per span")
    finally:
        tracing.remove_span_processor(processor)


if __name__ == "__main__":
    main()
