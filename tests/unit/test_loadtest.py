"""The pure parts of the load benchmark: percentiles, schedules, throughput."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any, cast

import pytest
from rich.console import Console
from rich.progress import Progress

from fulfill_tools.loadtest import (
    Harness,
    achieved_rate,
    epoch,
    percentile,
    schedule,
    summary,
    throughput,
)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.5) in (50.0, 51.0)
    assert percentile(values, 0.99) == 99.0
    assert percentile(list(reversed(values)), 0.95) == percentile(values, 0.95)


def test_percentile_of_one_and_of_none() -> None:
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_summary_rounds_and_handles_empty() -> None:
    result = summary([10.0, 20.0, 30.0])
    assert result["p50_ms"] == 20.0
    assert result["max_ms"] == 30.0
    assert result["mean_ms"] == 20.0
    assert all(math.isnan(v) for v in summary([]).values())


def test_schedule_is_evenly_spaced_at_the_rate() -> None:
    offsets = schedule(20, 15)
    assert len(offsets) == 300
    assert offsets[0] == 0.0
    assert offsets[1] == pytest.approx(0.05)
    assert offsets[-1] == pytest.approx(299 / 20)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert gaps == {0.05}


def test_schedule_of_nothing() -> None:
    assert schedule(0, 10) == []
    assert schedule(10, 0) == []
    assert len(schedule(2.5, 2)) == 5


def test_throughput_counts_intervals_between_first_and_last() -> None:
    assert throughput([3.0, 1.0, 2.0, 5.0]) == pytest.approx(3 / 4)
    assert math.isnan(throughput([1.0]))
    assert math.isnan(throughput([2.0, 2.0]))


def test_achieved_rate_from_first_scheduled_send() -> None:
    assert achieved_rate(100.0, [101.0, 102.0, 104.0]) == pytest.approx(3 / 4)
    assert achieved_rate(100.0, []) == 0.0


def test_epoch_reads_the_services_timestamps() -> None:
    assert epoch("1970-01-01T00:00:01Z") == 1.0
    assert epoch("1970-01-01T00:00:01.500+00:00") == 1.5


def test_p95_by_window_shows_growth_over_the_run() -> None:
    from fulfill_tools.loadtest import p95_by_window

    steady = [(t / 10, 50.0) for t in range(100)]
    assert p95_by_window(steady, 2.5) == [50.0, 50.0, 50.0, 50.0]
    growing = [(t / 10, 10.0 * t) for t in range(100)]
    windows = p95_by_window(growing, 2.5)
    assert len(windows) == 4
    assert windows == sorted(windows)
    assert windows == [230.0, 480.0, 730.0, 980.0]
    assert p95_by_window([], 1.0) == []


def test_window_stats_give_p50_p95_max_of_each_latency_per_window() -> None:
    from fulfill_tools.loadtest import Sample, window_stats

    samples = [Sample(t / 10, 10.0 * t, 5.0 * t, 1.0) for t in range(40)]
    samples.append(Sample(3.95, None, None, 2.0))  # sent, no outcome
    windows = window_stats(samples, 2.0, count=3)
    assert [(w["from_s"], w["to_s"], w["scheduled"], w["succeeded"]) for w in windows] == [
        (0.0, 2.0, 20, 20),
        (2.0, 4.0, 21, 20),
        (4.0, 6.0, 0, 0),
    ]
    first, second, empty = windows
    assert first["end_to_end"] == {"p50_ms": 100.0, "p95_ms": 180.0, "max_ms": 190.0}
    assert first["service"] == {"p50_ms": 50.0, "p95_ms": 90.0, "max_ms": 95.0}
    assert second["client"]["max_ms"] == 2.0  # the unanswered outcome still counts as sent
    assert math.isnan(empty["end_to_end"]["p95_ms"])
    assert window_stats(samples, 0) == []
    assert len(window_stats(samples, 1.0)) == 4  # by default, up to the last sample's window


def _windows(*p95s: float) -> list[dict[str, dict[str, float]]]:
    return [{"end_to_end": {"p95_ms": p95}} for p95 in p95s]


def test_growth_verdict_compares_the_last_window_with_the_first_and_reads_the_queue() -> None:
    from fulfill_tools.loadtest import growth_verdict

    steady = growth_verdict(_windows(80.0, 95.0, 90.0), queue_at_end=4, rate=50)
    assert (steady["grows"], steady["last_to_first"], steady["queue_at_end"]) == (False, 1.12, 4)
    # Small p95s jitter: 20 → 40 ms is twice, but within the margin.
    assert growth_verdict(_windows(20.0, 40.0), 1, rate=50)["grows"] is False
    assert growth_verdict(_windows(80.0, 130.0), 1, rate=50)["grows"] is True
    # Latency flat but more than a second of arrivals queued when the schedule ended.
    assert growth_verdict(_windows(80.0, 80.0), 51, rate=50)["grows"] is True
    assert growth_verdict(_windows(80.0, 80.0), 50, rate=50)["grows"] is False
    # No outcome in the last window: nothing shows it kept up.
    assert growth_verdict(_windows(80.0, math.nan), 0, rate=50)["grows"] is True


def test_queue_depth_counts_what_was_due_and_not_done_at_a_moment() -> None:
    from fulfill_tools.loadtest import queue_depth_at

    scheduled = [0.0, 1.0, 2.0, 3.0]
    assert queue_depth_at(2.0, scheduled, [0.5, 1.5, 2.5]) == 1  # the one due at 2.0
    assert queue_depth_at(3.0, scheduled, [0.5, 1.5]) == 2
    assert queue_depth_at(3.0, scheduled, [0.5, 1.5, 2.5, 2.9]) == 0
    assert queue_depth_at(-1.0, scheduled, []) == 0


def test_the_report_shows_the_direct_start_floor_next_to_the_queue_floor() -> None:
    from fulfill_tools.loadtest import rows

    stats = {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "max_ms": 4.0}
    floor = {
        "steps": 3,
        "serial": {"count": 20, **stats},
        "serial_direct": {"count": 20, **stats},
        "burst": {"count": 400, "executions_per_s": 100.0, **stats},
    }
    names = [row[0] for row in rows({"scenarios": [], "floor": floor})]
    assert names == [
        "bare DBOS, 3 no-op steps, one at a time",
        "bare DBOS, 3 no-op steps, one at a time, started directly",
        "bare DBOS, 3 no-op steps, burst of 400",
    ]
    # A result written before the direct-start floor existed still reads.
    del floor["serial_direct"]
    assert len(rows({"scenarios": [], "floor": floor})) == 2


def test_the_report_sets_the_bursts_cpu_per_execution_next_to_the_floors() -> None:
    from fulfill_tools.loadtest import cpu_text, markdown

    stats = {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "max_ms": 4.0}
    burst = {
        "scenario": "burst",
        "approvals": 400,
        "succeeded": 400,
        "executions_per_s": 50.0,
        "cpu_ms_per_execution": 25.0,
        **stats,
    }
    floor = {
        "steps": 3,
        "serial": {"count": 20, **stats},
        "burst": {"count": 400, "executions_per_s": 200.0, "cpu_ms_per_execution": 5.0, **stats},
    }
    result = {
        "scenarios": [burst],
        "floor": floor,
        "date": "2026-12-05T06:00:00+00:00",
        "command": "python -m bench.load --burst 400",
        "fulfill_version": "0",
        "machine": {"nproc": 2, "cpu": "x", "system": "Linux", "python": "3.11"},
        "service": {"started_by_bench": True, "database": "sqlite", "topology": "all"},
    }
    assert cpu_text(result) == (
        "burst CPU per execution: 25.0 ms in the service (creations, approvals, status reads and "
        "executions); bare DBOS floor 5.00 ms (x5.0)"
    )
    assert cpu_text(result) in markdown(result)
    # Without the floor: the service's figure alone; a service not started by the benchmark has none.
    assert cpu_text({"scenarios": [burst]}) == (
        "burst CPU per execution: 25.0 ms in the service (creations, approvals, status reads and executions)"
    )
    del burst["cpu_ms_per_execution"]
    assert cpu_text(result) is None
    assert "CPU per execution" not in markdown(result)


# --- polling for outcomes: only what changed since the oldest outstanding approval ------------


def _iso(moment: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _Account:
    """An account's executions as ``GET /accounts/{id}/executions`` pages them: newest change first,
    100 a page; counts the pages it served."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, str, float | None]] = {}  # id -> (updated, status, completed)
        self.pages = 0

    def change(self, intent: str, at: float, status: str, completed: float | None = None) -> None:
        self.rows[intent] = (at, status, completed)

    async def list_executions(
        self, account_id: str, *, limit: int = 50, status: str | None = None, next_token: str | None = None
    ) -> object:
        return self.page(account_id, limit=limit, status=status, next_token=next_token)

    def page(
        self, account_id: str, *, limit: int = 50, status: str | None = None, next_token: str | None = None
    ) -> object:
        from fulfill.usecases.executions import ExecutionPage, ListedExecutionView

        self.pages += 1
        ordered = sorted(self.rows.items(), key=lambda item: (item[1][0], item[0]), reverse=True)
        ordered = [item for item in ordered if status is None or item[1][1] == status]
        start = int(next_token or 0)
        page = ordered[start : start + limit]
        items = [
            ListedExecutionView(
                action_intent_id=intent,
                status=state,
                completed_at=_iso(completed) if completed is not None else None,
                account_id=account_id,
                action_type="CREATE_INTERNAL_TASK",
                updated_at=_iso(updated),
            )
            for intent, (updated, state, completed) in page
        ]
        more = start + limit < len(ordered)
        return ExecutionPage(executions=items, next_token=str(start + limit) if more else None)


