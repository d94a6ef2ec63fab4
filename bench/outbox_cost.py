"""What the outbox relay costs the database: statements and commits per delivered message, and
per second while nothing is due.

    python -m bench.outbox_cost --messages 500
    python -m bench.outbox_cost --messages 500 --database-url postgresql+psycopg://…/db

Writes ``--messages`` SIGNAL_CREATED messages for one webhook (a receiver in a process of its
own, answering 204 at once), starts one relay (its engine lane, its dispatcher, the webhook's lane
with ``FULFILL_OUTBOX_DESTINATION_CONCURRENCY`` threads), and counts, until every delivery is
DELIVERED, the statements the relay sent and the transactions it committed (the store's engine,
counted in this process), with this process's CPU time. Then ``--idle`` seconds with nothing due:
statements, commits and CPU per second. Only the relay's threads' statements and commits are
counted; the CPU is this process's (the relay's threads, and this loop's reads every 50 ms).
Counts repeat from run to run; CPU times move with the machine's
load. A temporary SQLite database unless ``--database-url`` names a migrated-on-the-fly one.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.common import emit, webhook_receiver
from fulfill.clock import SystemClock
from fulfill.config import Settings
from fulfill.engine.outbox_relay import OutboxRelay
from fulfill.engine.runtime import Runtime
from fulfill.store import outbox
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore

RELAY_THREADS = "fulfill-outbox-"


class Counts:
    """Statements and commits the relay's threads (``fulfill-outbox-*``) sent on one engine."""

    def __init__(self, database: Database) -> None:
        self.statements = 0
        self.commits = 0
        event.listen(database.engine, "before_cursor_execute", self._statement)
        event.listen(database.engine, "commit", self._commit)

    def _statement(self, *_args: Any) -> None:
        if threading.current_thread().name.startswith(RELAY_THREADS):
            self.statements += 1

    def _commit(self, *_args: Any) -> None:
        if threading.current_thread().name.startswith(RELAY_THREADS):
            self.commits += 1

    def snapshot(self) -> tuple[int, int, float]:
        return self.statements, self.commits, time.process_time()


def _all_delivered(store: SqlStore) -> bool:
    with store.read() as uow:
        return uow.outbox.pending_count() == 0


def run(messages: int, idle: float, database_url: str | None) -> dict[str, Any]:
    with (
        webhook_receiver() as url,
        tempfile.TemporaryDirectory(prefix="fulfill-outbox-cost-") as directory,
    ):
        settings = Settings(
            database_url=database_url or f"sqlite:///{directory}/fulfill.db",
            webhook_urls=[url],
            webhook_secret="bench-outbox-cost",
            log_level="WARNING",
        )
        database = Database(settings.database_url)
        upgrade_to_head(database)
        store = SqlStore(database)
        clock = SystemClock()
        runtime = Runtime(settings=settings, clock=clock, gateway=None, store=store)  # type: ignore[arg-type]
        with store.write() as uow:
            for index in range(messages):
                uow.outbox.enqueue(
                    message_id=f"signal:bench/{index:06d}",
                    topic="SIGNAL_CREATED",
                    tenant_id="bench",
                    payload={"n": index},
                    destinations=settings.signal_destinations,
                    now=clock.now_iso(),
                    now_epoch=clock.now(),
                )
        counts = Counts(database)
        relay = OutboxRelay(runtime)
        began = time.monotonic()
        statements0, commits0, cpu0 = counts.snapshot()
        relay.start()
        try:
            while not _all_delivered(store):
                time.sleep(0.05)
                if time.monotonic() - began > 600:
                    raise RuntimeError("the relay did not deliver every message within 600 s")
            statements1, commits1, cpu1 = counts.snapshot()
            seconds = time.monotonic() - began
            time.sleep(1.0)  # let the passes the last deliveries woke settle
            statements2, commits2, cpu2 = counts.snapshot()
            time.sleep(idle)
            statements3, commits3, cpu3 = counts.snapshot()
        finally:
            relay.stop()
        with store.read() as uow:
            delivered = sum(
                1
                for index in range(messages)
                for row in uow.outbox.deliveries_for(f"signal:bench/{index:06d}")
                if row["status"] == outbox.DELIVERED
            )
        database.dispose()
    return {
        "messages": messages,
        "delivered": delivered,
        "backend": "postgresql" if (database_url or "").startswith("postgresql") else "sqlite",
        "delivery_seconds": round(seconds, 2),
        "statements_per_message": round((statements1 - statements0) / messages, 2),
        "commits_per_message": round((commits1 - commits0) / messages, 2),
        "cpu_ms_per_message": round(1000 * (cpu1 - cpu0) / messages, 3),
        "idle_seconds": idle,
        "idle_statements_per_second": round((statements3 - statements2) / idle, 2),
        "idle_commits_per_second": round((commits3 - commits2) / idle, 2),
        "idle_cpu_ms_per_second": round(1000 * (cpu3 - cpu2) / idle, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds measured with nothing due")
    parser.add_argument("--database-url", help="a database to use (default: a temporary SQLite file)")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    result = run(options.messages, options.idle, options.database_url)
    emit(result, options.json)


if __name__ == "__main__":
    main()
