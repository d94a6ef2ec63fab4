"""What ranking an execution in the queue's fair order costs, against another tenant's backlog.

Every execution that goes to the execution queue is ranked among its tenant's attempts QUEUED or
RUNNING (``store/executions.py count_active``, read in the approving transaction of an api
process, or by a full worker). The benchmark fills a migrated database with a small tenant (3
attempts in flight and ``--history`` finished) and then, step by step, a greedy tenant's backlog
of attempts in flight (``--backlogs``), and at each step times the count of each tenant:
``--calls`` counts in one read (after ten, so that psycopg has prepared the statement and
PostgreSQL settled on its plan), reporting the median and the 95th percentile in microseconds and
this thread's CPU per count.

    python -m bench.queue_rank_cost                      # SQLite, in a temporary directory
    python -m bench.queue_rank_cost --postgres           # a throw-away PostgreSQL server too

On PostgreSQL the table is analysed after each fill, as autovacuum would.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from bench.common import emit
from fulfill.domain.models import AttemptStatus, ExecutionAttempt
from fulfill.store import executions
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head

NOW = "2026-12-06T00:00:00.000Z"


def _counter() -> Callable[[Connection, str], int]:
    """The store's count as this tree has it (``most``: the domain's cap, where the count takes one)."""
    if "most" in inspect.signature(executions.count_active).parameters:
        from fulfill.domain.fairness import MAX_QUEUE_PRIORITY

        return lambda conn, tenant_id: executions.count_active(conn, tenant_id, most=MAX_QUEUE_PRIORITY)
    return executions.count_active  # type: ignore[return-value]


def _attempt(tenant_id: str, index: int, status: AttemptStatus) -> ExecutionAttempt:
    return ExecutionAttempt(
        tenant_id=tenant_id,
        account_id="acc-1",
        action_intent_id=f"ai_{tenant_id}_{index:07d}",
        attempt_count=1,
        attempt_id=f"att_{tenant_id}_{index:07d}",
        workflow_id=f"wf_{tenant_id}_{index:07d}",
        status=status,
        trace_id="trace",
        started_at=NOW,
        updated_at=NOW,
    )


def _fill(db: Database, tenant_id: str, first: int, count: int, status: AttemptStatus) -> None:
    with db.write() as conn:
        for index in range(first, first + count):
            executions.insert_attempt(conn, _attempt(tenant_id, index, status), deadline_epoch=1e10)
        if not db.is_sqlite:
            conn.execute(text("ANALYZE execution_attempts"))


def _time(
    db: Database, count: Callable[[Connection, str], int], tenant_id: str, calls: int
) -> dict[str, Any]:
    walls: list[float] = []
    with db.read() as conn:
        for _ in range(10):
            found = count(conn, tenant_id)
        cpu_before = time.thread_time()
        for _ in range(calls):
            start = time.perf_counter()
            found = count(conn, tenant_id)
            walls.append(time.perf_counter() - start)
        cpu = time.thread_time() - cpu_before
    walls.sort()
    return {
        "counted": found,
        "p50_us": round(statistics.median(walls) * 1e6, 1),
        "p95_us": round(walls[int(len(walls) * 0.95)] * 1e6, 1),
        "cpu_us_per_count": round(cpu / calls * 1e6, 1),
    }


def measure(url: str, backlogs: list[int], history: int, calls: int) -> list[dict[str, Any]]:
    db = Database(url)
    try:
        upgrade_to_head(db)
        count = _counter()
        _fill(db, "small", 0, 3, AttemptStatus.QUEUED)
        _fill(db, "small", 3, history, AttemptStatus.SUCCEEDED)
        rows = []
        filled = 0
        for backlog in backlogs:
            _fill(db, "greedy", filled, backlog - filled, AttemptStatus.QUEUED)
            filled = backlog
            rows.append(
                {
                    "greedy_backlog": backlog,
                    "small_tenant": _time(db, count, "small", calls),
                    "greedy_tenant": _time(db, count, "greedy", max(10, calls // 10)),
                }
            )
        return rows
    finally:
        db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlogs", default="0,1000,10000,30000")
    parser.add_argument("--history", type=int, default=2000, help="the small tenant's finished attempts")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--postgres", action="store_true", help="also on a throw-away PostgreSQL server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    backlogs = sorted(int(value) for value in args.backlogs.split(","))
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.system()}",
        "history": args.history,
        "calls": args.calls,
    }
    with tempfile.TemporaryDirectory() as directory:
        result["sqlite"] = measure(f"sqlite:///{directory}/rank.db", backlogs, args.history, args.calls)
    if args.postgres:
        from bench.pg_cpu import throwaway_database

        with throwaway_database("rank") as url:
            result["postgresql"] = measure(url, backlogs, args.history, args.calls)
    emit(result, args.json)


if __name__ == "__main__":
    main()
