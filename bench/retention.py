"""What DBOS keeps of each finished execution, and what the retention pass costs to delete it.

    python -m bench.retention --executions 2000
    python -m bench.retention --executions 2000 --backend postgresql
    python -m bench.retention --executions 2000 --webhook

One ``fulfill serve`` in this process (SQLite by default; ``--backend postgresql``: a throw-away
PostgreSQL server started for the run, as ``bench.pg_cpu`` does), its own retention pass switched
off meanwhile. ``--executions`` internal-task intents are created and approved over HTTP, eight at
a time, and waited for until every workflow has ended (not measured). Then:

* ``dbos_rows_per_execution``: DBOS's rows by table (status, inputs, output, step checkpoints),
  and ``dbos_bytes_per_execution``: what the space they take grew by per execution (SQLite: the
  used pages of DBOS's file; PostgreSQL: the tables with their indexes and TOAST,
  ``pg_total_relation_size``);
* ``fulfill_bytes_per_execution``: what fulfill's own tables grew by per execution, in all and for
  its largest tables (with their indexes): the records kept for good (the intent, its attempt and
  outcome, the ledger, the tool's own record), which no retention deletes;
* one retention pass (``engine/retention.delete_finished_workflows``) over all of them, once they
  are older than the retention period: its wall time and this process's CPU time in all, and both
  per 1,000 workflows deleted;
* what is left afterwards: DBOS's rows of fulfill's workflows, and the space (SQLite: pages in use
  and pages free for reuse; PostgreSQL: after a plain ``VACUUM``, which makes the space reusable
  but returns little to the operating system);
* ``dbos_space_refilled``: the space once as many executions again have run, the pass off: what
  the freed space holds of the next ones (reused, not added to the file).

``--webhook``: the service also sends every execution's signal to a webhook receiver on 127.0.0.1
(a process of its own, answering 204), and the run waits until each is delivered. Then
``outbox_bytes_per_execution`` (the outbox's two tables with their indexes, per execution) and
one outbox retention pass (``engine/retention.delete_delivered_messages``, its own pass off too):
its wall and CPU time, per 1,000 messages deleted, and the outbox's rows left.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.approval_latency import approve_and_wait, proposer_and_approver
from bench.common import emit, own_cpu_seconds, running_service, webhook_receiver
from fulfill.domain.retention import WORKFLOW_NAMES
from fulfill.engine.retention import delete_delivered_messages, delete_finished_workflows
from fulfill.server import BackgroundServer
from fulfill.store.db import Database

DBOS_TABLES = ("workflow_status", "workflow_input", "workflow_output", "operation_outputs")
OUTBOX_TABLES = ("outbox_messages", "outbox_deliveries")
# A retention of 1.7 s: every workflow is old enough a moment after the last one ends.
RETENTION_DAYS = 2e-5
IN_FLIGHT = 8


def _sys_db() -> Any:
    from dbos import _dbos as dbos_internals

    return dbos_internals._get_dbos_instance()._sys_db


def dbos_rows() -> dict[str, int]:
    """DBOS's rows of every workflow, by table."""
    sys_db = _sys_db()
    with sys_db.engine.connect() as conn:
        return {
            name: int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(getattr(sys_db.tables, name))
                ).scalar_one()
            )
            for name in DBOS_TABLES
        }


def dbos_space() -> dict[str, int]:
    """The space of DBOS's tables: SQLite's pages in use and free (bytes), PostgreSQL's relations."""
    engine = _sys_db().engine
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            page = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            return {"used_bytes": (pages - free) * page, "free_bytes": free * page}
        total = sum(
            int(conn.exec_driver_sql(f"SELECT pg_total_relation_size('dbos.{name}')").scalar_one())
            for name in DBOS_TABLES
        )
        return {"used_bytes": total}


