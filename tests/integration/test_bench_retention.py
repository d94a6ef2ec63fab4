"""``python -m bench.retention`` in small, in a process of its own: it measures what DBOS keeps per
execution, and its retention pass deletes all of it (the service's own pass switched off meanwhile)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.backend_free]

ROOT = Path(__file__).resolve().parents[2]


def test_the_pass_deletes_every_finished_execution_and_reports_what_it_kept(tmp_path: Path) -> None:
    results = tmp_path / "retention.json"
    subprocess.run(
        [sys.executable, "-m", "bench.retention", "--executions", "12", "--json", str(results)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = json.loads(results.read_text())
    assert result["backend"] == "sqlite"
    rows = result["dbos_rows_per_execution"]
    assert rows["workflow_status"] == 1
    assert rows["operation_outputs"] >= 3  # PrepareToolCall, InvokeTool, RecordOutcome
    assert result["dbos_bytes_per_execution"] > 0
    kept = result["fulfill_bytes_per_execution"]
    assert kept["total"] > 0
    assert "ledger_entries" in kept  # every execution appends to the ledger
    assert result["pass"]["deleted"] == 12
    assert result["dbos_rows_after"] == dict.fromkeys(rows, 0)
    assert result["dbos_space_after"]["used_bytes"] < result["dbos_space_before"]["used_bytes"]
    # The next executions' rows go into the pages the pass freed.
    assert result["dbos_space_refilled"]["free_bytes"] < result["dbos_space_after"]["free_bytes"]


def test_a_run_of_no_executions_is_refused(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "bench.retention", "--executions", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "--executions must be at least 1" in refused.stderr


def test_with_a_webhook_the_outbox_pass_deletes_every_delivered_signal(tmp_path: Path) -> None:
    results = tmp_path / "retention.json"
    subprocess.run(
        [sys.executable, "-m", "bench.retention", "--executions", "6", "--webhook", "--json", str(results)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = json.loads(results.read_text())
    assert result["outbox_rows_before"] == {"outbox_messages": 6, "outbox_deliveries": 6}
    assert result["outbox_bytes_per_execution"] > 0
    assert result["outbox_pass"]["deleted"] == 6
    assert result["outbox_rows_after"] == {"outbox_messages": 0, "outbox_deliveries": 0}
    assert result["pass"]["deleted"] == 6
