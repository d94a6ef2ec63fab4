"""Migration 0024 on a database with ledger entries (SQLite, and PostgreSQL on its pass): the
position index becomes partial and keeps positions unique, the dashboard's event-type index
becomes one partial index per event type, and the downgrade puts the old indexes back. At head,
the ledger's queries by position and the dashboard's by event type are index scans.

The plans come from ``EXPLAIN QUERY PLAN`` on SQLite and from ``EXPLAIN`` on PostgreSQL with
sequential and bitmap scans priced out (its planner prefers a sequential scan of a small table
whatever its indexes), as in ``test_listing_cost.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Connection

from fulfill.store import dashboard, executions, ledger
from fulfill.store.db import Database
from fulfill.store.migrate import alembic_config, upgrade_to_head
from tests.support.harness import fresh_database
from tests.support.plans import last_statement_plan

NOW = "2026-12-05T00:00:00.000Z"
_LEDGER = sa.table(
    "ledger_entries",
    sa.column("entry_id", sa.String()),
    sa.column("tenant_id", sa.String()),
    sa.column("account_id", sa.String()),
    sa.column("action_intent_id", sa.String()),
    sa.column("attempt", sa.Integer()),
    sa.column("event_type", sa.String()),
    sa.column("trace_id", sa.String()),
    sa.column("timestamp", sa.String()),
    sa.column("data", sa.JSON()),
    sa.column("position", sa.BigInteger()),
)


def _entry(
    entry_id: str, event_type: str = "EXECUTION_STARTED", position: int | None = None
) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai_1",
        "attempt": 1,
        "event_type": event_type,
        "trace_id": "trace",
        "timestamp": NOW,
        "data": {"tool_name": "internal.create_task", "will_retry": True},
        "position": position,
    }


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path, migrated=False) as db:
        yield db


def _ledger_indexes(db: Database) -> set[str]:
    with db.read() as conn:
        return {index["name"] for index in sa.inspect(conn).get_indexes("ledger_entries") if index["name"]}


def _insert(db: Database, *rows: dict[str, Any]) -> None:
    with db.write() as conn:
        conn.execute(sa.insert(_LEDGER), list(rows))


def test_0024_makes_the_append_indexes_partial_keeps_positions_unique_and_downgrades(
    database: Database,
) -> None:
    config = alembic_config(database)
    command.upgrade(config, "0023")
    _insert(database, _entry("e1", position=1), _entry("e2"), _entry("e3", "TOOL_CALL_TRY_FAILED"))
    command.upgrade(config, "0024")
    indexes = _ledger_indexes(database)
    assert {
        "ux_ledger_entries_tenant_position",
        "ix_ledger_entries_failed_tries",
        "ix_ledger_entries_unknown_outcomes",
    } <= indexes
    assert "ix_ledger_entries_event_tenant_timestamp" not in indexes
    _insert(database, _entry("e4"), _entry("e5"))  # entries without a position never collide
    with pytest.raises(sa.exc.IntegrityError):
        _insert(database, _entry("e6", position=1))  # a position is still taken once per tenant
    with database.read() as conn:
        tries = dashboard.retried_tries(conn, since="2026-12-04", until="2026-12-06", tenant_id="t1")
    assert tries == [("internal.create_task", 1)]
    command.downgrade(config, "0023")
    indexes = _ledger_indexes(database)
    assert {"ux_ledger_entries_tenant_position", "ix_ledger_entries_event_tenant_timestamp"} <= indexes
    assert not {"ix_ledger_entries_failed_tries", "ix_ledger_entries_unknown_outcomes"} & indexes
    with pytest.raises(sa.exc.IntegrityError):
        _insert(database, _entry("e7", position=1))


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (lambda conn: ledger.entries_at(conn, "t1", 2, 40), "ux_ledger_entries_tenant_position"),
        (lambda conn: ledger.first_entry_outside(conn, "t1", 40), "ux_ledger_entries_tenant_position"),
        (lambda conn: ledger.unchecked_entries(conn, "t1", limit=10), "ix_ledger_entries_unchecked"),
        (lambda conn: executions.list_ledger(conn, "t1", "ai_1"), "ix_ledger_entries_tenant_intent_seq"),
        (
            lambda conn: dashboard.retried_tries(
                conn, since="2026-12-04", until="2026-12-06", tenant_id="t1"
            ),
            "ix_ledger_entries_failed_tries",
        ),
        (
            lambda conn: dashboard.retried_tries(
                conn, since="2026-12-04", until="2026-12-06", tenant_id=None
            ),
            "ix_ledger_entries_failed_tries",
        ),
        (
            lambda conn: dashboard.unknown_outcomes(conn, tenant_id="t1", limit=10),
            "ix_ledger_entries_unknown_outcomes",
        ),
    ],
    ids=["positions", "outside", "unchecked", "timeline", "failed-tries", "failed-tries-all", "unknown"],
)
def test_the_ledgers_queries_stay_index_scans_at_head(
    database: Database, query: Callable[[Connection], Any], index: str
) -> None:
    upgrade_to_head(database)
    _insert(
        database,
        *(_entry(f"p{n}", position=n) for n in range(1, 41)),
        *(_entry(f"n{n}") for n in range(40)),
        *(_entry(f"f{n}", "TOOL_CALL_TRY_FAILED") for n in range(5)),
        *(_entry(f"u{n}", "OUTCOME_UNKNOWN") for n in range(5)),
    )
    plan = last_statement_plan(database, query)
    assert index in plan, plan
