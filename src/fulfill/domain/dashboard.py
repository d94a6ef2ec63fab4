"""The dashboard's arithmetic: windows, time buckets, percentiles, age buckets (pure).

The store counts (by status per minute, by error class, by connector and status) and hands over
bounded samples of durations; this module turns them into what the console draws.

Percentiles are **exact** over the samples they are given (nearest-rank: the smallest value with
at least ``q`` of the samples at or below it, never an interpolation). The store hands over at
most :data:`MAX_SAMPLES` durations per figure, the most recent ones of the window; when a window
holds more, the figure says so (``sampled``) and is exact over those.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from fulfill.domain.flowcontrol import connector_of
from fulfill.domain.time import epoch_from_iso

# The most durations a percentile is computed over (the most recent of the window).
MAX_SAMPLES = 10_000
# How many items of each "waits for a person" list are named (the count is always exact).
MAX_LISTED = 10


class Window(StrEnum):
    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"

    @property
    def seconds(self) -> int:
        return _WINDOW_SECONDS[self]

    @property
    def bucket_seconds(self) -> int:
        """The width of one bar of the executions chart."""
        return _BUCKET_SECONDS[self]

    @property
    def label(self) -> str:
        return _WINDOW_LABELS[self]


_WINDOW_SECONDS = {Window.HOUR: 3600, Window.DAY: 86_400, Window.WEEK: 7 * 86_400}
_BUCKET_SECONDS = {Window.HOUR: 60, Window.DAY: 900, Window.WEEK: 3600}
_WINDOW_LABELS = {Window.HOUR: "1 hour", Window.DAY: "24 hours", Window.WEEK: "7 days"}
DEFAULT_WINDOW = Window.HOUR
WINDOW_CHOICES = ", ".join(window.value for window in Window)


def parse_window(raw: str | None) -> Window:
    """``1h``, ``24h`` or ``7d`` (absent or empty: ``1h``); anything else raises ValueError."""
    if raw is None or raw == "":
        return DEFAULT_WINDOW
    try:
        return Window(raw)
    except ValueError:
        raise ValueError(f"the window is one of {WINDOW_CHOICES}, not {raw[:20]!r}") from None


# The statuses an execution's outcome is recorded with, in the order the chart stacks them.
OUTCOME_STATUSES = ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")


@dataclass(frozen=True)
class Bucket:
    start_epoch: float
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def minute_epoch(minute: str) -> float:
    """The start of a ``YYYY-MM-DDTHH:MM`` minute (the store's per-minute group key), in UTC."""
    return epoch_from_iso(minute + ":00+00:00")


def rebucket(
    per_minute: Iterable[tuple[str, str, int]], *, since_epoch: float, until_epoch: float, bucket_seconds: int
) -> list[Bucket]:
    """Per-minute counts by status, summed into consecutive buckets of ``bucket_seconds`` that
    cover ``[since, until)``; every bucket is there (empty ones too), every status of
    :data:`OUTCOME_STATUSES` in every bucket. A minute outside the range is left out."""
    first = math.floor(since_epoch / bucket_seconds) * bucket_seconds
    count = max(1, math.ceil((until_epoch - first) / bucket_seconds))
    buckets = [
        Bucket(start_epoch=first + i * bucket_seconds, counts=dict.fromkeys(OUTCOME_STATUSES, 0))
        for i in range(count)
    ]
    for minute, status, n in per_minute:
        at = minute_epoch(minute)
        if at < first or at >= until_epoch:
            continue
        index = int((at - first) // bucket_seconds)
        if 0 <= index < count:
            counts = buckets[index].counts
            counts[status] = counts.get(status, 0) + n
    return buckets


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0 < q <= 1) of ``values``; None without values."""
    if not values:
        return None
    if not 0 < q <= 1:
        raise ValueError("q is in (0, 1]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Latency:
    """p50 and p95 in seconds over ``count`` durations; ``sampled``: the window held more than
    :data:`MAX_SAMPLES` and these are over its most recent ones."""

    count: int
    p50: float | None
    p95: float | None
    sampled: bool = False


def latency_of(durations: Sequence[float], *, sampled: bool = False) -> Latency:
    return Latency(
        count=len(durations), p50=percentile(durations, 0.5), p95=percentile(durations, 0.95), sampled=sampled
    )


def durations(pairs: Iterable[tuple[str, str]]) -> list[float]:
    """Seconds from each pair's first timestamp to its second (never below 0: clocks of different
    processes may disagree by a little)."""
    return [max(0.0, epoch_from_iso(end) - epoch_from_iso(start)) for start, end in pairs]


# Pending approvals by how long they have waited: (label, lower bound in seconds).
AGE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("under 1 hour", 0),
    ("1 to 24 hours", 3600),
    ("1 to 7 days", 86_400),
    ("7 days or more", 7 * 86_400),
)


@dataclass(frozen=True)
class AgeBucket:
    label: str
    count: int


@dataclass(frozen=True)
class ConnectorFigures:
    """One connector's calls in the window, as the store recorded them (see docs/OPERATIONS.md):
    ``calls``: attempts whose tool call ended (succeeded or failed) plus the failed tries that
    were retried; ``errors``: the failed ones of those; ``latency``: the attempts' durations
    (start to recorded outcome, every try included)."""

    connector: str
    calls: int
    errors: int
    latency: Latency

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


def connector_figures(
    outcome_counts: Iterable[tuple[str, str, int]],
    retried_tries: Iterable[tuple[str, int]],
    timings: Iterable[tuple[str, str, str]],
    *,
    sampled: bool = False,
) -> list[ConnectorFigures]:
    """Per connector (the part of the tool name before its first dot): ``outcome_counts`` are
    (tool name, outcome status, count) of SUCCEEDED/FAILED outcomes, ``retried_tries`` (tool name,
    count) of failed tries that were retried, ``timings`` (tool name, started_at, completed_at)."""
    calls: dict[str, int] = {}
    errors: dict[str, int] = {}
    times: dict[str, list[float]] = {}
    for tool, status, n in outcome_counts:
        name = connector_of(tool)
        calls[name] = calls.get(name, 0) + n
        if status == "FAILED":
            errors[name] = errors.get(name, 0) + n
    for tool, n in retried_tries:
        name = connector_of(tool)
        calls[name] = calls.get(name, 0) + n
        errors[name] = errors.get(name, 0) + n
    for tool, started, completed in timings:
        times.setdefault(connector_of(tool), []).extend(durations([(started, completed)]))
    return [
        ConnectorFigures(
            connector=name,
            calls=calls[name],
            errors=errors.get(name, 0),
            latency=latency_of(times.get(name, []), sampled=sampled),
        )
        for name in sorted(calls)
    ]


@dataclass(frozen=True)
class WaitingItem:
    """One execution that waits for a person."""

    tenant_id: str
    account_id: str
    action_intent_id: str
    since: str  # when it started waiting (ISO-8601 UTC)
    detail: str = ""


@dataclass(frozen=True)
class WaitingList:
    """How many wait (exact) and the oldest :data:`MAX_LISTED` of them."""

    count: int
    items: list[WaitingItem] = field(default_factory=list)
