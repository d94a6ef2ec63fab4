"""What one tenant's volume costs another tenant's reads: every tenant-scoped read of the store.

A migrated database holds a small tenant (``--small`` executions: intents, attempts, outcomes,
ledger entries, one in twenty waiting for approval; one in 25, decided, and one in a thousand,
waiting, in a second account) and, step by step, a greedy tenant's history of the same shape
(``--backlogs``), in accounts of the same names, in the same hour. At each step every read a
tenant's caller can reach (the account listing with each filter, the approvals page and its
count, of the tenant and of the second account, the accounts, the recent intents, a subject's
ledger, the ledger's counts and the entries no checkpoint covers yet, the dashboard's panels, the
dead letters) is timed for the small tenant: ``--calls`` calls in one read, after ten untimed (so that psycopg has prepared what
it prepares and PostgreSQL settled on the plan it keeps), the median in microseconds. The
dashboard's window ends a millisecond later at each read, as the dashboard's ends at the moment
it is read. A read whose time grows with the other tenant's backlog reads that tenant's rows;
``changed`` names the reads whose answer for the small tenant changed with it (none should).
The same reads of the greedy tenant at each step (``own_reads``) show what a tenant's own history
costs its reads: a page should not grow with it.

    python -m bench.tenant_skew_cost                   # SQLite, in a temporary directory
    python -m bench.tenant_skew_cost --postgres        # a throw-away PostgreSQL server too

On PostgreSQL the tables are vacuumed and analysed after each fill, as autovacuum would.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from bench.common import emit
from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalStatus,
    AttemptStatus,
    ExecutionAttempt,
    ExecutionPolicy,
    ExecutionStatus,
    LedgerEntry,
)
from fulfill.domain.records import PendingFilter
from fulfill.store import dashboard, executions, intents, ledger, outbox
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head

ACCOUNT = "acc-1"  # account ids are the tenant's own: both tenants name theirs alike
# An account with a long history and few pending: one execution in 25, decided, and one in a
# thousand, waiting for approval.
QUIET = "acc-2"
START = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
SINCE = datetime(2026, 12, 6, tzinfo=UTC)  # a day's window, holding every execution filled
NOW_EPOCH = START.timestamp() + 3600
TABLES = ("action_intents", "execution_attempts", "execution_outcomes", "ledger_entries")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _at(index: int) -> str:
    return _iso(START + timedelta(milliseconds=index * 100))


def _fill(db: Database, tenant_id: str, first: int, count: int) -> None:
    """``count`` executions of ``tenant_id``: one in twenty waiting for approval, one in twenty
    failed, the rest succeeded, each with its attempt, outcome and two ledger entries."""
    with db.write() as conn:
        for index in range(first, first + count):
            at = _at(index)
            intent_id = f"ai_{tenant_id}_{index:07d}"
            waiting = index % 20 == 0
            account = QUIET if index % 25 == 3 or index % 1000 == 40 else ACCOUNT
            intent = ActionIntentV1(
                action_intent_id=intent_id,
                action_type="CREATE_INTERNAL_TASK",
                parameters={"title": "x"},
                approval_status=ApprovalStatus.PENDING_APPROVAL if waiting else ApprovalStatus.APPROVED,
                execution_policy=ExecutionPolicy(),
                expires_at="2027-01-01T00:00:00.000Z",
                expires_at_epoch=1_798_761_600,
                original_decision_id=f"dec_{index}",
                tenant_id=tenant_id,
                account_id=account,
                trace_id="trace",
                registry_version=1,
                created_at=at,
                updated_at=at,
                proposed_by="agent@example.com",
            )
            intents.insert_intent(conn, intent, f"hash_{index}")
            executions.append_ledger_entries(
                conn,
                [
                    LedgerEntry(
                        entry_id=f"le_{tenant_id}_{index:07d}_{kind}",
                        event_type=kind,
                        timestamp=at,
                        tenant_id=tenant_id,
                        account_id=account,
                        action_intent_id=intent_id,
                        attempt=0,
                        trace_id="trace",
                        data={},
                    )
                    for kind in ("INTENT_PROPOSED", "ACTION_APPROVED")
                ],
            )
            if waiting:
                continue
            status = ExecutionStatus.FAILED if index % 20 == 1 else ExecutionStatus.SUCCEEDED
            executions.insert_attempt(
                conn,
                ExecutionAttempt(
                    tenant_id=tenant_id,
                    account_id=account,
                    action_intent_id=intent_id,
                    attempt_count=1,
                    attempt_id=f"att_{tenant_id}_{index:07d}",
                    workflow_id=f"wf_{tenant_id}_{index:07d}",
                    status=AttemptStatus(status.value),
                    trace_id="trace",
                    started_at=at,
                    updated_at=at,
                ),
                deadline_epoch=1e10,
            )
            executions.insert_outcome(
                conn,
                ActionOutcomeV1(
                    tenant_id=tenant_id,
                    account_id=account,
                    action_intent_id=intent_id,
                    attempt_count=1,
                    status=status,
                    external_object_refs=[],
                    tool_name="internal.create_task",
                    registry_version=1,
                    tool_run_ref=f"run_{index}",
                    idempotency_key=f"{index:064d}",
                    started_at=at,
                    completed_at=at,
                    trace_id="trace",
                    **(
                        {"error_class": "VALIDATION", "error_message": "no"}
                        if status is ExecutionStatus.FAILED
                        else {}
                    ),
                ),
            )
            intents.mark_execution(conn, tenant_id, intent_id, status=status, at=at)
    if not db.is_sqlite:
        # What autovacuum would do after such a fill, done now so that it does not run meanwhile.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in TABLES:
                conn.execute(text(f"VACUUM ANALYZE {table}"))


Read = Callable[[Connection, str], Any]


def _reads() -> dict[str, Read]:
    moves = itertools.count()

    def window() -> dict[str, Any]:
        """A day's window that ends a millisecond later at each read, as the dashboard's ends at
        the moment it is read."""
        since = SINCE + timedelta(milliseconds=next(moves))
        return {"since": _iso(since), "until": _iso(since + timedelta(days=1))}

    def listing(status: ExecutionStatus | None) -> Read:
        return lambda conn, tenant: intents.list_account_executions(
            conn,
            tenant_id=tenant,
            account_id=ACCOUNT,
            status=status,
            now_epoch=NOW_EPOCH,
            after=None,
            limit=51,
        )

    return {
        "account listing": listing(None),
        "account listing, SUCCEEDED": listing(ExecutionStatus.SUCCEEDED),
        "account listing, FAILED": listing(ExecutionStatus.FAILED),
        "account listing, EXPIRED": listing(ExecutionStatus.EXPIRED),
        "approvals page": lambda conn, tenant: intents.page_pending_approval(
            conn, tenant_id=tenant, wanted=PendingFilter(), oldest_first=False, after=None, limit=50
        ),
        "approvals page, by proposer": lambda conn, tenant: intents.page_pending_approval(
            conn,
            tenant_id=tenant,
            wanted=PendingFilter(proposed_by="agent@example.com"),
            oldest_first=True,
            after=None,
            limit=50,
        ),
        "approvals count": lambda conn, tenant: intents.count_pending_approval(
            conn, tenant_id=tenant, wanted=PendingFilter()
        ),
        "approvals page, one account": lambda conn, tenant: intents.page_pending_approval(
            conn,
            tenant_id=tenant,
            wanted=PendingFilter(account_id=QUIET),
            oldest_first=False,
            after=None,
            limit=50,
        ),
        "approvals count, one account": lambda conn, tenant: intents.count_pending_approval(
            conn, tenant_id=tenant, wanted=PendingFilter(account_id=QUIET)
        ),
        "approvals page, a token's accounts": lambda conn, tenant: intents.page_pending_approval(
            conn,
            tenant_id=tenant,
            wanted=PendingFilter(account_ids=frozenset({QUIET})),
            oldest_first=False,
            after=None,
            limit=50,
        ),
        "accounts": lambda conn, tenant: intents.list_accounts(conn, tenant_id=tenant, limit=100),
        "recent intents": lambda conn, tenant: intents.list_recent(conn, tenant, 20),
        "a subject's ledger": lambda conn, tenant: executions.list_ledger(
            conn, tenant, f"ai_{tenant}_0000002"
        ),
        "ledger counts": lambda conn, tenant: ledger.count_entries(conn, tenant),
        "ledger unchecked": lambda conn, tenant: ledger.unchecked_entries(conn, tenant, limit=100),
        "dashboard outcomes per minute": lambda conn, tenant: dashboard.outcomes_per_minute(
            conn, tenant_id=tenant, **window()
        ),
        "dashboard failures": lambda conn, tenant: dashboard.failures_by_class(
            conn, tenant_id=tenant, **window()
        ),
        "dashboard approval waits": lambda conn, tenant: dashboard.approval_waits(
            conn, tenant_id=tenant, limit=1000, **window()
        ),
        "dashboard approval to outcome": lambda conn, tenant: dashboard.approval_to_outcome(
            conn, tenant_id=tenant, limit=1000, **window()
        ),
        "dashboard tool outcomes": lambda conn, tenant: dashboard.tool_outcome_counts(
            conn, tenant_id=tenant, **window()
        ),
        "dashboard tool timings": lambda conn, tenant: dashboard.tool_timings(
            conn, tenant_id=tenant, limit=1000, **window()
        ),
        "dashboard retried": lambda conn, tenant: dashboard.retried_tries(conn, tenant_id=tenant, **window()),
        "dashboard pending ages": lambda conn, tenant: dashboard.pending_by_age(
            conn, bounds=[_at(0)], now_epoch=NOW_EPOCH, tenant_id=tenant
        ),
        "dashboard stuck": lambda conn, tenant: dashboard.stuck_attempts(
            conn, now_epoch=NOW_EPOCH, tenant_id=tenant, limit=20
        ),
        "dashboard unknown outcomes": lambda conn, tenant: dashboard.unknown_outcomes(
            conn, tenant_id=tenant, limit=20
        ),
        "dashboard compensations": lambda conn, tenant: dashboard.compensations_for_a_person(
            conn, tenant_id=tenant, limit=20
        ),
        "dashboard dead letters": lambda conn, tenant: dashboard.dead_letter_count(conn, tenant_id=tenant),
        "dead letters": lambda conn, tenant: outbox.dead_letters(conn, tenant_id=tenant, limit=100),
    }


def _time(db: Database, read: Read, tenant_id: str, calls: int) -> tuple[float, Any]:
    """The median µs of ``calls`` reads (after ten untimed), and what the last one found."""
    walls: list[float] = []
    with db.read() as conn:
        for _ in range(10):
            read(conn, tenant_id)
        for _ in range(calls):
            start = time.perf_counter()
            found = read(conn, tenant_id)
            walls.append(time.perf_counter() - start)
    return round(statistics.median(walls) * 1e6, 1), found


def measure(url: str, backlogs: list[int], small: int, calls: int) -> dict[str, Any]:
    """``reads``: each read's median µs for the small tenant by the greedy tenant's backlog;
    ``own_reads``: the greedy tenant's own, by its backlog (``--calls`` ÷ 10 calls each, at least
    5): what a tenant's own history costs its reads; ``changed``: the reads whose answer for the
    small tenant changed with the other tenant's backlog (none should)."""
    db = Database(url)
    try:
        upgrade_to_head(db)
        _fill(db, "small", 0, small)
        reads = _reads()
        timed: dict[str, dict[str, float]] = {name: {} for name in reads}
        own: dict[str, dict[str, float]] = {name: {} for name in reads}
        answers: dict[str, Any] = {}
        changed: set[str] = set()
        filled = 0
        for backlog in backlogs:
            _fill(db, "greedy", filled, backlog - filled)
            filled = backlog
            for name, read in reads.items():
                timed[name][str(backlog)], found = _time(db, read, "small", calls)
                if isinstance(found, list):  # the rows of a GROUP BY come in any order
                    found = sorted(found, key=repr)
                if name in answers and answers[name] != found:
                    changed.add(name)
                answers[name] = found
                own[name][str(backlog)], _ = _time(db, read, "greedy", max(5, calls // 10))
        return {"reads": timed, "own_reads": own, "changed": sorted(changed)}
    finally:
        db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlogs", default="0,1000,10000,30000")
    parser.add_argument("--small", type=int, default=100, help="the small tenant's executions")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--postgres", action="store_true", help="also on a throw-away PostgreSQL server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    backlogs = sorted(int(value) for value in args.backlogs.split(","))
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.system()}",
        "small": args.small,
        "calls": args.calls,
        "unit": "median µs per read of the small tenant, by the greedy tenant's executions",
    }
    with tempfile.TemporaryDirectory() as directory:
        result["sqlite"] = measure(f"sqlite:///{directory}/skew.db", backlogs, args.small, args.calls)
    if args.postgres:
        from bench.pg_cpu import throwaway_database

        with throwaway_database("skew") as url:
            result["postgresql"] = measure(url, backlogs, args.small, args.calls)
    emit(result, args.json)


if __name__ == "__main__":
    main()
