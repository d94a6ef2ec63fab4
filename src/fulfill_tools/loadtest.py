"""Load benchmark: approvals offered to a running service, and the bare-DBOS floor next to it.

The service always runs in its own process(es): either one already running (``--url``) or one the
benchmark starts (``fulfill serve`` on a temporary SQLite database, or ``--database-url``; with
``--workers N`` an ``api`` process and N ``worker`` processes). Scenarios:

* **open loop**: at each offered rate, intents are created first (not timed), then approvals are
  sent on a fixed schedule whether or not earlier ones returned. Latency counts from the
  *scheduled* send time to the outcome's ``completed_at`` (the service's clock; same machine), so
  queueing anywhere (client, server, queue, database) is not hidden.
* **burst**: N approvals at once; sustained executions/s between the first and last outcome.
* **one at a time**: approval → outcome from the service's own timestamps, as
  ``bench/approval_latency.py`` measures it.
* **floor**: a DBOS workflow with the same number of no-op steps, in this process on its own
  temporary SQLite DBOS database, one at a time and as a burst.

The reusable parts (percentiles, schedules, throughput) are plain functions. The floor's DBOS
workflow is in :mod:`fulfill_tools.floor`, imported only when the floor runs, so importing this
module registers nothing with DBOS; the service processes come from :mod:`fulfill_tools.launch`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import os
import platform
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fulfill.client import ApiError, AsyncFulfillClient, FulfillClient, default_limits
from fulfill.domain.models import ExecutionStatus
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES
from fulfill_tools.launch import ServiceGroup

if TYPE_CHECKING:
    from fulfill.usecases.executions import ExecutionPage

ACTION_TYPE = "CREATE_INTERNAL_TASK"

# ---------------------------------------------------------------------------------------------
# Pure helpers


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in [0, 1]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def p95_by_window(points: Sequence[tuple[float, float]], window_s: float) -> list[float]:
    """p95 latency of each consecutive window of ``window_s`` seconds of schedule, from
    ``(scheduled offset in s, latency in ms)`` points: rising values mean queueing that grows."""
    if not points or window_s <= 0:
        return []
    count = int(max(offset for offset, _ in points) // window_s) + 1
    windows: list[list[float]] = [[] for _ in range(count)]
    for offset, latency in points:
        windows[int(offset // window_s)].append(latency)
    return [round(percentile(window, 0.95), 1) for window in windows]


@dataclass(frozen=True)
class Sample:
    """One approval of an open-loop run: when it was scheduled (seconds from the schedule's start)
    and, in ms, how long until its outcome from the schedule (``end_to_end``), from the service's
    own approval timestamp (``service``), and until the client had the approval's answer
    (``client``). None: not measured (no outcome, or no approval timestamp)."""

    offset_s: float
    end_to_end_ms: float | None
    service_ms: float | None
    client_ms: float | None


def window_stats(
    samples: Sequence[Sample], window_s: float, count: int | None = None
) -> list[dict[str, Any]]:
    """Per consecutive window of ``window_s`` seconds of the schedule: how many approvals were
    scheduled in it, how many have an outcome, and p50 / p95 / max of the three latencies.
    ``count`` fixes the number of windows (default: up to the last sample's)."""
    if window_s <= 0:
        return []
    if count is None:
        count = int(max((s.offset_s for s in samples), default=-1.0) // window_s) + 1
    grouped: list[list[Sample]] = [[] for _ in range(count)]
    for sample in samples:
        index = int(sample.offset_s // window_s)
        if 0 <= index < count:
            grouped[index].append(sample)
    rows: list[dict[str, Any]] = []
    for index, group in enumerate(grouped):
        row: dict[str, Any] = {
            "from_s": round(index * window_s, 3),
            "to_s": round((index + 1) * window_s, 3),
            "scheduled": len(group),
            "succeeded": sum(1 for s in group if s.end_to_end_ms is not None),
        }
        for name in ("end_to_end", "service", "client"):
            values = [v for s in group if (v := getattr(s, f"{name}_ms")) is not None]
            row[name] = {
                "p50_ms": round(percentile(values, 0.50), 1),
                "p95_ms": round(percentile(values, 0.95), 1),
                "max_ms": round(max(values), 1) if values else math.nan,
            }
        rows.append(row)
    return rows


# An open-loop run "grows" when its last window's p95 is more than this many times its first's...
GROWTH_RATIO = 1.5
# ... and more than this many ms above it (a few ms of jitter on a small p95 is not growth) ...
GROWTH_MARGIN_MS = 25.0
# ... or when more than this many seconds of arrivals still had no outcome as the schedule ended.
BACKLOG_SECONDS = 1.0


def growth_verdict(windows: Sequence[Mapping[str, Any]], queue_at_end: int, rate: float) -> dict[str, Any]:
    """Whether latency grew over an open-loop run: the end-to-end p95 of its last window against
    its first, and the approvals still without an outcome when the last one was sent (a service
    that keeps up has about rate * latency of them; one that does not, a growing queue)."""
    first = windows[0]["end_to_end"]["p95_ms"] if windows else math.nan
    last = windows[-1]["end_to_end"]["p95_ms"] if windows else math.nan
    ratio = last / first if first and not math.isnan(first) and not math.isnan(last) else math.nan
    latency_grew = math.isnan(ratio) or (last > GROWTH_RATIO * first and last - first > GROWTH_MARGIN_MS)
    backlog_grew = queue_at_end > max(1.0, rate * BACKLOG_SECONDS)
    return {
        "first_window_p95_ms": first,
        "last_window_p95_ms": last,
        "last_to_first": round(ratio, 2) if not math.isnan(ratio) else math.nan,
        "queue_at_end": queue_at_end,
        "grows": latency_grew or backlog_grew,
    }


def queue_depth_at(moment: float, scheduled: Iterable[float], completed: Iterable[float]) -> int:
    """Approvals scheduled by ``moment`` whose outcome came after it (or never): the queue then."""
    due = [s for s in scheduled if s <= moment]
    done = sum(1 for c in completed if c <= moment)
    return max(0, len(due) - done)


@dataclass
class Snapshot:
    """What an open-loop run had used by a moment (seconds from the schedule's start): the service
    processes' CPU seconds, this process's (the load generator's), the pages of executions its
    polls had read, and the service's database files' sizes in bytes (SQLite: the ``-wal`` files)."""

    at_s: float
    service_cpu_s: float
    client_cpu_s: float
    list_pages: int
    files: dict[str, int] = field(default_factory=dict)
    service_rss_mib: float = math.nan  # the service processes' resident memory, summed


def resource_windows(snapshots: Sequence[Snapshot], completed_s: Iterable[float]) -> list[dict[str, Any]]:
    """Per interval between consecutive snapshots: the executions that completed in it (their
    ``completed_at``, seconds from the schedule's start), the service's CPU per execution, the load
    generator's CPU and pages read, and the database files' sizes at the interval's end. CPU per
    execution that rises from window to window while the rate stays the same is work that grows
    with the run."""
    moments = sorted(completed_s)
    rows: list[dict[str, Any]] = []
    for before, after in itertools.pairwise(snapshots):
        executions = sum(1 for moment in moments if before.at_s <= moment < after.at_s)
        cpu = after.service_cpu_s - before.service_cpu_s
        rows.append(
            {
                "from_s": before.at_s,
                "to_s": after.at_s,
                "executions": executions,
                "service_cpu_s": round(cpu, 2),
                "service_cpu_ms_per_execution": round(1000 * cpu / executions, 1) if executions else math.nan,
                "client_cpu_s": round(after.client_cpu_s - before.client_cpu_s, 2),
                "list_pages": after.list_pages - before.list_pages,
                "files": dict(after.files),
                "service_rss_mib": round(after.service_rss_mib, 1),
            }
        )
    return rows


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    if not values_ms:
        return {
            "p50_ms": math.nan,
            "p95_ms": math.nan,
            "p99_ms": math.nan,
            "mean_ms": math.nan,
            "max_ms": math.nan,
        }
    return {
        "p50_ms": round(percentile(values_ms, 0.50), 1),
        "p95_ms": round(percentile(values_ms, 0.95), 1),
        "p99_ms": round(percentile(values_ms, 0.99), 1),
        "mean_ms": round(statistics.fmean(values_ms), 1),
        "max_ms": round(max(values_ms), 1),
    }


def schedule(rate: float, seconds: float) -> list[float]:
    """Send offsets (seconds from the start) of an open-loop run: ``rate`` per second, evenly spaced."""
    if rate <= 0 or seconds <= 0:
        return []
    count = round(rate * seconds)
    return [index / rate for index in range(count)]


def throughput(timestamps: Iterable[float]) -> float:
    """Events per second between the first and the last timestamp: (n - 1) / span. NaN below two."""
    ordered = sorted(timestamps)
    if len(ordered) < 2 or ordered[-1] <= ordered[0]:
        return math.nan
    return (len(ordered) - 1) / (ordered[-1] - ordered[0])


def achieved_rate(first_scheduled: float, completions: Iterable[float]) -> float:
    """Completions per second from the first scheduled send to the last completion."""
    done = list(completions)
    if not done:
        return 0.0
    span = max(done) - first_scheduled
    return len(done) / span if span > 0 else math.nan


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------------------------
# The service under test


def resident_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux ``/proc``); NaN elsewhere."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return math.nan
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def database_files(directory: Path) -> dict[str, int]:
    """Sizes in bytes of the SQLite database files in ``directory`` (the databases, their ``-wal``
    and ``-shm`` files); nothing for a server database."""
    sizes: dict[str, int] = {}
    for path in sorted(directory.glob("*.db*")) + sorted(directory.glob("*.sqlite*")):
        if path.suffix != ".lock":
            try:
                sizes[path.name] = path.stat().st_size
            except OSError:
                continue
    return sizes


# ---------------------------------------------------------------------------------------------
# Scenarios

# Statuses in which an execution has ended without succeeding, or (AMBIGUOUS) waits for a person
# and so will not end while a benchmark waits for it.
ENDED_OTHERWISE = frozenset(
    {ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.EXPIRED, ExecutionStatus.AMBIGUOUS}
)
# How far before the earliest outstanding approval's scheduled send a poll reads changes from.
SINCE_MARGIN_SECONDS = 1.0
# Between such polls, how far before the newest change the previous poll saw (a change is stamped
# before its transaction commits, so one may become visible after a newer one) ...
RECENT_MARGIN_SECONDS = 2.0
# ... and every how many polls one reads back to the earliest outstanding approval again.
DEEP_POLL_EVERY = 10
# Executions per page of the account's listing a poll reads.
PAGE_SIZE = 100


def poll_since(oldest_not_before: float, newest_change: float | None, poll: int) -> float:
    """From what moment (epoch seconds) poll number ``poll`` reads the account's changes. An outcome
    changes its execution after the approval, so nothing older than the earliest outstanding
    approval's scheduled send (less :data:`SINCE_MARGIN_SECONDS`) can be missing: every
    :data:`DEEP_POLL_EVERY`-th poll, the first included, reads back to there. The others read only
    from a little before the newest change already seen, so that when the service falls behind
    (its outstanding approvals growing old) a poll does not reread the whole backlog's changes;
    what one of them misses the next deep poll finds, with its own ``completed_at``."""
    floor = oldest_not_before - SINCE_MARGIN_SECONDS
    if newest_change is None or poll % DEEP_POLL_EVERY == 0:
        return floor
    return max(floor, newest_change - RECENT_MARGIN_SECONDS)


def take_page(
    page: ExecutionPage,
    wanted: Container[str],
    done: dict[str, float],
    ended: set[str],
    newest: float | None,
) -> float | None:
    """One page of the account's listing (newest change first): of the ``wanted`` executions, a
    succeeded one's ``completed_at`` goes into ``done``, one that ended otherwise into ``ended``.
    Answers the newest change seen so far in this poll (``newest``, or this page's first)."""
    if newest is None and page.executions:
        newest = epoch(page.executions[0].updated_at)
    for item in page.executions:
        if item.action_intent_id not in wanted:
            continue
        if item.status is ExecutionStatus.SUCCEEDED and item.completed_at:
            done.setdefault(item.action_intent_id, epoch(item.completed_at))
        elif item.status in ENDED_OTHERWISE:
            ended.add(item.action_intent_id)
    return newest


def next_page(page: ExecutionPage, since: float) -> str | None:
    """The cursor of the page after this one, or None when a poll from ``since`` stops here: the
    listing ends, or this page already reaches changes older than ``since``."""
    if not page.next_token or not page.executions or epoch(page.executions[-1].updated_at) < since:
        return None
    return page.next_token


def changes_since(
    client: FulfillClient,
    account: str,
    since: float,
    wanted: Container[str],
    done: dict[str, float],
    ended: set[str],
) -> tuple[float | None, int]:
    """:meth:`Harness.changes_since` for a blocking client: the newest change's time (None: the
    account has none) and the number of pages read."""
    next_token: str | None = None
    newest: float | None = None
    pages = 0
    while True:
        page = client.list_executions(account, limit=PAGE_SIZE, next_token=next_token)
        pages += 1
        newest = take_page(page, wanted, done, ended, newest)
        next_token = next_page(page, since)
        if next_token is None:
            return newest, pages


# What ``POST /intents/{id}/approve`` answers when it accepts an approval.
APPROVAL_ACCEPTED = "202"


async def approval_answer(client: AsyncFulfillClient, intent: str) -> str:
    """How the service answered one approval: its HTTP status, or the transport error's name."""
    return (await approval_with_time(client, intent))[0]


async def approval_with_time(client: AsyncFulfillClient, intent: str) -> tuple[str, float | None]:
    """How the service answered one approval, and the approval's own timestamp (epoch seconds,
    the service's clock) when it was accepted and says it."""
    try:
        change = await client.approve(intent)
    except ApiError as exc:
        return str(exc.status), None
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    approvals = change.approvals or []
    return APPROVAL_ACCEPTED, epoch(approvals[-1].approved_at) if approvals else None


@dataclass
class Harness:
    url: str
    token: str
    progress: Progress
    poll_seconds: float = 0.5
    create_concurrency: int = 16
    alive: Callable[[], None] = lambda: None  # raises when a service process has exited
    poll_errors: int = 0
    list_pages: int = 0  # pages of executions read while polling for outcomes (a count per run)
    # CPU seconds so far of each service process, and the sizes of its database files (both empty
    # for a service the benchmark did not start): read at each window of an open-loop run.
    service_cpu: Callable[[], dict[str, float]] = dict
    database_files: Callable[[], dict[str, int]] = dict
    service_rss: Callable[[], dict[str, float]] = dict  # MiB resident per service process
    # Another person's token, for the approvals: nobody approves their own proposal (None: token).
    approver_token: str | None = None

    def client(self, connections: int = 64, *, approver: bool = False) -> AsyncFulfillClient:
        limits = default_limits(max_connections=connections, max_keepalive_connections=connections)
        token = (self.approver_token or self.token) if approver else self.token
        return AsyncFulfillClient(
            self.url, token, timeout=httpx.Timeout(120, connect=30, pool=120), limits=limits
        )

    async def create(self, client: AsyncFulfillClient, account: str, count: int, label: str) -> list[str]:
        task = self.progress.add_task(f"{label}: create intents", total=count)
        ids: list[str] = [""] * count
        semaphore = asyncio.Semaphore(self.create_concurrency)

        async def one(index: int) -> None:
            async with semaphore:
                created = await client.create_intent(
                    {
                        "action_type": ACTION_TYPE,
                        "account_id": account,
                        "parameters": {"title": f"load {index}"},
                    }
                )
                ids[index] = created.value.action_intent_id
                self.progress.advance(task)

        await asyncio.gather(*(one(index) for index in range(count)))
        self.progress.remove_task(task)
        return ids

    async def sweep(
        self, client: AsyncFulfillClient, account: str, status: str, known: dict[str, float], full: bool
    ) -> None:
        """Page through the account's executions in ``status``, newest first; unless ``full``, stop
        at the first page that brings nothing new."""
        next_token: str | None = None
        while True:
            page = await client.list_executions(account, limit=100, status=status, next_token=next_token)
            self.list_pages += 1
            new = 0
            for item in page.executions:
                if item.action_intent_id not in known and item.completed_at:
                    known[item.action_intent_id] = epoch(item.completed_at)
                    new += 1
            next_token = page.next_token
            if not next_token or (new == 0 and not full):
                return

    async def changes_since(
        self,
        client: AsyncFulfillClient,
        account: str,
        since: float,
        wanted: Container[str],
        done: dict[str, float],
        ended: set[str],
    ) -> float | None:
        """The account's executions that changed at or after ``since`` (epoch seconds), newest change
        first: of the ``wanted`` ones, a succeeded one's ``completed_at`` goes into ``done``, one that
        ended otherwise into ``ended``. Pages stop at the first entry older than ``since``. Answers
        the newest change's time (None: the account has none)."""
        next_token: str | None = None
        newest: float | None = None
        while True:
            page = await client.list_executions(account, limit=PAGE_SIZE, next_token=next_token)
            self.list_pages += 1
            newest = take_page(page, wanted, done, ended, newest)
            next_token = next_page(page, since)
            if next_token is None:
                return newest

    async def collect(
        self,
        client: AsyncFulfillClient,
        account: str,
        not_before: Mapping[str, float],
        deadline: float,
        task: Any,
        done: dict[str, float],
        ended: set[str] | None = None,
    ) -> None:
        """Poll until every intent of ``not_before`` has an outcome (or is in ``ended``: it ended
        without succeeding, or its approval was not accepted), or ``deadline`` (monotonic) passes.
        ``not_before`` holds, per intent, a moment (epoch seconds, this machine's clock, the
        service's too) its approval cannot precede: its scheduled send. Each poll reads only the
        account's changes since a moment (:func:`poll_since`): what a client waiting for its own
        outstanding actions reads, never the whole run. The outcome times are the service's
        ``completed_at``, whatever the poll's timing."""
        order = sorted(not_before, key=not_before.__getitem__)
        ended = set() if ended is None else ended
        oldest = 0  # index in ``order`` of the earliest intent still without an outcome
        newest: float | None = None  # the newest change an earlier poll saw
        polls = 0
        while True:
            while oldest < len(order) and (order[oldest] in done or order[oldest] in ended):
                oldest += 1
            if oldest == len(order):
                break
            since = poll_since(not_before[order[oldest]], newest, polls)
            polls += 1
            try:
                seen = await self.changes_since(client, account, since, not_before, done, ended)
                if seen is not None:
                    newest = seen if newest is None else max(newest, seen)
            except (httpx.HTTPError, ApiError):
                self.poll_errors += 1
                self.alive()
            self.progress.update(task, completed=len(done))
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(self.poll_seconds)
        self.progress.update(task, completed=len(done))

    async def failures(self, client: AsyncFulfillClient, account: str) -> int:
        failed: dict[str, float] = {}
        for status in ("FAILED", "CANCELLED", "EXPIRED"):
            await self.sweep(client, account, status, failed, full=True)
        return len(failed)

    def snapshot(self, at_s: float) -> Snapshot:
        return Snapshot(
            at_s=round(at_s, 3),
            service_cpu_s=sum(self.service_cpu().values()),
            client_cpu_s=time.process_time(),
            list_pages=self.list_pages,
            files=self.database_files(),
            service_rss_mib=sum(self.service_rss().values()) if self.service_rss() else math.nan,
        )

    async def sample(
        self,
        snapshots: list[Snapshot],
        start_mono: float,
        start_wall: float,
        window_s: float,
        until: asyncio.Task[None],
    ) -> None:
        """A snapshot at the schedule's start and at the end of each window of it, until ``until``
        is done (the drain's windows included), then one at that moment."""
        index = 0
        while True:
            delay = start_mono + index * window_s - time.monotonic()
            if delay > 0:
                await asyncio.wait({until}, timeout=delay)
            if until.done():
                break
            snapshots.append(self.snapshot(index * window_s))
            index += 1
        snapshots.append(self.snapshot(time.time() - start_wall))
        pages0 = snapshots[0].list_pages  # counted from the schedule's start
        for snapshot in snapshots:
            snapshot.list_pages -= pages0

    async def open_loop(
        self, account: str, rate: float, seconds: float, drain: float, window_s: float = 10.0
    ) -> dict[str, Any]:
        label = f"{rate:g}/s"
        offsets = schedule(rate, seconds)
        connections = max(64, int(rate * 10))
        async with self.client(connections) as client, self.client(connections, approver=True) as approver:
            ids = await self.create(client, account, len(offsets), label)
            sent = self.progress.add_task(f"{label}: approvals sent", total=len(ids))
            finished = self.progress.add_task(f"{label}: outcomes", total=len(ids))
            codes: dict[str, int] = {}
            lags: list[float] = []
            start_mono = time.monotonic() + 0.5
            start_wall = time.time() + (start_mono - time.monotonic())
            scheduled = {intent: start_wall + offset for intent, offset in zip(ids, offsets, strict=True)}

            approved_at: dict[str, float] = {}
            answered_in: dict[str, float] = {}
            refused: set[str] = set()

            async def approve(intent: str, due: float) -> None:
                lags.append(time.monotonic() - due)
                key, stamp = await approval_with_time(approver, intent)
                # As the client sees it: from the scheduled send to the approval's answer.
                answered_in[intent] = (time.monotonic() - due) * 1000
                if stamp is not None:
                    approved_at[intent] = stamp
                if key != APPROVAL_ACCEPTED:
                    refused.add(intent)  # no outcome will come: the polls stop waiting for it
                codes[key] = codes.get(key, 0) + 1
                self.progress.advance(sent)

            done: dict[str, float] = {}
            last_due = start_mono + (offsets[-1] if offsets else 0)
            poller = asyncio.create_task(
                self.collect(client, account, scheduled, last_due + drain, finished, done, refused)
            )
            snapshots: list[Snapshot] = []
            sampler = asyncio.create_task(self.sample(snapshots, start_mono, start_wall, window_s, poller))
            tasks = []
            for intent, offset in zip(ids, offsets, strict=True):
                due = start_mono + offset
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(approve(intent, due)))
            await asyncio.gather(*tasks)
            await poller
            await sampler
            failed = await self.failures(client, account)
            for task in (sent, finished):
                self.progress.remove_task(task)
        latencies = [(done[i] - scheduled[i]) * 1000 for i in ids if i in done]
        window = max(1.0, seconds / 4)
        timeline = [(scheduled[i] - start_wall, (done[i] - scheduled[i]) * 1000) for i in ids if i in done]
        samples = [
            Sample(
                offset_s=scheduled[i] - start_wall,
                end_to_end_ms=(done[i] - scheduled[i]) * 1000 if i in done else None,
                service_ms=(done[i] - approved_at[i]) * 1000 if i in done and i in approved_at else None,
                client_ms=answered_in.get(i),
            )
            for i in ids
        ]
        windows = window_stats(samples, window_s, count=max(1, math.ceil(seconds / window_s)))
        last_send = start_wall + (offsets[-1] if offsets else 0.0)
        queue_at_end = queue_depth_at(last_send, scheduled.values(), done.values())
        service_latencies = [s.service_ms for s in samples if s.service_ms is not None]
        client_latencies = [s.client_ms for s in samples if s.client_ms is not None]
        return {
            "scenario": "open loop",
            "window_s": window,
            "p95_by_window_ms": p95_by_window(timeline, window),
            "windows_s": window_s,
            "windows": windows,
            "resources": resource_windows(snapshots, [done[i] - start_wall for i in ids if i in done]),
            "list_pages": snapshots[-1].list_pages if snapshots else 0,
            "growth": growth_verdict(windows, queue_at_end, rate),
            "service": summary(service_latencies),
            "client": summary(client_latencies),
            "offered_per_s": rate,
            "seconds": seconds,
            "approvals": len(ids),
            "succeeded": len(latencies),
            "failed": failed,
            "not_finished": len(ids) - len(latencies) - failed,
            "drain_timeout_s": drain,
            "http": codes,
            "send_lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
            "achieved_per_s": round(achieved_rate(start_wall, (done[i] for i in ids if i in done)), 1),
            "executions_per_s": round(throughput(done[i] for i in ids if i in done), 1),
            **summary(latencies),
        }

    async def burst(self, account: str, count: int, drain: float) -> dict[str, Any]:
        label = f"burst {count}"
        async with (
            self.client(max(64, count)) as client,
            self.client(max(64, count), approver=True) as approver,
        ):
            ids = await self.create(client, account, count, label)
            sent = self.progress.add_task(f"{label}: approvals sent", total=count)
            finished = self.progress.add_task(f"{label}: outcomes", total=count)
            codes: dict[str, int] = {}

            async def approve(intent: str) -> None:
                key = await approval_answer(approver, intent)
                if key != APPROVAL_ACCEPTED:
                    refused.add(intent)
                codes[key] = codes.get(key, 0) + 1
                self.progress.advance(sent)

            done: dict[str, float] = {}
            refused: set[str] = set()
            started = time.time()
            poller = asyncio.create_task(
                self.collect(
                    client,
                    account,
                    dict.fromkeys(ids, started),
                    time.monotonic() + drain,
                    finished,
                    done,
                    refused,
                )
            )
            await asyncio.gather(*(approve(intent) for intent in ids))
            sent_all = time.time() - started
            await poller
            failed = await self.failures(client, account)
            for task in (sent, finished):
                self.progress.remove_task(task)
        completions = [done[i] for i in ids if i in done]
        return {
            "scenario": "burst",
            "approvals": count,
            "succeeded": len(completions),
            "failed": failed,
            "not_finished": count - len(completions) - failed,
            "drain_timeout_s": drain,
            "http": codes,
            "all_approvals_answered_s": round(sent_all, 2),
            "executions_per_s": round(throughput(completions), 1),
            "achieved_per_s": round(achieved_rate(started, completions), 1),
            **summary([(c - started) * 1000 for c in completions]),
        }

    async def serial(self, account: str, count: int, warmup: int) -> dict[str, Any]:
        """One at a time: latency = outcome ``completed_at`` minus intent ``approval_timestamp``."""
        async with self.client(4) as client, self.client(4, approver=True) as approver:
            ids = await self.create(client, account, count + warmup, "one at a time")
            task = self.progress.add_task("one at a time: executions", total=count + warmup)
            latencies: list[float] = []
            for index, intent in enumerate(ids):
                await approver.approve(intent)
                deadline = time.monotonic() + 60
                while True:
                    status = await client.execution_status(intent)
                    if status.completed_at and status.status != ExecutionStatus.RUNNING:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{intent} did not finish")
                    await asyncio.sleep(0.005)
                if status.status != ExecutionStatus.SUCCEEDED:
                    raise RuntimeError(f"{intent} ended {status.status.value}")
                approved = (await client.get_intent(intent)).approval_timestamp
                if index >= warmup:
                    assert approved is not None  # an executed intent was approved
                    latencies.append((epoch(status.completed_at) - epoch(approved)) * 1000)
                self.progress.advance(task)
            self.progress.remove_task(task)
        return {
            "scenario": "one at a time",
            "approvals": count,
            "succeeded": len(latencies),
            **summary(latencies),
        }


# ---------------------------------------------------------------------------------------------
# Running, reporting


@dataclass
class LoadOptions:
    url: str | None = None
    token: str | None = None
    approver_token: str | None = None  # another subject's, for the approvals (None: token)
    jwt_secret: str | None = None
    tenant: str = "bench-load"
    database_url: str | None = None
    workers: int = 0
    rates: list[float] = field(default_factory=lambda: [10.0, 20.0, 50.0, 100.0])
    seconds: float = 15.0
    window: float = 10.0  # seconds of schedule per row of the open-loop runs' window tables
    burst: int = 400
    serial: int = 100
    drain: float = 60.0
    floor: bool = True
    json_path: Path | None = None
    append_doc: Path | None = None
    command: str = ""


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
    }


def run(options: LoadOptions, console: Console) -> dict[str, Any]:
    from fulfill import __version__
    from fulfill.config import Settings
    from fulfill.tokens import mint_token

    run_id = dt.datetime.now(dt.UTC).strftime("%H%M%S") + secrets.token_hex(2)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": options.command,
        "fulfill_version": __version__,
        "machine": machine(),
        "scenarios": [],
    }
    group: ServiceGroup | None = None
    workdir = Path(tempfile.mkdtemp(prefix="fulfill-load-"))
    try:
        if options.url:
            url = options.url.rstrip("/")
            secret = options.jwt_secret
            result["service"] = {"url": url, "started_by_bench": False}
        else:
            secret = options.jwt_secret or secrets.token_urlsafe(48)
            database_url = options.database_url or f"sqlite:///{workdir / 'fulfill.db'}"
            group = ServiceGroup(database_url, options.workers, secret, workdir)
            with console.status("starting the service…"):
                group.start()
            url = group.api_url
            from sqlalchemy.engine import make_url

            result["service"] = {
                "started_by_bench": True,
                "database": make_url(database_url).get_backend_name(),
                "topology": "all" if options.workers <= 0 else f"api + {options.workers} worker(s)",
                "logs": str(workdir),
            }
        approver_token = options.approver_token
        if options.token:
            token = options.token
        elif secret:
            token = mint_token(
                Settings(jwt_secret=secret), tenant_id=options.tenant, scopes=list(INTENT_CLIENT_SCOPES)
            )
            # Another person approves: nobody approves a proposal made with their own subject.
            approver_token = approver_token or mint_token(
                Settings(jwt_secret=secret),
                tenant_id=options.tenant,
                scopes=list(INTENT_CLIENT_SCOPES),
                subject="bench-load-approver",
            )
        else:
            raise ValueError("--url needs --token or --jwt-secret")

        cpu_before = {name: cpu_seconds(pid) for name, pid in (group.pids() if group else {}).items()}
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            harness = Harness(url, token, progress, approver_token=approver_token)
            if group is not None:
                harness.alive = group.check_alive
                harness.service_cpu = lambda: {n: cpu_seconds(p) for n, p in group.pids().items()}
                harness.database_files = lambda: database_files(workdir)
                harness.service_rss = lambda: {n: resident_mib(p) for n, p in group.pids().items()}

            async def scenarios() -> None:
                for rate in options.rates:
                    account = f"load-{run_id}-r{rate:g}"
                    cpu0 = {n: cpu_seconds(p) for n, p in (group.pids() if group else {}).items()}
                    started = time.monotonic()
                    row = await harness.open_loop(
                        account, rate, options.seconds, options.drain, options.window
                    )
                    row["service_cpu_s"] = _cpu_delta(group, cpu0)
                    row["wall_s"] = round(time.monotonic() - started, 1)
                    result["scenarios"].append(row)
                if options.burst > 0:
                    cpu0 = {n: cpu_seconds(p) for n, p in (group.pids() if group else {}).items()}
                    row = await harness.burst(f"load-{run_id}-burst", options.burst, options.drain)
                    row["service_cpu_s"] = _cpu_delta(group, cpu0)
                    if row["service_cpu_s"]:
                        # Every process's CPU for the scenario (the creations, the approvals, the
                        # status reads and the executions), per execution: a count a busy machine
                        # does not distort the way it does executions/s.
                        row["cpu_ms_per_execution"] = round(
                            1000 * sum(row["service_cpu_s"].values()) / options.burst, 1
                        )
                    result["scenarios"].append(row)
                if options.serial > 0:
                    row = await harness.serial(f"load-{run_id}-serial", options.serial, warmup=10)
                    result["scenarios"].append(row)

            asyncio.run(scenarios())
        if group:
            result["service"]["cpu_s_total"] = _cpu_delta(group, cpu_before)
    finally:
        if group:
            group.stop()
    if options.floor:
        from fulfill_tools.floor import run_floor  # registers the floor's DBOS workflow

        result["floor"] = run_floor(max(options.serial, 20), max(options.burst, 20), console)
    return result