class _BlockingAccount(_Account):
    """The same account, as the blocking client (``FulfillClient``) reads it."""

    def list_executions(  # type: ignore[override]
        self, account_id: str, *, limit: int = 50, status: str | None = None, next_token: str | None = None
    ) -> object:
        return self.page(account_id, limit=limit, status=status, next_token=next_token)


def test_a_blocking_poll_stops_at_the_first_page_older_than_its_moment_and_counts_its_pages() -> None:
    from fulfill_tools.loadtest import changes_since

    account = _BlockingAccount()
    for index in range(300):  # another phase's executions, long finished: never paged through
        account.change(f"old-{index}", 100.0 + index, "SUCCEEDED", 100.0 + index)
    for index in range(150):  # this phase's, approved at 7000; every tenth waits for a person
        state = "AMBIGUOUS" if index % 10 == 0 else "SUCCEEDED"
        completed = 7000.0 + index / 1000 if state == "SUCCEEDED" else None
        account.change(f"i{index:03}", 7000.0 + index / 1000, state, completed)
    wanted = {f"i{index:03}" for index in range(150)}
    done: dict[str, float] = {}
    ended: set[str] = set()
    newest, pages = changes_since(cast(Any, account), "acct", 6999.0, wanted, done, ended)
    # The second page reaches the old executions: the poll stops there, not after five pages.
    assert (pages, account.pages) == (2, 2)
    assert newest == pytest.approx(7000.149)
    assert ended == {f"i{index:03}" for index in range(0, 150, 10)}  # it will not end on its own
    assert set(done) == wanted - ended
    assert done["i149"] == pytest.approx(7000.149)


