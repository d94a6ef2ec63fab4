"""Threads of one process writing one SQLite file the way DBOS writes its system database: each
connection begins its transaction implicitly at the first write (``isolation_level =
"IMMEDIATE"``) and waits for the file in SQLite's busy handler (``busy_timeout`` 30 s), which
sleeps 1, 2, 5 … up to 100 ms between tries while the file may sit unlocked.

The same load runs twice on a fresh file each time, in alternating rounds: as DBOS leaves it, and
with ``store/db.py queue_sqlite_writers`` on the engine (the threads queue on a lock instead, as
the service puts it on DBOS's engine at start). Each transaction is what a step's checkpoint is:
one insert and one update, then a commit at ``synchronous=FULL`` in WAL mode. Reported for each:
transactions per second, the wait per transaction (median, p95, max, from asking for the
transaction until its commit) and the seconds summed over the threads.

    .venv/bin/python -m bench.sqlite_writers --threads 16 --transactions 100 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text

from fulfill.store.db import queue_sqlite_writers


def _engine(path: Path, threads: int) -> Engine:
    engine = create_engine(f"sqlite:///{path}", pool_size=threads, max_overflow=0)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:  # as DBOS's SQLite system database
        dbapi_conn.isolation_level = "IMMEDIATE"
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=FULL")

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS checkpoints (id TEXT PRIMARY KEY, n INTEGER)"))
    return engine


def run(threads: int, transactions: int, queued: bool) -> dict[str, Any]:
    """One load on a fresh file: ``threads`` threads, ``transactions`` each."""
    with tempfile.TemporaryDirectory() as directory:
        engine = _engine(Path(directory) / "system.sqlite", threads)
        if queued:
            queue_sqlite_writers(engine)
        waits: list[float] = []
        lock = threading.Lock()
        start = threading.Barrier(threads)

        def writer(index: int) -> None:
            mine: list[float] = []
            start.wait()
            for number in range(transactions):
                key = f"{index}-{number}"
                asked = time.perf_counter()
                with engine.connect() as conn:
                    conn.execute(text("INSERT INTO checkpoints (id, n) VALUES (:id, 0)"), {"id": key})
                    conn.execute(text("UPDATE checkpoints SET n = n + 1 WHERE id = :id"), {"id": key})
                    conn.commit()
                mine.append(time.perf_counter() - asked)
            with lock:
                waits.extend(mine)

        workers = [threading.Thread(target=writer, args=(index,)) for index in range(threads)]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - began
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*), sum(n) FROM checkpoints")).one()
        engine.dispose()
    ordered = sorted(waits)
    return {
        "queued_on_a_lock": queued,
        "transactions": len(waits),
        "rows_written_once": rows[0] == len(waits) and rows[1] == len(waits),
        "per_second": round(len(waits) / seconds, 1),
        "wait_ms": {
            "p50": round(statistics.median(ordered) * 1000, 2),
            "p95": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
            "max": round(ordered[-1] * 1000, 2),
        },
        "wait_seconds_summed": round(sum(waits), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--transactions", type=int, default=100, help="per thread")
    parser.add_argument("--rounds", type=int, default=3, help="alternating pairs: busy handler, then lock")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = [
        run(args.threads, args.transactions, queued) for _ in range(args.rounds) for queued in (False, True)
    ]
    for result in results:
        print(
            f"{'lock' if result['queued_on_a_lock'] else 'busy handler':>12}: "
            f"{result['per_second']:>8.1f} transactions/s, wait p50 {result['wait_ms']['p50']} ms, "
            f"p95 {result['wait_ms']['p95']} ms, max {result['wait_ms']['max']} ms, "
            f"{result['wait_seconds_summed']} s summed over {args.threads} threads"
        )
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