def fulfill_table_bytes(db: Database) -> dict[str, int]:
    """The space of each of fulfill's tables with its indexes: SQLite's pages by table
    (``dbstat``), PostgreSQL's relations with their indexes and TOAST."""
    with db.read() as conn:
        if db.is_sqlite:
            rows = conn.exec_driver_sql(
                "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat AS d JOIN sqlite_master AS m ON m.name = d.name "
                "WHERE m.tbl_name NOT LIKE 'sqlite_%' GROUP BY m.tbl_name"
            ).all()
        else:
            rows = conn.exec_driver_sql(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class AS c "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            ).all()
    return {str(name): int(size) for name, size in rows}


def per_execution(
    before: dict[str, int], after: dict[str, int], executions: int, top: int = 8
) -> dict[str, int]:
    """What each table grew by per execution, the largest first (``total`` first of all)."""
    growth = {name: (after.get(name, 0) - before.get(name, 0)) / executions for name in after}
    largest = sorted(growth.items(), key=lambda item: -item[1])[:top]
    return {"total": round(sum(growth.values())), **{name: round(size) for name, size in largest if size > 0}}


def vacuum_dbos() -> None:
    engine = _sys_db().engine
    if engine.dialect.name == "sqlite":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in DBOS_TABLES:
            conn.exec_driver_sql(f"VACUUM dbos.{name}")


def wait_all_finished(timeout: float = 120.0) -> None:
    sys_db = _sys_db()
    status = sys_db.tables.workflow_status
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sys_db.engine.connect() as conn:
            unfinished = conn.execute(
                sa.select(sa.func.count())
                .select_from(status)
                .where(status.c.status.in_(["PENDING", "ENQUEUED"]), status.c.name.in_(WORKFLOW_NAMES))
            ).scalar_one()
        if not unfinished:
            return
        time.sleep(0.2)
    raise RuntimeError("workflows still unfinished")


def run_executions(server: BackgroundServer, indexes: range) -> None:
    """Create and approve these intents, ``IN_FLIGHT`` at a time, until every workflow has ended."""
    db = server.server.config.app.state.service.db
    with proposer_and_approver(server) as (client, reviewer), ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(
            pool.map(lambda index: approve_and_wait(client, reviewer, db, index, poll_seconds=0.05), indexes)
        )
    wait_all_finished()


def outbox_rows(db: Database) -> dict[str, int]:
    with db.read() as conn:
        return {
            name: int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {name}").scalar_one())
            for name in OUTBOX_TABLES
        }


def wait_all_delivered(db: Database, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.read() as conn:
            if not conn.exec_driver_sql(
                "SELECT COUNT(*) FROM outbox_deliveries WHERE status <> 'DELIVERED'"
            ).scalar_one():
                return
        time.sleep(0.2)
    raise RuntimeError("outbox deliveries still undelivered")


def timed(work: Callable[[], int]) -> dict[str, float]:
    """``work()``'s count, its wall time and this process's CPU time, in all and per 1,000."""
    wall, cpu = time.perf_counter(), own_cpu_seconds()
    count = work()
    wall, cpu = time.perf_counter() - wall, own_cpu_seconds() - cpu
    per = 1000 / max(count, 1)
    return {
        "deleted": count,
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "seconds_per_1000": round(wall * per, 3),
        "cpu_seconds_per_1000": round(cpu * per, 3),
    }


@contextmanager
def database(backend: str) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    from bench.pg_cpu import throwaway_database

    with throwaway_database("bench_retention") as url:
        yield url


@contextmanager
def signal_destinations(webhook: bool) -> Iterator[dict[str, Any]]:
    """The service's settings for ``--webhook``: signals to a local receiver, its pass off."""
    if not webhook:
        yield {}
        return
    with webhook_receiver() as url:
        yield {
            "webhook_urls": [url],
            "webhook_secret": "bench-retention",
            "outbox_retention_days": RETENTION_DAYS,
            "outbox_retention_interval_seconds": 86_400,
        }


def run(executions: int, backend: str, webhook: bool = False) -> dict[str, Any]:
    outbox: dict[str, Any] = {}
    with (
        database(backend) as url,
        signal_destinations(webhook) as signals,
        tempfile.TemporaryDirectory(prefix="fulfill-bench-retention-") as directory,
        running_service(
            directory,
            **({"database_url": url} if url else {}),
            workflow_retention_days=RETENTION_DAYS,
            workflow_retention_interval_seconds=86_400,
            **signals,
        ) as server,
    ):
        service = server.server.config.app.state.service
        fulfill_before, dbos_empty = fulfill_table_bytes(service.db), dbos_space()
        run_executions(server, range(executions))
        if webhook:
            wait_all_delivered(service.db)
        fulfill_after = fulfill_table_bytes(service.db)
        rows_before, space_before = dbos_rows(), dbos_space()
        time.sleep(RETENTION_DAYS * 86_400 + 0.5)
        workflows_pass = timed(lambda: delete_finished_workflows(service.runtime))
        if webhook:
            outbox = {
                "outbox_bytes_per_execution": round(
                    sum(fulfill_after.get(name, 0) - fulfill_before.get(name, 0) for name in OUTBOX_TABLES)
                    / executions
                ),
                "outbox_rows_before": outbox_rows(service.db),
                "outbox_pass": timed(lambda: delete_delivered_messages(service.runtime)),
                "outbox_rows_after": outbox_rows(service.db),
            }
        rows_after = dbos_rows()
        vacuum_dbos()
        space_after = dbos_space()
        run_executions(server, range(executions, 2 * executions))
        space_refilled = dbos_space()
    return {
        "backend": backend,
        "executions": executions,
        "dbos_rows_per_execution": {
            name: round(count / executions, 2) for name, count in rows_before.items()
        },
        "dbos_bytes_per_execution": round(
            (space_before["used_bytes"] - dbos_empty["used_bytes"]) / executions
        ),
        "dbos_space_before": space_before,
        "fulfill_bytes_per_execution": per_execution(fulfill_before, fulfill_after, executions),
        "pass": workflows_pass,
        "dbos_rows_after": rows_after,
        "dbos_space_after": space_after,
        "dbos_space_refilled": space_refilled,
        **outbox,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--webhook", action="store_true", help="signals to a local webhook receiver; measure the outbox too"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.executions < 1:
        parser.error("--executions must be at least 1")
    emit(run(args.executions, args.backend, args.webhook), args.json)


if __name__ == "__main__":
    main()
