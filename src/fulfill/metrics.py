"""Prometheus metrics, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EXECUTIONS = Counter(
    "fulfill_executions_total", "Executions that reached a recorded outcome.", ["status", "error_class"]
)
EXECUTION_SECONDS = Histogram(
    "fulfill_execution_seconds",
    "Time from attempt start to recorded outcome.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
TOOL_CALLS = Counter("fulfill_tool_calls_total", "Tool calls made by InvokeTool.", ["tool", "result"])
TOOL_CALL_SECONDS = Histogram(
    "fulfill_tool_call_seconds",
    "Latency of one tools/call through the gateway.",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
KILL_SWITCH_STOPS = Counter(
    "fulfill_kill_switch_stops_total", "Executions stopped by a kill switch.", ["scope"]
)
EVENTS = Counter("fulfill_approved_events_total", "ACTION_APPROVED events received.", ["result"])
OUTBOX_DELIVERIES = Counter(
    "fulfill_outbox_deliveries_total", "Outbox delivery attempts.", ["topic", "result"]
)
OUTBOX_PENDING = Gauge("fulfill_outbox_pending", "Outbox deliveries waiting to be delivered.")
RECONCILED = Counter(
    "fulfill_reconciled_total",
    "Workflows the reconciler started, resumed or forked, by what it found.",
    ["kind", "action"],
)
COMPENSATIONS = Counter(
    "fulfill_compensations_total",
    "Compensation workflows that finished, by result (completed, failed, abandoned).",
    ["result"],
)