def _harness() -> Harness:
    return Harness("http://service.invalid", "token", Progress(console=Console(quiet=True)), poll_seconds=0)


def test_a_poll_reads_only_the_changes_since_the_oldest_outstanding_approval() -> None:
    import asyncio

    account = _Account()
    # 1,000 executions finished long before (another run's): no poll should page through them.
    for index in range(1000):
        account.change(f"old-{index}", 1000.0 + index, "SUCCEEDED", 1000.0 + index)
    # Three approvals scheduled at 5000, 5001, 5002; two succeed, the third fails.
    account.change("a", 5000.2, "SUCCEEDED", 5000.2)
    account.change("b", 5001.3, "SUCCEEDED", 5001.25)
    account.change("c", 5002.1, "FAILED")
    harness = _harness()
    done: dict[str, float] = {}
    task = harness.progress.add_task("outcomes", total=3)
    not_before = {"a": 5000.0, "b": 5001.0, "c": 5002.0}
    asyncio.run(harness.collect(cast(Any, account), "acct", not_before, time.monotonic() + 5, task, done))
    assert done == {"a": pytest.approx(5000.2), "b": pytest.approx(5001.25)}
    # One poll, one page: the failed one ended the wait, the old executions were never read.
    assert account.pages == harness.list_pages == 1


def test_a_poll_pages_on_while_the_page_is_newer_than_the_oldest_outstanding_approval() -> None:
    import asyncio

    account = _Account()
    for index in range(250):  # all approved at 7000 and finished at 7000 + index / 1000
        account.change(f"i{index:03}", 7000.0 + index / 1000, "SUCCEEDED", 7000.0 + index / 1000)
    for index in range(300):
        account.change(f"old-{index}", 100.0 + index, "SUCCEEDED", 100.0 + index)
    harness = _harness()
    done: dict[str, float] = {}
    task = harness.progress.add_task("outcomes", total=250)
    not_before = {f"i{index:03}": 7000.0 for index in range(250)}
    asyncio.run(harness.collect(cast(Any, account), "acct", not_before, time.monotonic() + 5, task, done))
    assert len(done) == 250
    assert done["i249"] == pytest.approx(7000.249)
    assert account.pages == 3  # 100 + 100 + 50 newer, the third page reaches older ones


def test_polling_stops_at_the_deadline_when_an_outcome_never_comes() -> None:
    import asyncio

    account = _Account()
    account.change("a", 10.0, "RUNNING")
    harness = _harness()
    done: dict[str, float] = {}
    task = harness.progress.add_task("outcomes", total=1)
    asyncio.run(harness.collect(cast(Any, account), "acct", {"a": 9.5}, time.monotonic() + 0.05, task, done))
    assert done == {}
    assert account.pages >= 1


