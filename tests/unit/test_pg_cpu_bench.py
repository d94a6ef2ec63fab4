"""The CPU accounting of ``bench/pg_cpu.py``: a process's own CPU time, its live children, and the
CPU of children it already reaped (a PostgreSQL backend that exits mid-burst still counts)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from bench.pg_cpu import children, process_cpu

BURN = "x = 0\nfor i in range(3_000_000):\n    x += i\n"

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")


def test_a_process_that_is_gone_counts_nothing() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert process_cpu(process.pid) == 0.0


def test_a_live_child_is_found_and_a_reaped_one_is_counted_with_its_parent() -> None:
    # A parent that burns CPU in a child, waits for it (reaps it), then waits for us.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', {BURN!r}], check=True)\n"
            "print('reaped', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None
    assert parent.stdout is not None
    try:
        assert parent.stdout.readline().strip() == "reaped"
        assert children(parent.pid) == []  # the child is gone
        own = process_cpu(parent.pid)
        with_reaped = process_cpu(parent.pid, reaped_children=True)
        assert with_reaped > own  # the child's CPU is counted once it was reaped
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)


def test_the_report_gives_planning_and_connections_opened_per_execution() -> None:
    from bench.pg_cpu import _report

    before = {"statements": 10, "plans": 4, "exec_ms": 1.0, "plan_ms": 0.5, "commits": 3, "rollbacks": 0}
    after = {
        "statements": 610,
        "plans": 204,
        "exec_ms": 301.0,
        "plan_ms": 60.5,
        "commits": 403,
        "rollbacks": 0,
    }
    report = _report(
        100,
        2.0,
        {"api": 1.0, "postgres": 2.0},
        {"api": 1.5, "postgres": 3.0},
        {**before, "sessions": 7},
        {**after, "sessions": 19},
        {},
    )
    assert report["cpu_ms_per_execution"] == {"api": 5.0, "postgres": 10.0, "total": 15.0}
    assert (report["statements_per_execution"], report["plans_per_execution"]) == (6.0, 2.0)
    assert report["statement_ms_per_execution"] == {"execute": 3.0, "plan": 0.6}
    assert (report["commits_per_execution"], report["connections_opened"]) == (4.0, 12)
