"""Prometheus metrics, served at ``/metrics``.

Two kinds. Counters, histograms and in-flight gauges are this process's own: every process (an
``api`` one, each ``worker``) serves its own ``/metrics``, and a dashboard sums them over
processes. The store gauges (:class:`SharedStateCollector`) are read from the database at each
scrape, so every process reports the same values: aggregate them with ``max``, never ``sum``.

Labels are bounded: statuses, error classes, step names and connectors (the namespace of a tool:
``internal``, ``crm``, a remote target's name; set by configuration, never by a request). No
intent id ever, and no tenant id unless ``FULFILL_METRICS_TENANT_LABELS`` turns on the
``fulfill_tenant_*`` families.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fulfill.domain.errors import ErrorClass
from fulfill.domain.killswitch import KILL_SWITCH_SCOPES
from fulfill.domain.models import AMBIGUOUS_AGE_BUCKETS
from fulfill.domain.outbox import DESTINATION_KINDS
from fulfill.domain.ports import ToolCallOutcome

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
OUTBOX_DEAD_LETTERED = Counter(
    "fulfill_outbox_dead_lettered_total",
    "Outbox deliveries this process gave up (DEAD_LETTER), by kind of destination.",
    ["kind"],
)
LOST_EXECUTOR_WORKFLOWS = Counter(
    "fulfill_lost_executor_workflows_total",
    "Unfinished workflows of lost executors (silent past FULFILL_EXECUTOR_LOST_SECONDS) this worker recovered.",
)
WORKFLOWS_DELETED = Counter(
    "fulfill_workflows_deleted_total",
    "DBOS's rows of finished workflows this worker deleted (FULFILL_WORKFLOW_RETENTION_DAYS).",
)
OUTBOX_MESSAGES_DELETED = Counter(
    "fulfill_outbox_messages_deleted_total",
    "Outbox messages this worker deleted once every delivery was accepted (FULFILL_OUTBOX_RETENTION_DAYS).",
)
BACKGROUND_PASS_FAILURES = Counter(
    "fulfill_background_pass_failures_total",
    "Runs of a worker's background pass (reconciler, escalation, probes, heartbeat, the retention "
    "passes) that failed; each is tried again at its next interval.",
    ["pass"],
)
BACKGROUND_PASS_LAST_SUCCESS = Gauge(
    "fulfill_background_pass_last_success_timestamp_seconds",
    "When this process last completed the pass (when it started the pass, until one completes).",
    ["pass"],
)
BACKGROUND_PASS_INTERVAL = Gauge(
    "fulfill_background_pass_interval_seconds",
    "The pass's interval in this process: how long it waits between runs.",
    ["pass"],
)
RECONCILED = Counter(
    "fulfill_reconciled_total",
    "Workflows the reconciler started, resumed or forked, by what it found.",
    ["kind", "action"],
)
COMPENSATIONS = Counter(
    "fulfill_compensations_total",
    "Compensation workflows that finished, by result (completed, failed, abandoned, unknown).",
    ["result"],
)
# Unlabelled, so it exists at 0 from start-up and the first one is an increase an alert sees.
COMPENSATIONS_OUTCOME_UNKNOWN = Counter(
    "fulfill_compensations_outcome_unknown",
    "Compensation calls whose answer was lost on a target that does not deduplicate: never sent "
    "again; each waits for a person to check the target (ledger COMPENSATION_OUTCOME_UNKNOWN).",
)
COMPENSATIONS_ATTEMPTED = Counter(
    "fulfill_compensations_attempted_total",
    "Compensations begun, by strategy: automatic (one try of the compensation tool) or manual "
    "(a person was asked to undo the write).",
    ["strategy"],
)

# --- steps ----------------------------------------------------------------------------------------
# The steps of the execution state machine and of compensation (engine/workflow.py).
EXECUTION_STEPS = ("StartExecution", "ValidatePreflight", "MapActionToTool", "InvokeTool", "RecordOutcome")
COMPENSATION_STEPS = ("BeginCompensation", "InvokeCompensation", "FinishCompensation")
# How one run of a step ended: returned (success), returned a business failure (failure), ended the
# execution (stopped: kill switch, expiry, cancellation, budget), raised a transient failure the
# workflow retries (retry), or raised anything else (error).
STEP_RESULTS = ("success", "failure", "stopped", "retry", "error")
STEP_SECONDS = Histogram(
    "fulfill_step_seconds",
    "Duration of one run of a workflow step (each try of a retried step is one run), by result.",
    ["step", "result"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RETRIES = Counter(
    "fulfill_retries_total",
    "Retries of a step's tool call after a transient failure, by connector and step.",
    ["connector", "step"],
)

# --- connectors -----------------------------------------------------------------------------------
CONNECTOR_CALLS = Counter(
    "fulfill_connector_calls_total",
    "Tool calls sent to a connector (executions and compensations), by result.",
    ["connector", "result"],
)
CONNECTOR_CALL_SECONDS = Histogram(
    "fulfill_connector_call_seconds",
    "Latency of one tool call sent to a connector, from send to answer.",
    ["connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONNECTOR_ERRORS = Counter(
    "fulfill_connector_errors_total",
    "Tool calls a connector answered with an error, by error class.",
    ["connector", "error_class"],
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

# --- per tenant (only with FULFILL_METRICS_TENANT_LABELS=true) -------------------------------------
TENANT_EXECUTIONS = Counter(
    "fulfill_tenant_executions_total",
    "Executions that reached a recorded outcome, by tenant (only when tenant labels are enabled).",
    ["tenant", "status"],
)


def connector_call(connector: str, answer: ToolCallOutcome | None, seconds: float) -> None:
    """One tool call sent to ``connector``: its latency, its result and, when it failed, its error
    class. ``answer`` None: the call raised instead of answering (counted as an UNKNOWN failure)."""
    CONNECTOR_CALL_SECONDS.labels(connector).observe(seconds)
    RECENT_CALLS.add(connector, seconds, answer is not None and answer.success)
    if answer is not None and answer.success:
        CONNECTOR_CALLS.labels(connector, "success").inc()
        return
    error = answer.error if answer is not None else None
    error_class = error.error_class if error is not None else ErrorClass.UNKNOWN
    retryable = error is not None and error.retryable
    CONNECTOR_CALLS.labels(connector, "retryable_failure" if retryable else "failure").inc()
    CONNECTOR_ERRORS.labels(connector, error_class.value).inc()


# --- read from the database at each scrape ---------------------------------------------------------


@dataclass(frozen=True)
class ConnectorSample:
    name: str
    rate: float | None
    concurrency: int | None
    circuit_state: int
    failures: int


@dataclass(frozen=True)
class SharedState:
    """What every process shares, read from the database for one scrape."""

    connectors: list[ConnectorSample] = field(default_factory=list)
    # QUEUED and RUNNING attempts whose deadline (accepted + timeout_seconds while QUEUED,
    # started + timeout_seconds once RUNNING) has passed.
    attempts_past_budget: Mapping[str, int] = field(default_factory=dict)
    # Executions waiting AMBIGUOUS for a person's resolution, by age bucket.
    ambiguous_by_age: Mapping[str, int] = field(default_factory=dict)
    # How long the oldest of them has waited (0: none), and FULFILL_AMBIGUOUS_ALERT_SECONDS.
    ambiguous_oldest_age_seconds: float = 0.0
    ambiguous_alert_threshold_seconds: float = 3600.0
    # Outbox deliveries not yet delivered, and the age of the oldest one's message (0: none).
    outbox_backlog: int = 0
    outbox_oldest_age_seconds: float = 0.0
    # Dead-lettered deliveries by kind of destination (engine, webhook, eventbridge).
    outbox_dead_letters: Mapping[str, int] = field(default_factory=dict)
    # Kill switches: the global stop (stored, or this process's FULFILL_GLOBAL_EXECUTION_STOP),
    # tenants whose execution is off, action types disabled for all tenants, and (tenant, action
    # type) pairs disabled by tenants' own switches.
    global_stop: bool = False
    tenants_stopped: int = 0
    disabled_action_types_global: int = 0
    disabled_action_types_tenant: int = 0
    # Only with tenant labels enabled: attempts past budget by (tenant, state), and the stopped
    # tenants.
    tenant_attempts_past_budget: Mapping[tuple[str, str], int] | None = None
    stopped_tenants: list[str] | None = None


ATTEMPT_STATES = ("QUEUED", "RUNNING")


class SharedStateCollector(Collector):
    """The store gauges: what every process shares, read from the database at each scrape (a
    short cache absorbs scrape storms), so that any process (an ``api`` one too) reports the same
    values. A database that does not answer never fails the scrape: these gauges are left out and
    ``fulfill_metrics_store_errors_total`` counts it."""

    def __init__(self) -> None:
        self._source: Callable[[], SharedState] | None = None
        self._cache_seconds = 0.0
        self._cached: tuple[float, SharedState] | None = None
        self._errors = 0
        self._lock = threading.Lock()

    def set_source(self, source: Callable[[], SharedState], *, cache_seconds: float = 0.0) -> None:
        with self._lock:
            self._source = source
            self._cache_seconds = cache_seconds
            self._cached = None

    def clear_source(self, source: Callable[[], SharedState]) -> None:
        """Stop reading from ``source`` (unless another service has replaced it meanwhile)."""
        with self._lock:
            if self._source == source:
                self._source = None
                self._cached = None

    def describe(self) -> Iterable[Metric]:
        return []  # no fixed description: samples come from the database at scrape time

    def collect(self) -> Iterable[Metric]:
        state = self._read()
        errors = CounterMetricFamily(
            "fulfill_metrics_store_errors",
            "Scrapes whose store gauges were left out because the database did not answer.",
        )
        errors.add_metric([], self._errors)
        if state is None:
            return [errors]
        return [errors, *_connector_families(state.connectors), *_store_families(state)]

    def _read(self) -> SharedState | None:
        # One reader at a time: concurrent scrapes wait for it and share its answer.
        with self._lock:
            source = self._source
            if source is None:
                return None
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            try:
                state = source()
            except Exception:  # a scrape never fails because the database did not answer
                self._errors += 1
                self._cached = None
                return None
            self._cached = (now, state)
            return state


def _connector_families(samples: list[ConnectorSample]) -> list[Metric]:
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


def _store_families(state: SharedState) -> list[Metric]:
    past_budget = GaugeMetricFamily(
        "fulfill_attempts_past_budget",
        "Attempts still QUEUED or RUNNING after their execution budget (timeout_seconds) ran out.",
        labels=["state"],
    )
    for attempt_state in ATTEMPT_STATES:
        past_budget.add_metric([attempt_state], state.attempts_past_budget.get(attempt_state, 0))
    ambiguous = GaugeMetricFamily(
        "fulfill_ambiguous_executions",
        "Executions AMBIGUOUS (a call that may have written, its answer lost), waiting for a person "
        "to resolve them, by time since they became AMBIGUOUS: under_1h, 1h_to_24h, over_24h.",
        labels=["age"],
    )
    for label, _lower, _upper in AMBIGUOUS_AGE_BUCKETS:
        ambiguous.add_metric([label], state.ambiguous_by_age.get(label, 0))
    families: list[Metric] = [
        past_budget,
        ambiguous,
        GaugeMetricFamily(
            "fulfill_ambiguous_oldest_age_seconds",
            "Time since the longest-waiting AMBIGUOUS execution became AMBIGUOUS (0: none).",
            value=state.ambiguous_oldest_age_seconds,
        ),
        GaugeMetricFamily(
            "fulfill_ambiguous_alert_threshold_seconds",
            "FULFILL_AMBIGUOUS_ALERT_SECONDS: how long an execution may wait AMBIGUOUS before "
            "FulfillAmbiguousExecutionsOld fires.",
            value=state.ambiguous_alert_threshold_seconds,
        ),
        GaugeMetricFamily(
            "fulfill_outbox_backlog",
            "Outbox deliveries not yet delivered, read from the database.",
            value=state.outbox_backlog,
        ),
        GaugeMetricFamily(
            "fulfill_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox message with an undelivered delivery (0: none).",
            value=state.outbox_oldest_age_seconds,
        ),
        _dead_letters_family(state.outbox_dead_letters),
        GaugeMetricFamily(
            "fulfill_kill_switch_global_stop",
            "1 while the global stop is on (stored, or FULFILL_GLOBAL_EXECUTION_STOP), else 0.",
            value=1 if state.global_stop else 0,
        ),
        GaugeMetricFamily(
            "fulfill_kill_switch_tenants_stopped",
            "Tenants whose execution is switched off.",
            value=state.tenants_stopped,
        ),
    ]
    disabled = GaugeMetricFamily(
        "fulfill_kill_switch_disabled_action_types",
        "Disabled action types: for all tenants (scope global), and tenant/action-type pairs "
        "disabled by tenants' own switches (scope tenant).",
        labels=["scope"],
    )
    disabled.add_metric(["global"], state.disabled_action_types_global)
    disabled.add_metric(["tenant"], state.disabled_action_types_tenant)
    families.append(disabled)
    if state.tenant_attempts_past_budget is not None:
        by_tenant = GaugeMetricFamily(
            "fulfill_tenant_attempts_past_budget",
            "Attempts still QUEUED or RUNNING after their budget, by tenant (tenant labels enabled).",
            labels=["tenant", "state"],
        )
        for (tenant, attempt_state), count in sorted(state.tenant_attempts_past_budget.items()):
            by_tenant.add_metric([tenant, attempt_state], count)
        families.append(by_tenant)
    if state.stopped_tenants is not None:
        stopped = GaugeMetricFamily(
            "fulfill_tenant_execution_stopped",
            "1 for each tenant whose execution is switched off (tenant labels enabled).",
            labels=["tenant"],
        )
        for tenant in sorted(state.stopped_tenants):
            stopped.add_metric([tenant], 1)
        families.append(stopped)
    return families


def _dead_letters_family(counts: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "fulfill_outbox_dead_letters",
        "Outbox deliveries given up (DEAD_LETTER) and not redelivered, by kind of destination.",
        labels=["kind"],
    )
    for kind in DESTINATION_KINDS:
        family.add_metric([kind], counts.get(kind, 0))
    return family


SHARED_STATE = SharedStateCollector()
REGISTRY.register(SHARED_STATE)


@dataclass(frozen=True)
class ToolCallLatency:
    """The tool calls of one connector this process made in the last ``window_seconds``."""

    calls: int
    failures: int
    p50_seconds: float
    p95_seconds: float
    window_seconds: float


class RecentCalls:
    """The latest calls of each connector (at most ``keep`` each), for "recent latency" on the
    console. Per process, like every counter here; nothing is stored."""

    def __init__(self, keep: int = 500, clock: Callable[[], float] = time.monotonic) -> None:
        self._keep = keep
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[str, deque[tuple[float, float, bool]]] = {}

    def add(self, connector: str, seconds: float, ok: bool) -> None:
        with self._lock:
            calls = self._calls.setdefault(connector, deque(maxlen=self._keep))
            calls.append((self._clock(), seconds, ok))

    def latency(self, window_seconds: float = 300.0) -> dict[str, ToolCallLatency]:
        since = self._clock() - window_seconds
        with self._lock:
            recent = {name: [c for c in calls if c[0] >= since] for name, calls in self._calls.items()}
        latency = {}
        for name, calls in recent.items():
            if calls:
                seconds = sorted(c[1] for c in calls)
                latency[name] = ToolCallLatency(
                    calls=len(calls),
                    failures=sum(1 for c in calls if not c[2]),
                    p50_seconds=_quantile(seconds, 0.50),
                    p95_seconds=_quantile(seconds, 0.95),
                    window_seconds=window_seconds,
                )
        return latency


def _quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of a sorted, non-empty list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


RECENT_CALLS = RecentCalls()


# --- counters present at 0 from start-up ----------------------------------------------------------
# A counter child appears at its first increment otherwise, and increase() needs two samples: the
# first kill-switch stop, stuck-attempt recovery or abandoned compensation after every restart
# would go unseen by the alerts. So every label value known in advance is created at 0 here.
RECONCILE_ACTIONS = {
    "execution": ("started", "resumed-stuck", "resumed", "restarted", "forked"),
    "compensation": ("abandoned", "retried"),
}
COMPENSATION_RESULTS = ("completed", "failed", "abandoned", "unknown")
COMPENSATION_STRATEGIES = ("automatic", "manual")
EVENT_RESULTS = ("started", "duplicate", "rejected")


def start_counters_at_zero() -> None:
    for scope in (*KILL_SWITCH_SCOPES, "LOOKUP_FAILED", "UNKNOWN"):
        KILL_SWITCH_STOPS.labels(scope)
    for kind, actions in RECONCILE_ACTIONS.items():
        for action in actions:
            RECONCILED.labels(kind, action)
    for result in COMPENSATION_RESULTS:
        COMPENSATIONS.labels(result)
    for strategy in COMPENSATION_STRATEGIES:
        COMPENSATIONS_ATTEMPTED.labels(strategy)
    for result in EVENT_RESULTS:
        EVENTS.labels(result)
    for kind in DESTINATION_KINDS:
        OUTBOX_DEAD_LETTERED.labels(kind)


start_counters_at_zero()
