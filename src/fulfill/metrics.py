"""Prometheus metrics, served at ``/metrics``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fulfill.domain.flowcontrol import connector_of

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

# --- flow control ---------------------------------------------------------------------------------
# This process's own view: calls it has in flight and executions it has waiting, per connector.
CONNECTOR_CALLS_IN_FLIGHT = Gauge(
    "fulfill_connector_calls_in_flight",
    "Tool calls this process has in flight, by connector (sum over processes for the total).",
    ["connector"],
)
CONNECTOR_WAITING = Gauge(
    "fulfill_connector_waiting",
    "Tool calls of this process waiting for their connector's gate (rate, concurrency, circuit).",
    ["connector"],
)
CONNECTOR_WAIT_SECONDS = Histogram(
    "fulfill_connector_wait_seconds",
    "Time a tool call waited for its connector's gate.",
    ["connector"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONNECTOR_CIRCUIT_TRANSITIONS = Counter(
    "fulfill_connector_circuit_transitions_total",
    "Circuit breaker state changes made by this process, by connector and new state.",
    ["connector", "state"],
)


class SharedStateCollector(Collector):
    """What every process shares, read from the database at each scrape: every connector's limits
    and circuit breaker, so that any process (an ``api`` one too) reports the same values."""

    def __init__(self) -> None:
        self._source: Callable[[], list[ConnectorSample]] | None = None

    def set_source(self, source: Callable[[], list[ConnectorSample]]) -> None:
        self._source = source

    def clear_source(self, source: Callable[[], list[ConnectorSample]]) -> None:
        """Stop reading from ``source`` (unless another service has replaced it meanwhile)."""
        if self._source == source:
            self._source = None

    def describe(self) -> Iterable[Metric]:
        return []  # no fixed description: samples come from the database at scrape time

    def collect(self) -> Iterable[Metric]:
        source = self._source
        if source is None:
            return []
        try:
            samples = source()
        except Exception:  # a scrape never fails because the database did not answer
            return []
        rate = GaugeMetricFamily(
            "fulfill_connector_limit_rate",
            "Rate limit of each connector in calls per second (+Inf: none).",
            labels=["connector"],
        )
        concurrency = GaugeMetricFamily(
            "fulfill_connector_limit_concurrency",
            "Concurrency limit of each connector across all processes (+Inf: none).",
            labels=["connector"],
        )
        state = GaugeMetricFamily(
            "fulfill_connector_circuit_state",
            "Circuit breaker of each connector: 0 closed, 1 half-open, 2 open.",
            labels=["connector"],
        )
        failures = GaugeMetricFamily(
            "fulfill_connector_circuit_failures",
            "Target failures in a row counted by each connector's circuit breaker.",
            labels=["connector"],
        )
        for sample in samples:
            rate.add_metric([sample.name], sample.rate if sample.rate is not None else math.inf)
            concurrency.add_metric(
                [sample.name], sample.concurrency if sample.concurrency is not None else math.inf
            )
            state.add_metric([sample.name], sample.circuit_state)
            failures.add_metric([sample.name], sample.failures)
        return [rate, concurrency, state, failures]


@dataclass(frozen=True)
class ConnectorSample:
    name: str
    rate: float | None
    concurrency: int | None
    circuit_state: int
    failures: int


SHARED_STATE = SharedStateCollector()
REGISTRY.register(SHARED_STATE)


@dataclass(frozen=True)
class ToolCallLatency:
    """Tool calls of one connector seen by this process since it started, and their mean latency."""

    calls: int
    mean_seconds: float


def tool_call_latency_by_connector() -> dict[str, ToolCallLatency]:
    """From ``fulfill_tool_call_seconds`` of this process (each process counts its own calls)."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for metric in TOOL_CALL_SECONDS.collect():
        for sample in metric.samples:
            tool = sample.labels.get("tool", "")
            if sample.name.endswith("_sum"):
                sums[connector_of(tool)] = sums.get(connector_of(tool), 0.0) + sample.value
            elif sample.name.endswith("_count"):
                counts[connector_of(tool)] = counts.get(connector_of(tool), 0.0) + sample.value
    return {
        name: ToolCallLatency(calls=int(count), mean_seconds=sums.get(name, 0.0) / count)
        for name, count in counts.items()
        if count > 0
    }
