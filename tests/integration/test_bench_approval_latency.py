"""``python -m bench.approval_latency`` in small, in a process of its own (it wraps the engine's
functions for the whole process): the measured series waits for each outcome asleep, woken by the
end of RecordOutcome, and reads the database once per execution; the old way (a read every 2 ms
in the service's own interpreter while the execution runs) is a series of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fulfill import collector

pytestmark = [pytest.mark.slow, pytest.mark.backend_free]

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.approval_latency", "--warmup", "2", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_measured_series_reads_each_outcome_once_and_the_polled_one_reads_it_again(
    tmp_path: Path,
) -> None:
    results = tmp_path / "approval.json"
    done = _run(
        tmp_path, "--intents", "4", "--polled-too", "--queue-poll-seconds", "5", "--json", str(results)
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(results.read_text())
    reads = answer["outcome_reads_per_execution"]
    assert reads["approval_to_outcome"] == 1.0
    assert reads["approval_to_outcome_polled"] >= 1.0
    for series in ("approval_to_outcome", "approval_to_outcome_polled", "bare_dbos_direct_start"):
        assert 0 < answer[series]["p50_ms"] <= answer[series]["max_ms"]
    # With the queue's polls kept out, the series that wait for them are left out.
    assert answer["queue_poll_seconds"] == 5.0
    assert answer["collector"] == "fulfill serve"
    assert answer["gc_threshold"][0] == collector.YOUNG_THRESHOLD
    # One proposer and one approver for the whole run (warm-up, both series), not a pair per
    # execution: each client opened in the service's process is garbage its collector pays for.
    assert answer["api_clients_opened"] == 2
    pauses = answer["collector_pauses"]
    assert set(pauses) == {"generation_0", "generation_1", "generation_2"}
    for generation in pauses.values():
        assert generation["collections"] >= 0
        assert generation["total_ms"] >= 0
        if generation["collections"]:
            assert 0 <= generation["p50_ms"] <= generation["max_ms"]
    assert "bare_dbos_workflow" not in answer
    assert "approval_to_outcome_direct_start_off" not in answer


def test_a_long_queue_poll_and_the_queued_series_are_refused_together(tmp_path: Path) -> None:
    done = _run(tmp_path, "--intents", "1", "--queued-too", "--queue-poll-seconds", "5")
    assert done.returncode == 2
    assert "--queue-poll-seconds and --queued-too" in done.stderr


def test_the_service_takes_the_configured_threshold_and_each_collection_is_reported(tmp_path: Path) -> None:
    results = tmp_path / "approval.json"
    done = _run(
        tmp_path,
        "--intents",
        "6",
        "--queue-poll-seconds",
        "5",
        "--json",
        str(results),
        env={"FULFILL_GC_YOUNG_THRESHOLD": "700"},
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(results.read_text())
    assert answer["gc_threshold"][0] == 700
    young = answer["collector_pauses"]["generation_0"]
    assert young["collections"] > 0  # six executions allocate far more than 700 containers
    assert 0 < young["p50_ms"] <= young["p95_ms"] <= young["max_ms"]
    assert young["total_ms"] >= young["max_ms"]
