"""``python -m bench.step_cost`` and ``python -m bench.step_bodies`` in small, each in a process of
its own (they wrap the engine's functions for the whole process): what an execution's workflow
commits on each file, next to the bare DBOS workflow's, and the step bodies' CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.backend_free]

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, module: str, *args: str) -> dict[str, Any]:
    results = tmp_path / f"{module}.json"
    subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args, "--warmup", "2", "--json", str(results)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    answer: dict[str, Any] = json.loads(results.read_text())
    return answer


def test_an_execution_commits_dbos_file_as_often_as_the_bare_workflow(tmp_path: Path) -> None:
    """Counted on the threads that start and run each workflow: an execution writes DBOS's file
    in as many commits as the bare workflow of as many checkpoints (its start, each checkpoint,
    its end: no second commit to name a queue after a direct start), and fulfill's own file in
    three (StartExecution, the tool's write, RecordOutcome), with one read transaction besides
    (the check right before the tool call)."""
    result = _run(tmp_path, "step_cost", "--executions", "5")
    counts = result["execution"]["per_execution"]
    floor = result["bare_direct_start"]["per_execution"]
    assert counts["dbos_file.write_commits"] == floor["dbos_file.write_commits"] == 5
    assert counts["fulfill_file.write_commits"] == 3
    assert counts["fulfill_file.commits"] - counts["fulfill_file.write_commits"] <= 2
    cpu = result["execution"]["thread_cpu_ms_median"]
    assert {"workflow", "start", "start_execution", "record_outcome", "outside_step_bodies"} <= set(cpu)
    assert result["workflow_cpu_ratio_to_bare"] > 0


def test_the_step_bodies_are_timed_one_execution_after_another(tmp_path: Path) -> None:
    result = _run(tmp_path, "step_bodies", "--executions", "5")
    for step in ("prepare_tool_call", "record_outcome"):
        figures = result[step]
        assert 0 < figures["min_ms"] <= figures["p25_ms"] <= figures["p50_ms"]