def _cpu_delta(group: ServiceGroup | None, before: dict[str, float]) -> dict[str, float]:
    if group is None:
        return {}
    return {name: round(cpu_seconds(pid) - before.get(name, 0.0), 1) for name, pid in group.pids().items()}


def _ms(value: Any) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def _rate(value: Any) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


HEADERS = [
    "scenario",
    "sent",
    "ok",
    "unfinished",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "achieved/s",
    "executions/s",
]


def rows(result: dict[str, Any]) -> list[list[str]]:
    table: list[list[str]] = []
    for row in result["scenarios"]:
        if row["scenario"] == "open loop":
            name = f"open loop {row['offered_per_s']:g}/s, {row['seconds']:g} s"
        elif row["scenario"] == "burst":
            name = f"burst of {row['approvals']}"
        else:
            name = "one at a time"
        unfinished = row.get("not_finished", 0)
        failed = row.get("failed", 0)
        table.append(
            [
                name,
                str(row["approvals"]),
                str(row["succeeded"]),
                f"{unfinished}" + (f" (+{failed} failed)" if failed else ""),
                _ms(row["p50_ms"]),
                _ms(row["p95_ms"]),
                _ms(row["p99_ms"]),
                _ms(row["max_ms"]),
                _rate(row.get("achieved_per_s")),
                _rate(row.get("executions_per_s")),
            ]
        )
    floor = result.get("floor")
    if floor:
        serial, burst = floor["serial"], floor["burst"]
        table.append(
            [
                f"bare DBOS, {floor['steps']} no-op steps, one at a time",
                str(serial["count"]),
                str(serial["count"]),
                "0",
            ]
            + [_ms(serial[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
            + ["—", "—"]
        )
        direct = floor.get("serial_direct")
        if direct:
            table.append(
                [
                    f"bare DBOS, {floor['steps']} no-op steps, one at a time, started directly",
                    str(direct["count"]),
                    str(direct["count"]),
                    "0",
                ]
                + [_ms(direct[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
                + ["—", "—"]
            )
        table.append(
            [
                f"bare DBOS, {floor['steps']} no-op steps, burst of {burst['count']}",
                str(burst["count"]),
                str(burst["count"]),
                "0",
            ]
            + [_ms(burst[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
            + ["—", _rate(burst["executions_per_s"])]
        )
    return table


def cpu_text(result: Mapping[str, Any]) -> str | None:
    """The burst's CPU per execution next to the bare floor's, when both were measured."""
    burst = next((row for row in result["scenarios"] if row["scenario"] == "burst"), None)
    floor = (result.get("floor") or {}).get("burst") or {}
    if burst is None or "cpu_ms_per_execution" not in burst:
        return None
    text = (
        f"burst CPU per execution: {burst['cpu_ms_per_execution']:.1f} ms in the service "
        "(creations, approvals, status reads and executions)"
    )
    if floor.get("cpu_ms_per_execution"):
        ratio = burst["cpu_ms_per_execution"] / floor["cpu_ms_per_execution"]
        text += f"; bare DBOS floor {floor['cpu_ms_per_execution']:.2f} ms (x{ratio:.1f})"
    return text


def rich_table(result: dict[str, Any]) -> Table:
    table = Table(*HEADERS, title="fulfill load benchmark", caption=cpu_text(result))
    for row in rows(result):
        table.add_row(*row)
    return table


WINDOW_HEADERS = [
    "window s",
    "sent",
    "ok",
    "p50 ms",
    "p95 ms",
    "max ms",
    "service p95 ms",
    "service max ms",
    "client p95 ms",
    "client max ms",
]


def window_rows(row: Mapping[str, Any]) -> list[list[str]]:
    """An open-loop run's windows: end to end (from the scheduled send to the outcome), from the
    service's approval timestamp to the outcome, and the approval's answer as the client saw it."""
    table: list[list[str]] = []
    for window in row.get("windows", []):
        e2e, service, client = window["end_to_end"], window["service"], window["client"]
        table.append(
            [
                f"{window['from_s']:g}-{window['to_s']:g}",
                str(window["scheduled"]),
                str(window["succeeded"]),
                _ms(e2e["p50_ms"]),
                _ms(e2e["p95_ms"]),
                _ms(e2e["max_ms"]),
                _ms(service["p95_ms"]),
                _ms(service["max_ms"]),
                _ms(client["p95_ms"]),
                _ms(client["max_ms"]),
            ]
        )
    return table


RESOURCE_HEADERS = [
    "window s",
    "executions",
    "service CPU-ms per execution",
    "service MiB",
    "client CPU s",
    "pages read",
    "WAL KiB",
]


def resource_rows(row: Mapping[str, Any]) -> list[list[str]]:
    """An open-loop run's resources by window: executions completed in it, the service's CPU per
    execution, its resident memory at the window's end, the load generator's CPU and the pages of
    executions its polls read, and the SQLite ``-wal`` files' sizes at the window's end."""
    table: list[list[str]] = []
    for window in row.get("resources", []):
        wal = " / ".join(
            f"{size // 1024:,}" for name, size in sorted(window["files"].items()) if name.endswith("-wal")
        )
        table.append(
            [
                f"{window['from_s']:g}-{window['to_s']:g}",
                str(window["executions"]),
                _ms(window["service_cpu_ms_per_execution"]),
                _ms(window.get("service_rss_mib")),
                f"{window['client_cpu_s']:.2f}",
                str(window["list_pages"]),
                wal or "—",
            ]
        )
    return table


def verdict_text(row: Mapping[str, Any]) -> str:
    growth = row["growth"]
    word = "GROWS" if growth["grows"] else "no growth"
    return (
        f"{word}: p95 of the last window {_ms(growth['last_window_p95_ms'])} ms against the first's "
        f"{_ms(growth['first_window_p95_ms'])} ms (x{growth['last_to_first']}), "
        f"{growth['queue_at_end']} without an outcome as the last approval was sent"
    )


def window_tables(result: dict[str, Any]) -> list[Table]:
    tables = []
    for row in result["scenarios"]:
        if row["scenario"] != "open loop" or not row.get("windows"):
            continue
        table = Table(
            *WINDOW_HEADERS,
            title=f"open loop {row['offered_per_s']:g}/s by {row['windows_s']:g}-s window",
            caption=verdict_text(row),
        )
        for cells in window_rows(row):
            table.add_row(*cells)
        tables.append(table)
        if row.get("resources"):
            used = Table(
                *RESOURCE_HEADERS,
                title=f"open loop {row['offered_per_s']:g}/s: what each window used (by completion time)",
            )
            for cells in resource_rows(row):
                used.add_row(*cells)
            tables.append(used)
    return tables


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    service = result["service"]
    where = (
        f"`fulfill serve` started by the benchmark ({service['database']}, {service['topology']})"
        if service.get("started_by_bench")
        else f"the service at {service['url']}"
    )
    lines = [
        f"## Load benchmark, {result['date'][:10]}",
        "",
        "```bash",
        result["command"],
        "```",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['system']}, Python {m['python']}; "
        f"fulfill {result['fulfill_version']}; {where}; the load generator on the same machine.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(result)]
    lines.append("")
    cpu = cpu_text(result)
    if cpu:
        lines.append(f"- {cpu}")
    for row in result["scenarios"]:
        if row["scenario"] == "open loop" and row.get("p95_by_window_ms"):
            windows = ", ".join(_ms(value) for value in row["p95_by_window_ms"])
            lines.append(
                f"- open loop {row['offered_per_s']:g}/s: p95 by {row['window_s']:g}-s window of the "
                f"schedule: {windows} ms"
            )
    for row in result["scenarios"]:
        if row["scenario"] != "open loop" or not row.get("windows"):
            continue
        lines += [
            "",
            f"Open loop {row['offered_per_s']:g}/s by {row['windows_s']:g}-s window of the schedule "
            "(end to end from the scheduled send; service: from its approval timestamp; client: the "
            "approval's answer):",
            "",
            "| " + " | ".join(WINDOW_HEADERS) + " |",
            "|" + "---|" * len(WINDOW_HEADERS),
        ]
        lines += ["| " + " | ".join(cells) + " |" for cells in window_rows(row)]
        lines += ["", verdict_text(row) + "."]
        if row.get("resources"):
            lines += [
                "",
                "| " + " | ".join(RESOURCE_HEADERS) + " |",
                "|" + "---|" * len(RESOURCE_HEADERS),
            ]
            lines += ["| " + " | ".join(cells) + " |" for cells in resource_rows(row)]
    lines.append("")
    return "\n".join(lines)


def report(result: dict[str, Any], options: LoadOptions, console: Console) -> None:
    console.print(rich_table(result))
    for table in window_tables(result):
        console.print(table)
    if options.json_path:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(result, indent=2) + "\n")
    if options.append_doc:
        text = options.append_doc.read_text() if options.append_doc.exists() else "# Performance\n"
        options.append_doc.write_text(text.rstrip("\n") + "\n\n" + markdown(result))
        console.print(f"appended to {options.append_doc}")


def command_line(argv: Sequence[str] | None = None) -> str:
    args = list(sys.argv if argv is None else argv)
    program = args[0]
    if os.path.isabs(program) and Path(program).is_relative_to(Path.cwd()):
        program = os.path.relpath(program)
    return shlex.join([program, *args[1:]])