def test_resource_windows_give_cpu_per_execution_and_what_the_client_read() -> None:
    from fulfill_tools.loadtest import Snapshot, resource_windows

    snapshots = [
        Snapshot(0.0, service_cpu_s=1.0, client_cpu_s=0.5, list_pages=0, files={"f.db-wal": 0}),
        Snapshot(10.0, service_cpu_s=6.0, client_cpu_s=0.9, list_pages=20, files={"f.db-wal": 4096}),
        Snapshot(
            20.0,
            service_cpu_s=16.0,
            client_cpu_s=1.0,
            list_pages=40,
            files={"f.db-wal": 8192},
            service_rss_mib=151.25,
        ),
        Snapshot(25.0, service_cpu_s=16.5, client_cpu_s=1.0, list_pages=41, files={}),
    ]
    completed = [0.5] * 250 + [10.0] * 100 + [19.99] * 150 + [30.0]  # the last after every window
    rows = resource_windows(snapshots, completed)
    assert [(r["from_s"], r["to_s"], r["executions"]) for r in rows] == [
        (0.0, 10.0, 250),
        (10.0, 20.0, 250),
        (20.0, 25.0, 0),
    ]
    assert [r["service_cpu_ms_per_execution"] for r in rows[:2]] == [20.0, 40.0]
    assert math.isnan(rows[2]["service_cpu_ms_per_execution"])
    assert [(r["client_cpu_s"], r["list_pages"]) for r in rows] == [(0.4, 20), (0.1, 20), (0.0, 1)]
    assert rows[1]["files"] == {"f.db-wal": 8192}
    assert rows[1]["service_rss_mib"] == 151.2
    assert math.isnan(rows[0]["service_rss_mib"])  # not read: a service the benchmark did not start


def test_resident_memory_and_cpu_of_a_process_from_proc() -> None:
    import os

    from fulfill_tools.loadtest import cpu_seconds, resident_mib

    assert resident_mib(os.getpid()) > 1
    assert cpu_seconds(os.getpid()) > 0
    assert math.isnan(resident_mib(2**22 + 7))  # no such process


def test_an_approval_that_was_not_accepted_is_not_waited_for() -> None:
    import asyncio

    account = _Account()
    account.change("a", 20.5, "SUCCEEDED", 20.5)
    account.change("b", 10.0, "PENDING")  # its approval failed on the way: it stays pending
    harness = _harness()
    done: dict[str, float] = {}
    task = harness.progress.add_task("outcomes", total=2)
    not_before = {"b": 10.0, "a": 20.0}
    asyncio.run(
        harness.collect(cast(Any, account), "acct", not_before, time.monotonic() + 5, task, done, {"b"})
    )
    assert done == {"a": pytest.approx(20.5)}
    assert account.pages == 1  # one poll: nothing else to wait for


def test_polls_read_back_to_the_oldest_outstanding_approval_only_every_tenth_time() -> None:
    from fulfill_tools.loadtest import poll_since

    # First poll, or nothing seen yet: from the oldest outstanding send, less a second.
    assert poll_since(1000.0, None, 0) == 999.0
    assert poll_since(1000.0, None, 3) == 999.0
    # Between deep polls: two seconds before the newest change seen, not the whole backlog.
    assert poll_since(1000.0, 1060.0, 1) == 1058.0
    assert poll_since(1000.0, 1060.0, 9) == 1058.0
    assert poll_since(1000.0, 1060.0, 10) == 999.0  # a deep poll again
    # Never from before the oldest outstanding send's margin.
    assert poll_since(1000.0, 1000.5, 1) == 999.0


def test_with_a_backlog_a_poll_between_deep_ones_reads_only_the_newest_changes() -> None:
    import asyncio

    account = _Account()
    # "slow" was approved at 1000 and is still running; 600 others changed since (approvals,
    # outcomes), the newest at 1600; "late" finishes at 1700, after the first poll.
    account.change("slow", 1000.5, "RUNNING")
    for index in range(600):
        account.change(f"x{index:03}", 1001.0 + index, "SUCCEEDED", 1001.0 + index)
    harness = _harness()
    done: dict[str, float] = {}
    ended: set[str] = set()
    wanted = {"slow": 1000.0, "late": 1100.0}

    async def two_polls() -> None:
        first = await harness.changes_since(cast(Any, account), "acct", 999.0, wanted, done, ended)
        assert first == pytest.approx(1600.0)
        pages = account.pages
        account.change("late", 1700.0, "SUCCEEDED", 1699.5)
        from fulfill_tools.loadtest import poll_since

        since = poll_since(1000.0, first, 1)
        await harness.changes_since(cast(Any, account), "acct", since, wanted, done, ended)
        assert account.pages - pages == 1  # not the 601 changes since the oldest outstanding

    asyncio.run(two_polls())
    assert account.pages == 8  # 7 pages back to 999, then 1
    assert done == {"late": pytest.approx(1699.5)}
