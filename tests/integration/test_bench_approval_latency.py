"""``python -m bench.approval_latency`` in small, in a process of its own (it wraps the engine's
functions for the whole process): the measured series waits for each outcome asleep, woken by the
end of RecordOutcome, and reads the database once per execution; the old way (a read every 2 ms
in the service's own interpreter while the execution runs) is a series of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.approval_latency", "--warmup", "2", *args],
        cwd=ROOT,
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
    assert "bare_dbos_workflow" not in answer
    assert "approval_to_outcome_direct_start_off" not in answer


def test_a_long_queue_poll_and_the_queued_series_are_refused_together(tmp_path: Path) -> None:
    done = _run(tmp_path, "--intents", "1", "--queued-too", "--queue-poll-seconds", "5")
    assert done.returncode == 2
    assert "--queue-poll-seconds and --queued-too" in done.stderr
