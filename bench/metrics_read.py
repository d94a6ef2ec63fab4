"""What one ``/metrics`` scrape costs the database: the store gauges' read, on a seeded database.

    python -m bench.metrics_read                                   # SQLite in a temporary directory
    python -m bench.metrics_read --database-url postgresql+psycopg://…/empty_db

Seeds ``--rows`` execution attempts (one in 500 RUNNING, one in 1,000 past its deadline), as many
outbox messages with one delivery each (one in 1,000 undelivered) and 1,000 tenants' kill-switch
rows (one in 50 stopped, one in 10 with a disabled action type), then times ``--reads`` reads of
what ``/metrics`` reads at a scrape (``read_shared_state``), with and without tenant labels.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from fulfill.store.tables import (
    execution_attempts,
    outbox_deliveries,
    outbox_messages,
    tenant_execution_config,
)
from fulfill.usecases.shared_state import read_shared_state


def seed(db: Database, rows: int, now: float) -> None:
    attempts = [
        {
            "tenant_id": f"t{index % 500}",
            "account_id": "acc-1",
            "action_intent_id": f"ai_{index}",
            "attempt_count": 1,
            "attempt_id": f"att-{index}",
            "workflow_id": f"exec-{index}",
            "status": "RUNNING" if index % 500 == 0 else "SUCCEEDED",
            "trace_id": "trace",
            "started_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "deadline_epoch": now - 10 if index % 1000 == 0 else now + 300,
        }
        for index in range(rows)
    ]
    messages = [
        {
            "message_id": f"m{index}",
            "topic": "SIGNAL_CREATED",
            "tenant_id": "t0",
            "payload": {},
            "created_at": f"2026-01-01T00:{index % 60:02d}:00Z",
        }
        for index in range(rows)
    ]
    deliveries = [
        {
            "message_id": f"m{index}",
            "destination": "https://hooks.example/fulfill",
            "status": "PENDING" if index % 1000 == 0 else "DELIVERED",
            "attempts": 1,
            "next_attempt_epoch": now,
        }
        for index in range(rows)
    ]
    tenants = [
        {
            "tenant_id": f"t{index}",
            "execution_enabled": index % 50 != 0,
            "disabled_action_types": ["CREATE_INTERNAL_NOTE"] if index % 10 == 0 else [],
            "updated_at": "2026-01-01T00:00:00Z",
            "revision": 1,
        }
        for index in range(1000)
    ]
    with db.write() as conn:
        conn.execute(insert(execution_attempts), attempts)
        conn.execute(insert(outbox_messages), messages)
        conn.execute(insert(outbox_deliveries), deliveries)
        conn.execute(insert(tenant_execution_config), tenants)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="", help="an empty database (default: SQLite, temporary)")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--reads", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.database_url or f"sqlite:///{Path(directory) / 'metrics.db'}"
        db = Database(url)
        try:
            upgrade_to_head(db)
            seed(db, args.rows, time.time())
            for tenant_labels in (False, True):
                took = []
                for _ in range(args.reads):
                    began = time.perf_counter()
                    state = read_shared_state(
                        SqlStore(db),
                        now_epoch=time.time(),
                        known_connectors={"internal", "crm"},
                        environment_stop=False,
                        tenant_labels=tenant_labels,
                    )
                    took.append((time.perf_counter() - began) * 1000)
                print(
                    f"{db.engine.dialect.name} tenant_labels={tenant_labels}: p50 {statistics.median(took):.2f} ms, "
                    f"max {max(took):.2f} ms over {args.reads} reads; past budget {dict(state.attempts_past_budget)}, "
                    f"backlog {state.outbox_backlog}, tenants stopped {state.tenants_stopped}"
                )
        finally:
            db.dispose()


if __name__ == "__main__":
    main()
