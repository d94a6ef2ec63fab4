"""The dashboard's arithmetic (domain/dashboard.py) and its charts (console/charts.py)."""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET

import pytest

from fulfill.console import charts
from fulfill.domain.dashboard import (
    Bucket,
    Window,
    connector_figures,
    durations,
    latency_of,
    parse_window,
    percentile,
    rebucket,
)
from fulfill.domain.time import epoch_from_iso


def test_windows() -> None:
    assert parse_window(None) is Window.HOUR
    assert parse_window("") is Window.HOUR
    assert parse_window("24h") is Window.DAY
    assert parse_window("7d").seconds == 7 * 86_400
    assert [w.bucket_seconds for w in Window] == [60, 900, 3600]
    for bad in ("1H", "2h", "7 d", "24", "1h;", "x" * 100):
        with pytest.raises(ValueError, match="1h, 24h, 7d"):
            parse_window(bad)


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile(list(reversed(values)), 0.95) == 19.0
    assert percentile(values, 1.0) == 20.0
    rng = random.Random(7)
    sample = [rng.expovariate(0.1) for _ in range(999)]
    assert percentile(sample, 0.95) == sorted(sample)[math.ceil(0.95 * 999) - 1]
    with pytest.raises(ValueError, match=r"q is in"):
        percentile(values, 0)


def test_latency_and_durations() -> None:
    pairs = [
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:10.500Z"),
        ("2026-01-01T00:00:05.000Z", "2026-01-01T00:00:01.000Z"),
    ]
    assert durations(pairs) == [10.5, 0.0]  # a clock behind another never gives a negative wait
    latency = latency_of([1.0, 2.0, 3.0, 4.0], sampled=True)
    assert (latency.count, latency.p50, latency.p95, latency.sampled) == (4, 2.0, 4.0, True)
    assert latency_of([]).p50 is None


def test_rebucket_sums_minutes_into_every_bucket_of_the_window() -> None:
    since = epoch_from_iso("2026-01-01T10:07:30Z")
    until = since + 3600
    rows = [
        ("2026-01-01T10:07", "SUCCEEDED", 1),  # the minute the window starts in
        ("2026-01-01T10:20", "FAILED", 2),
        ("2026-01-01T10:24", "FAILED", 1),
        ("2026-01-01T11:07", "SUCCEEDED", 5),
        ("2026-01-01T12:00", "SUCCEEDED", 9),  # after the window: left out
        ("2026-01-01T09:00", "SUCCEEDED", 9),  # before: left out
    ]
    minutes = rebucket(rows, since_epoch=since, until_epoch=until, bucket_seconds=60)
    assert len(minutes) == 61
    assert sum(b.total for b in minutes) == 9
    assert all(set(b.counts) >= {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"} for b in minutes)
    quarters = rebucket(rows, since_epoch=since, until_epoch=until, bucket_seconds=900)
    assert [b.start_epoch for b in quarters][:2] == [
        epoch_from_iso("2026-01-01T10:00:00Z"),
        epoch_from_iso("2026-01-01T10:15:00Z"),
    ]
    assert quarters[1].counts["FAILED"] == 3
    assert quarters[0].counts["SUCCEEDED"] == 1
    assert sum(b.total for b in quarters) == 9


def test_connector_figures_add_retried_tries_to_calls_and_errors() -> None:
    figures = connector_figures(
        [
            ("crm.update", "SUCCEEDED", 3),
            ("crm.create", "FAILED", 1),
            ("internal.create_task", "SUCCEEDED", 2),
        ],
        [("crm.update", 4)],
        [
            ("crm.update", "2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z"),
            ("crm.create", "2026-01-01T00:00:00Z", "2026-01-01T00:00:08Z"),
        ],
    )
    crm, internal = figures
    assert (crm.connector, crm.calls, crm.errors) == ("crm", 8, 5)
    assert crm.error_rate == pytest.approx(5 / 8)
    assert (crm.latency.p50, crm.latency.p95) == (2.0, 8.0)
    assert (internal.connector, internal.calls, internal.errors, internal.latency.count) == (
        "internal",
        2,
        0,
        0,
    )


def test_seconds_text() -> None:
    assert charts.seconds_text(None) == "none"
    assert charts.seconds_text(0.25) == "250 ms"
    assert charts.seconds_text(12.34) == "12.3 s"
    assert charts.seconds_text(245) == "4 min 5 s"
    assert charts.seconds_text(2 * 3600 + 180) == "2 h 3 min"
    assert charts.seconds_text(86_400 + 4 * 3600) == "1 d 4 h"


def test_charts_are_well_formed_svg_with_a_pattern_per_status_and_escaped_text() -> None:
    buckets = [
        Bucket(start_epoch=0, counts={"SUCCEEDED": 2, "FAILED": 1, "CANCELLED": 0, "EXPIRED": 0}),
        Bucket(start_epoch=60, counts={"SUCCEEDED": 0, "FAILED": 0, "CANCELLED": 1, "EXPIRED": 1}),
    ]
    svg = str(
        charts.stacked_bars(
            buckets, ["SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"], bucket_seconds=60, title="a <b> & c"
        )
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    patterns = {p.get("id"): ET.tostring(p) for p in root.iter(f"{ns}pattern")}
    assert set(patterns) == {"ex-succeeded", "ex-failed", "ex-cancelled", "ex-expired"}
    # each pattern is drawn differently (not only in another colour)
    shapes = {tuple(child.tag for child in p) for p in root.iter(f"{ns}pattern")}
    assert len(shapes) == 4
    titles = [t.text for t in root.iter(f"{ns}title")]
    assert "a <b> & c" in titles
    assert "1970-01-01 00:00 UTC: 2 SUCCEEDED" in titles
    bars = charts.hbars(
        [charts.Bar(label="<script>", value=3, text="3"), charts.Bar(label="zero", value=0, text="0")],
        title="t",
        prefix="x",
    )
    assert "<script>" not in str(bars)
    ET.fromstring(str(bars))
    assert "Nothing in this window." in str(charts.hbars([], title="t", prefix="y"))
