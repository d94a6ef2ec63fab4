"""The pure parts of the load benchmark: percentiles, schedules, throughput."""

from __future__ import annotations

import itertools
import math

import pytest

from fulfill_tools.loadtest import achieved_rate, epoch, percentile, schedule, summary, throughput


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
