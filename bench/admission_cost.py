"""What one admission at a rate-limited connector costs with N callers waiting in one process.

The connector's gate (``engine/flow.py``) alone, on a fresh database, without the service around
it: N threads each take a permit, report the call sent and finish it at once, until C calls are
made, the connector limited to R calls per second. Reported per call: the write transactions the
gate ran, the waits of the callers that ended because they were woken (not because their time
ran out), the process's CPU-milliseconds, and how late each call was sent after its rate slot
opened (the send ``limit`` calls earlier plus the window); and the sends per second after the
first window. Counts and CPU are the robust figures
on a shared machine; the lateness is a time.

    python -m bench.admission_cost --waiters 8,64,128 --calls 200 --rate 20
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import emit
from fulfill.clock import SystemClock
from fulfill.config import Settings
from fulfill.domain.flowcontrol import CallResult, ConnectorLimits
from fulfill.engine.flow import FlowControl
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore, SqlUnitOfWork

SECRET = "bench-secret-0123456789abcdef0123456789"
CONNECTOR = "crm"


class _CountingStore(SqlStore):
    writes = 0

    @contextmanager
    def write(self) -> Iterator[SqlUnitOfWork]:
        _CountingStore.writes += 1
        with super().write() as uow:
            yield uow


@contextmanager
def counting_wakeups(prefix: str) -> Iterator[list[int]]:
    """Counts, while the block runs, the waits of the threads named ``prefix…`` that ended
    because they were notified (not because their time ran out); ``threading.Condition.wait`` is
    itself again after the block."""
    woken = [0]
    lock = threading.Lock()
    wait = threading.Condition.wait

    def counted(self: threading.Condition, timeout: float | None = None) -> bool:
        notified = wait(self, timeout)
        if notified and threading.current_thread().name.startswith(prefix):
            with lock:
                woken[0] += 1
        return notified

    threading.Condition.wait = counted  # type: ignore[method-assign]
    try:
        yield woken
    finally:
        threading.Condition.wait = wait  # type: ignore[method-assign]


def run_one(waiters: int, calls: int, rate: float, database_url: str | None) -> dict[str, Any]:
    url = database_url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='fulfill-admission-')) / 'gate.db'}"
    database = Database(url)
    upgrade_to_head(database)
    store = _CountingStore(database)
    settings = Settings(jwt_secret=SECRET)
    with store.write() as uow:
        uow.connectors.put_limits(
            CONNECTOR, ConnectorLimits(rate_per_second=rate), now="2026-12-05T00:00:00Z"
        )
    gate = FlowControl(store, settings, SystemClock())
    sends: list[float] = []
    left = [calls]
    lock = threading.Lock()

    def caller(index: int) -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            with gate.admit(
                CONNECTOR, tenant_id=f"tenant-{index % 2}", deadline=time.time() + 3600, lease_seconds=60
            ) as permit:
                permit.sent()
                if permit.sent_at is not None:
                    with lock:
                        sends.append(permit.sent_at)
                permit.finish(CallResult.ANSWERED)

    threads = [
        threading.Thread(target=caller, args=(i,), name=f"caller-{waiters}-{i}") for i in range(waiters)
    ]
    with counting_wakeups(f"caller-{waiters}-") as woken:
        writes, cpu = _CountingStore.writes, time.process_time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cpu = time.process_time() - cpu
    writes = _CountingStore.writes - writes
    gate.close()
    database.dispose()
    sends.sort()
    window = ConnectorLimits(rate_per_second=rate).rate_window()
    assert window is not None
    span = window.period + settings.connector_rate_margin_seconds
    late = sorted(sends[k] - (sends[k - window.limit] + span) for k in range(window.limit, len(sends)))
    return {
        "waiters": waiters,
        "calls": len(sends),
        "writes_per_call": round(writes / len(sends), 2),
        "woken_per_call": round(woken[0] / len(sends), 2),
        "cpu_ms_per_call": round(cpu * 1000 / len(sends), 2),
        # After the first window (whose calls go at once, only spread by the spacing).
        "sends_per_second": round((len(sends) - 1 - window.limit) / (sends[-1] - sends[window.limit]), 3),
        "sent_after_slot_ms_p50": round(late[len(late) // 2] * 1000, 1),
        "sent_after_slot_ms_p90": round(late[int(len(late) * 0.9)] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waiters", default="8,64,128", help="callers waiting at once, comma-separated")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--rate", type=float, default=20.0, help="the connector's rate_per_second (1 or more)"
    )
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite database")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [
        run_one(int(waiters), args.calls, args.rate, args.database_url) for waiters in args.waiters.split(",")
    ]
    emit({"rate_per_second": args.rate, "runs": results}, args.json)


if __name__ == "__main__":
    main()
