"""``fulfill bench load`` end to end, in small: it starts ``fulfill serve`` in its own process
(SQLite, or the PostgreSQL pass's database), drives every scenario through the API and reports
every approval executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fulfill.cli import app
from tests.support import postgres

pytestmark = pytest.mark.slow


def test_bench_load_runs_every_scenario_and_counts_every_execution(tmp_path: Path) -> None:
    results = tmp_path / "load.json"
    args = [
        "bench",
        "load",
        "--rates",
        "5",
        "--seconds",
        "1",
        "--window",
        "0.5",
        "--burst",
        "6",
        "--serial",
        "3",
    ]
    args += ["--drain", "60", "--no-floor", "--json", str(results)]
    database_url = postgres.create_database() if postgres.enabled() else None
    if database_url:
        args += ["--database-url", database_url]
    try:
        outcome = CliRunner().invoke(app, args)
    finally:
        if database_url:
            postgres.drop_database(database_url)
    assert outcome.exit_code == 0, outcome.output
    assert "fulfill load benchmark" in outcome.output
    result = json.loads(results.read_text())
    assert result["service"]["database"] == ("postgresql" if database_url else "sqlite")
    scenarios = {row["scenario"]: row for row in result["scenarios"]}
    assert set(scenarios) == {"open loop", "burst", "one at a time"}
    for name in ("open loop", "burst"):
        row = scenarios[name]
        assert row["http"] == {"202": row["approvals"]}  # every approval accepted
        assert (row["succeeded"], row["failed"], row["not_finished"]) == (row["approvals"], 0, 0)
    assert scenarios["one at a time"]["succeeded"] == 3
    # The burst's CPU per execution: every service process's CPU for the scenario over its approvals.
    burst = scenarios["burst"]
    assert burst["cpu_ms_per_execution"] == round(1000 * sum(burst["service_cpu_s"].values()) / 6, 1)
    assert "burst CPU per execution" in outcome.output
    # The open-loop run by window of its schedule: every approval in one, each latency measured.
    open_loop = scenarios["open loop"]
    assert [(w["from_s"], w["to_s"]) for w in open_loop["windows"]] == [(0.0, 0.5), (0.5, 1.0)]
    assert sum(w["scheduled"] for w in open_loop["windows"]) == open_loop["approvals"] == 5
    assert sum(w["succeeded"] for w in open_loop["windows"]) == 5
    for latency in ("service", "client"):
        assert 0 < open_loop[latency]["p95_ms"] <= open_loop[latency]["max_ms"]
    # From the service's approval timestamp: never more than from the scheduled send.
    assert open_loop["service"]["max_ms"] <= open_loop["max_ms"] + 1  # timestamps kept to the ms
    assert set(open_loop["growth"]) >= {"grows", "queue_at_end", "last_to_first"}
    assert "open loop 5/s by 0.5-s window" in outcome.output
    # What each window used: every execution counted once, the service's CPU and memory read, and
    # on SQLite the WAL files' sizes; the polls read pages of executions, not the whole account.
    resources = open_loop["resources"]
    assert sum(window["executions"] for window in resources) == 5
    assert sum(window["service_cpu_s"] for window in resources) > 0
    assert all(window["service_rss_mib"] > 0 for window in resources)
    wal = {name for window in resources for name in window["files"] if name.endswith("-wal")}
    assert wal == (set() if database_url else {"fulfill.db-wal", "fulfill.dbos.sqlite-wal"})
    assert open_loop["list_pages"] == sum(window["list_pages"] for window in resources) > 0
    assert "what each window used" in outcome.output
    assert "floor" not in result
