"""The indexes that the sweeps and gauges of attempts read hold only the attempts those read
(migration 0028): the attempts in flight (QUEUED or RUNNING) by deadline and by last change, and
the AMBIGUOUS ones by last change. A finished attempt leaves them: each index is as small as what
is in flight or waits for a person, whatever the history, and on PostgreSQL an attempt's last
change (to SUCCEEDED, FAILED, ...) writes no entry in them.

Every query of those attempts reaches its index: the reconciler's sweep, the gauges of attempts
past their budget (overall and by tenant) and of AMBIGUOUS ones (by age, the oldest), the
reconcile probes' due list, and the dashboard's list of attempts past their budget. The statuses
are constants in the queries' text (``store/tables.py is_active_attempt``, ``is_ambiguous_attempt``):
SQLite uses a partial index only for a query that repeats its condition, and PostgreSQL's kept
plan of a prepared statement is built without the parameters' values. Plans as in
``test_pending_intents_indexes.py`` (``tests/support/plans.py``). SQLite, and PostgreSQL on its pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection

from fulfill.domain.models import AttemptStatus
from fulfill.store import dashboard, executions, probes
from fulfill.store.db import Database
from fulfill.store.migrate import alembic_config
from tests.support.harness import fresh_database
from tests.support.plans import assert_plan_reaches, index_conditions
from tests.unit.factories import make_tenant_attempts

ACTIVE_DEADLINE = "ix_execution_attempts_active_deadline"
ACTIVE_UPDATED = "ix_execution_attempts_active_updated"
AMBIGUOUS_UPDATED = "ix_execution_attempts_ambiguous_updated"
SWEEP_INDEXES = {ACTIVE_DEADLINE, ACTIVE_UPDATED, AMBIGUOUS_UPDATED}
WHOLE_BEFORE = {"ix_execution_attempts_status_deadline", "ix_execution_attempts_status_updated"}
NOW = 1_900_000_000.0
STATUSES = [
    AttemptStatus.QUEUED,
    AttemptStatus.RUNNING,
    AttemptStatus.AMBIGUOUS,
    AttemptStatus.SUCCEEDED,
    AttemptStatus.FAILED,
    AttemptStatus.CANCELLED,
]


def _attempts(db: Database) -> None:
    """Per tenant, five of each status, in five rounds of every status: the first, third and fifth
    rounds past their deadline (``NOW``), so three of each status."""
    with db.write() as conn:
        for tenant in ("t1", "t2"):
            for attempt in make_tenant_attempts(tenant, STATUSES * 5):
                past = int(attempt.action_intent_id.rsplit("_", 1)[1]) // len(STATUSES) % 2 == 0
                assert executions.insert_attempt(conn, attempt, deadline_epoch=NOW - 60 if past else NOW + 60)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        _attempts(db)
        yield db


QUERIES: list[tuple[str, Callable[[Connection], Any], str]] = [
    (
        "the reconciler's sweep",
        lambda conn: executions.active_attempts_unchanged_since(conn, "2099-01-01T00:00:00.000Z", limit=5),
        ACTIVE_UPDATED,
    ),
    ("attempts past their budget", lambda conn: executions.attempts_past_budget(conn, NOW), ACTIVE_DEADLINE),
    (
        "attempts past their budget by tenant",
        lambda conn: executions.attempts_past_budget_by_tenant(conn, NOW),
        ACTIVE_DEADLINE,
    ),
    ("AMBIGUOUS by age", lambda conn: executions.ambiguous_by_age(conn, NOW), AMBIGUOUS_UPDATED),
    ("the oldest AMBIGUOUS", executions.oldest_ambiguous_at, AMBIGUOUS_UPDATED),
    (
        "the probes due",
        lambda conn: probes.due_probes(conn, now_epoch=NOW, first_after_seconds=60, limit=5),
        AMBIGUOUS_UPDATED,
    ),
    (
        "the dashboard's attempts past their budget, every tenant",
        lambda conn: dashboard.stuck_attempts(conn, now_epoch=NOW, tenant_id=None, limit=5),
        ACTIVE_DEADLINE,
    ),
]


@pytest.mark.parametrize(("query", "index"), [(q, i) for _, q, i in QUERIES], ids=[n for n, _, _ in QUERIES])
def test_each_sweep_of_attempts_reads_its_partial_index(
    database: Database, query: Callable[[Connection], Any], index: str
) -> None:
    assert_plan_reaches(database, query, index)


def test_the_sweeps_still_find_exactly_their_attempts(database: Database) -> None:
    with database.read() as conn:
        swept = executions.active_attempts_unchanged_since(conn, "2099-01-01T00:00:00.000Z", limit=100)
        assert sorted(attempt.status for attempt, _deadline in swept) == sorted(
            [AttemptStatus.QUEUED, AttemptStatus.RUNNING] * 10
        )
        assert executions.attempts_past_budget(conn, NOW) == {"QUEUED": 6, "RUNNING": 6}
        assert executions.attempts_past_budget_by_tenant(conn, NOW) == {
            ("t1", "QUEUED"): 3,
            ("t1", "RUNNING"): 3,
            ("t2", "QUEUED"): 3,
            ("t2", "RUNNING"): 3,
        }
        assert sum(executions.ambiguous_by_age(conn, NOW).values()) == 10
        assert executions.oldest_ambiguous_at(conn) is not None
        due = probes.due_probes(conn, now_epoch=NOW, first_after_seconds=60, limit=100)
        assert len(due) == 10
        stuck = dashboard.stuck_attempts(conn, now_epoch=NOW, tenant_id="t1", limit=100)
        assert stuck.count == 6
        assert sorted(item.detail for item in stuck.items) == ["QUEUED"] * 3 + ["RUNNING"] * 3


def _index_conditions(db: Database) -> dict[str, str | None]:
    """The sweeps' indexes of ``execution_attempts`` (before and after migration 0028)."""
    return index_conditions(db, "execution_attempts", SWEEP_INDEXES | WHOLE_BEFORE)


def test_0028_makes_the_sweep_indexes_partial_and_downgrades(tmp_path: Path) -> None:
    with fresh_database(tmp_path, migrated=False) as db:
        config = alembic_config(db)
        command.upgrade(config, "0027")
        before = _index_conditions(db)
        assert before == dict.fromkeys(WHOLE_BEFORE)  # whole indexes of every attempt
        _attempts(db)
        command.upgrade(config, "0028")
        conditions = _index_conditions(db)
        assert set(conditions) == SWEEP_INDEXES
        for name in (ACTIVE_DEADLINE, ACTIVE_UPDATED):
            condition = conditions[name]
            assert condition is not None
            assert "QUEUED" in condition, condition
            assert "RUNNING" in condition, condition
        ambiguous = conditions[AMBIGUOUS_UPDATED]
        assert ambiguous is not None
        assert "AMBIGUOUS" in ambiguous, ambiguous
        with db.read() as conn:
            assert executions.attempts_past_budget(conn, NOW) == {"QUEUED": 6, "RUNNING": 6}
        command.downgrade(config, "0027")
        assert _index_conditions(db) == before
