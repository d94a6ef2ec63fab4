"""One tenant's dashboard reads of a window's outcomes do not read another tenant's outcomes.

The five reads of outcomes recorded in a window (per minute, failures, approval to outcome, tool
counts, tool timings) write the window's ends into the statement (``store/dashboard.py
_recorded_in``). Bound as parameters, psycopg prepared the statement at its fifth run and
PostgreSQL kept one plan for it, built for the average tenant, which read the window through the
index of every tenant's outcomes: all of another tenant's outcomes of the window, for a tenant
with a few (``bench/tenant_skew_cost.py``). SQLite, and PostgreSQL on its pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from fulfill.domain.models import ExecutionStatus
from fulfill.store import dashboard, executions, intents
from fulfill.store.db import Database
from tests.support.harness import fresh_database
from tests.support.plans import last_statement_plan
from tests.unit.factories import make_intent, make_outcome

EVERY_TENANT_INDEX = "ix_execution_outcomes_completed"
START = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


SINCE, UNTIL = _iso(START - timedelta(hours=1)), _iso(START + timedelta(hours=1))


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        with db.write() as conn:
            for tenant_id, count in (("small", 5), ("greedy", 400)):
                for index in range(count):
                    moment = START + timedelta(seconds=index)
                    at, approved = _iso(moment), _iso(moment - timedelta(seconds=1))
                    intent_id = f"ai_{tenant_id}_{index}"
                    intent = make_intent(
                        tenant_id=tenant_id,
                        action_intent_id=intent_id,
                        created_at=_iso(moment - timedelta(seconds=2)),
                        updated_at=approved,
                        approval_timestamp=approved,
                    )
                    intents.insert_intent(conn, intent, f"hash_{index}")
                    status = ExecutionStatus.FAILED if index % 4 == 0 else ExecutionStatus.SUCCEEDED
                    outcome = make_outcome(
                        tenant_id=tenant_id,
                        action_intent_id=intent_id,
                        status=status,
                        started_at=at,
                        completed_at=at,
                        **({"error_class": "VALIDATION"} if status is ExecutionStatus.FAILED else {}),
                    )
                    executions.insert_outcome(conn, outcome)
            if not db.is_sqlite:
                conn.execute(text("ANALYZE execution_outcomes"))
                conn.execute(text("ANALYZE action_intents"))
        yield db


Read = Callable[[Connection, str | None, str, str], Any]

READS: dict[str, Read] = {
    "outcomes per minute": lambda conn, tenant, since, until: dashboard.outcomes_per_minute(
        conn, since=since, until=until, tenant_id=tenant
    ),
    "failures": lambda conn, tenant, since, until: dashboard.failures_by_class(
        conn, since=since, until=until, tenant_id=tenant
    ),
    "approval to outcome": lambda conn, tenant, since, until: dashboard.approval_to_outcome(
        conn, since=since, until=until, tenant_id=tenant, limit=100
    ),
    "tool outcomes": lambda conn, tenant, since, until: dashboard.tool_outcome_counts(
        conn, since=since, until=until, tenant_id=tenant
    ),
    "tool timings": lambda conn, tenant, since, until: dashboard.tool_timings(
        conn, since=since, until=until, tenant_id=tenant, limit=100
    ),
}


def _statements(conn: Connection, run: Callable[[], Any]) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        seen.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", remember)
    try:
        run()
    finally:
        event.remove(conn, "before_cursor_execute", remember)
    return seen


@pytest.mark.parametrize("name", READS)
def test_the_window_is_in_the_statement_not_a_parameter(database: Database, name: str) -> None:
    with database.read() as conn:
        seen = _statements(conn, lambda: READS[name](conn, "small", SINCE, UNTIL))
    assert seen
    for statement, parameters in seen:
        assert SINCE in statement
        assert UNTIL in statement
        values = parameters.values() if isinstance(parameters, dict) else parameters
        assert SINCE not in values
        assert UNTIL not in values


@pytest.mark.parametrize("name", READS)
def test_one_tenants_window_is_not_read_through_every_tenants_index(database: Database, name: str) -> None:
    plan = last_statement_plan(database, lambda conn: READS[name](conn, "small", SINCE, UNTIL))
    assert EVERY_TENANT_INDEX not in plan, plan
    assert "execution_outcomes" in plan


@pytest.mark.parametrize("name", ["outcomes per minute", "tool timings"])
def test_every_tenants_window_still_reads_its_index(database: Database, name: str) -> None:
    """The operator's view of every tenant reads the window through the index made for it."""
    plan = last_statement_plan(database, lambda conn: READS[name](conn, None, SINCE, UNTIL))
    assert EVERY_TENANT_INDEX in plan, plan


@pytest.mark.parametrize("name", READS)
def test_the_reads_find_the_tenants_own_outcomes(database: Database, name: str) -> None:
    with database.read() as conn:
        mine = READS[name](conn, "small", SINCE, UNTIL)
        everyone = READS[name](conn, None, SINCE, UNTIL)
    expected: dict[str, Any] = {
        "outcomes per minute": [("2026-12-06T10:00", "FAILED", 2), ("2026-12-06T10:00", "SUCCEEDED", 3)],
        "failures": {"VALIDATION": 2},
        "tool outcomes": [("internal.create_task", "FAILED", 2), ("internal.create_task", "SUCCEEDED", 3)],
    }
    newest_first = [_iso(START + timedelta(seconds=index)) for index in (4, 3, 2, 1, 0)]
    if name in expected:
        assert (sorted(mine) if isinstance(mine, list) else mine) == expected[name]
    elif name == "approval to outcome":
        total, pairs = mine
        assert total == 5
        assert [completed for _, completed in pairs] == newest_first
        assert everyone[0] == 405
        assert len(everyone[1]) == 100
    else:
        assert [completed for _, _, completed in mine] == newest_first
        assert len(everyone) == 100


def test_a_moving_window_is_never_kept_as_one_prepared_plan(database: Database) -> None:
    """Read the way the dashboard reads (its window ends at the moment it is read), ten times on
    one connection, each statement is planned with its window: psycopg, which prepares a
    statement at its fifth run, prepared none of them."""
    if database.is_sqlite:
        pytest.skip("SQLite plans a statement without its parameters' values either way")
    with database.read() as conn:
        for minute in range(10):
            since = _iso(START - timedelta(hours=1) + timedelta(milliseconds=minute))
            until = _iso(START + timedelta(hours=1) + timedelta(milliseconds=minute))
            for read in READS.values():
                read(conn, "small", since, until)
        prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
    reads = [statement for statement in prepared if statement.startswith("SELECT")]
    assert not [statement for statement in reads if "execution_outcomes" in statement], reads
