"""Fair share of one connector between tenants: how long one tenant's single execution waits
behind another tenant's backlog on a shared rate limit.

``fulfill serve`` runs in its own process(es) on a fresh database. The benchmark limits the
internal connector to R calls per second (``PUT /admin/connectors/internal/limits``), has tenant A
create and approve N intents at once, waits until A's first call has been made (A's backlog is
now waiting), then has tenant B create and approve one intent, and reports:

* B's approval → recorded outcome (the approval timestamp and the attempt's ``completed_at``,
  both stored by the service);
* how many of A's calls were made before B's and after it (first come, first served puts B's
  after all of A's);
* the connector's throughput: calls per second from the first to the last, against the limit R
  (fair sharing must not slow the connector down);
* the same in the steady state (from the 50th send to the 10th before the last, so that the
  start of the backlog, whose executions are still being started, does not count), and how late
  each call was sent after its rate slot opened (the send ``limit`` calls before it plus the
  window, ``period + FULFILL_CONNECTOR_RATE_MARGIN_SECONDS``): every millisecond of it pushes
  the later slots back, since the window counts from the actual sends. Read from the gate's own
  records of the calls (``connector_calls``), for a rate of 1 or more;
* what the waiting backlog costs: over ``--sample-seconds`` right after B's approval (A's backlog
  waits at the connector meanwhile), the service processes' CPU per second (``/proc``) and, on
  PostgreSQL, the database's transactions per second (``pg_stat_database``).

    python -m bench.fair_share --backlog 15 --rate 1
    python -m bench.fair_share --backlog 300 --rate 10
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from bench.common import emit
from bench.slow_tools import create_and_approve_at_once
from fulfill.client import FulfillClient
from fulfill.config import Settings
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES, Scope
from fulfill.domain.time import epoch_from_iso
from fulfill.store.tables import connector_calls, execution_attempts, internal_tasks
from fulfill.tokens import mint_token
from fulfill_tools.launch import ServiceGroup
from fulfill_tools.loadtest import cpu_seconds

SECRET = "bench-secret-0123456789abcdef0123456789"
SCOPES = [*INTENT_CLIENT_SCOPES, Scope.PLATFORM_ADMIN]


def run(
    backlog: int, rate: float, database_url: str | None, workers: int, sample_seconds: float = 10.0
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fulfill-fair-share-"))
    url = database_url or f"sqlite:///{work / 'fulfill.db'}"
    group = ServiceGroup(database_url=url, workers=workers, secret=SECRET, directory=work).start()
    settings = Settings(jwt_secret=SECRET)
    clients = {
        tenant: FulfillClient(
            group.api_url, mint_token(settings, tenant_id=tenant, scopes=SCOPES), timeout=60
        )
        for tenant in ("tenant-a", "tenant-b")
    }
    a, b = clients["tenant-a"], clients["tenant-b"]
    engine = create_engine(url)
    try:
        a.put_connector_limits("internal", {"rate_per_second": rate, "concurrency": None})
        a_ids = create_and_approve_at_once(
            a,
            backlog,
            account="acc-a",
            approver_token=mint_token(
                settings, tenant_id="tenant-a", scopes=SCOPES, subject="bench-approver"
            ),
        )
        deadline = time.monotonic() + 120
        while _tasks(engine) < 1 and time.monotonic() < deadline:
            group.check_alive()
            time.sleep(0.05)
        created = b.create_intent(
            {"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-b", "parameters": {"title": "B"}}
        )
        b_id = created.value.action_intent_id
        b_approver = mint_token(settings, tenant_id="tenant-b", scopes=SCOPES, subject="bench-approver")
        with FulfillClient(group.api_url, b_approver, timeout=60) as reviewer:
            reviewer.approve(b_id)  # nobody approves their own proposal
        waiting_state = _sample_waiting(group, engine, sample_seconds)
        deadline = time.monotonic() + backlog / rate * 2 + 300
        while time.monotonic() < deadline:
            group.check_alive()
            with engine.connect() as conn:
                active = conn.execute(
                    select(func.count())
                    .select_from(execution_attempts)
                    .where(execution_attempts.c.status.in_(["QUEUED", "RUNNING"]))
                ).scalar_one()
            if active == 0 and _tasks(engine) > 0:
                break
            time.sleep(0.5)
        with engine.connect() as conn:
            attempts = {
                row.action_intent_id: row
                for row in conn.execute(
                    select(
                        execution_attempts.c.action_intent_id,
                        execution_attempts.c.status,
                        execution_attempts.c.completed_at,
                    )
                ).all()
            }
            tasks = conn.execute(select(internal_tasks.c.tenant_id, internal_tasks.c.created_at)).all()
            sends = sorted(
                float(value)
                for value in conn.execute(
                    select(connector_calls.c.dispatched_epoch).where(
                        connector_calls.c.name == "internal", connector_calls.c.dispatched_epoch.is_not(None)
                    )
                ).scalars()
            )
        b_approved = b.get_intent(b_id).approval_timestamp
        b_attempt = attempts[b_id]
        order = [tenant for tenant, _ in sorted(tasks, key=lambda row: row[1])]
        a_times = sorted(epoch_from_iso(when) for tenant, when in tasks if tenant == "tenant-a")
        b_position = order.index("tenant-b") if "tenant-b" in order else None
        all_times = sorted(epoch_from_iso(when) for _, when in tasks)
        span = all_times[-1] - all_times[0] if len(all_times) > 1 else float("nan")
        return {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}",
            "database": "postgresql" if url.startswith("postgresql") else "sqlite",
            "processes": "all" if workers <= 0 else f"api + {workers} workers",
            "rate_per_second": rate,
            "a_backlog": backlog,
            "b_status": b_attempt.status,
            "b_approval_to_outcome_s": round(
                epoch_from_iso(b_attempt.completed_at) - epoch_from_iso(b_approved or ""), 2
            )
            if b_attempt.completed_at
            else None,
            "a_calls_before_b": None if b_position is None else order[:b_position].count("tenant-a"),
            "a_calls_after_b": None if b_position is None else order[b_position + 1 :].count("tenant-a"),
            "a_statuses": _count(attempts[i].status for i in a_ids),
            "a_calls": len(a_times),
            "connector_calls_per_second": round((len(all_times) - 1) / span, 3)
            if len(all_times) > 1
            else None,
            **_steady(sends, rate, Settings(jwt_secret=SECRET).connector_rate_margin_seconds),
            "waiting_state": waiting_state,
        }
    finally:
        engine.dispose()
        for client in clients.values():
            client.close()
        group.stop()


def _steady(sends: list[float], rate: float, margin: float) -> dict[str, Any]:
    """The steady state's sends per second, and how late each call was sent after its slot."""
    if rate < 1 or len(sends) < 100:
        return {"steady_sends_per_second": None, "sent_after_slot_ms": None}
    limit, span = int(rate), 1.0 + margin
    first, last = 50, len(sends) - 10
    late = sorted(sends[k] - (sends[k - limit] + span) for k in range(first, last + 1))
    return {
        "steady_sends_per_second": round((last - first) / (sends[last] - sends[first]), 3),
        "sent_after_slot_ms": {
            "p50": round(late[len(late) // 2] * 1000, 1),
            "p90": round(late[int(len(late) * 0.9)] * 1000, 1),
            "mean": round(sum(late) / len(late) * 1000, 1),
        },
    }


def _sample_waiting(group: ServiceGroup, engine: Any, seconds: float) -> dict[str, Any]:
    """The service processes' CPU and (PostgreSQL) the database's transactions per second over
    ``seconds`` of the run as it stands."""

    def transactions() -> float | None:
        if engine.dialect.name != "postgresql":
            return None
        with engine.connect() as conn:
            return float(
                conn.exec_driver_sql(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
                ).scalar_one()
            )

    pids = [process.pid for process, _ in group.processes.values()]
    cpu, xacts, began = sum(cpu_seconds(pid) for pid in pids), transactions(), time.monotonic()
    time.sleep(seconds)
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu
    after, elapsed = transactions(), time.monotonic() - began
    return {
        "seconds": round(elapsed, 1),
        "service_cpu_ms_per_s": round(cpu * 1000 / elapsed, 1),
        # The counters are flushed by each backend at most once a second: approximate.
        "database_transactions_per_s": None
        if xacts is None or after is None
        else round((after - xacts) / elapsed, 1),
    }


def _tasks(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(internal_tasks)).scalar_one())


def _count(values: Any) -> dict[str, int]:
    counted: dict[str, int] = {}
    for value in values:
        counted[value] = counted.get(value, 0) + 1
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=15, help="tenant A's intents approved at once")
    parser.add_argument("--rate", type=float, default=1.0, help="the internal connector's rate_per_second")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite database")
    parser.add_argument("--workers", type=int, default=0, help="0: one 'all' process; N: api + N workers")
    parser.add_argument(
        "--sample-seconds", type=float, default=10.0, help="how long the waiting backlog is sampled"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.backlog, args.rate, args.database_url, args.workers, args.sample_seconds)
    emit(result, args.json)


if __name__ == "__main__":
    main()
