"""The count of a tenant's attempts in flight (its place in the execution queue's fair order, read
at each enqueue) counts only its QUEUED and RUNNING attempts, and on SQLite finds them on the status
index: the cost follows what is in flight, not the tenant's history (``store/executions.py
count_active``). The count on both backends; the plan on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event

from fulfill.domain.models import AttemptStatus, ExecutionStatus
from fulfill.store import executions
from fulfill.store.db import Database
from tests.support.harness import fresh_database
from tests.unit.factories import make_attempt


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        yield db


@contextmanager
def _statements_run(conn: Connection) -> Iterator[list[tuple[str, Any]]]:
    """The statements ``conn`` runs inside the block, with their parameters."""
    statements: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        statements.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", remember)
    try:
        yield statements
    finally:
        event.remove(conn, "before_cursor_execute", remember)


def _attempts(db: Database, tenant_id: str, statuses: list[AttemptStatus]) -> None:
    with db.write() as conn:
        for index, status in enumerate(statuses):
            attempt = make_attempt(
                tenant_id=tenant_id,
                action_intent_id=f"ai_{tenant_id}_{index}",
                attempt_id=f"att_{tenant_id}_{index}",
                workflow_id=f"wf_{tenant_id}_{index}",
                status=status,
            )
            assert executions.insert_attempt(conn, attempt, deadline_epoch=1e9 + index)


def test_only_the_tenants_queued_and_running_attempts_are_counted(database: Database) -> None:
    done = [AttemptStatus.SUCCEEDED] * 5 + [AttemptStatus.FAILED] * 2
    _attempts(database, "t1", [AttemptStatus.QUEUED, AttemptStatus.RUNNING, AttemptStatus.RUNNING, *done])
    _attempts(database, "t2", [AttemptStatus.QUEUED, *done])
    with database.read() as conn:
        assert executions.count_active(conn, "t1") == 3
        assert executions.count_active(conn, "t2") == 1
        assert executions.count_active(conn, "t3") == 0


def test_on_sqlite_the_count_seeks_the_status_index_not_the_tenants_history(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("the plan asked here is SQLite's; PostgreSQL plans the statement from its statistics")
    _attempts(database, "t1", [AttemptStatus.SUCCEEDED] * 50 + [AttemptStatus.RUNNING])
    with database.read() as conn:
        with _statements_run(conn) as statements:
            assert executions.count_active(conn, "t1") == 1
        sql, parameters = statements[-1]
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).all()]
    assert len(plan) == 1, plan
    assert "USING INDEX ix_execution_attempts_status_deadline (status=?)" in plan[0], plan
    assert "SCAN" not in plan[0], plan


def test_the_active_statuses_are_part_of_the_statements_text_not_parameters(database: Database) -> None:
    """The count (every approval's enqueue) and the attempt's end (every outcome) carry QUEUED and
    RUNNING as constants in their text: a list of values is an expanding parameter, which
    SQLAlchemy renders into the statement again at each execution."""
    _attempts(database, "t1", [AttemptStatus.RUNNING])
    with database.write() as conn, _statements_run(conn) as seen:
        assert executions.count_active(conn, "t1") == 1
        assert executions.finish_attempt(
            conn,
            tenant_id="t1",
            account_id=make_attempt().account_id,
            action_intent_id="ai_t1_0",
            attempt_count=1,
            status=ExecutionStatus.SUCCEEDED,
            error_class=None,
            idempotency_key=None,
            completed_at="2026-12-05T00:00:00Z",
        )
        assert executions.count_active(conn, "t1") == 0
    assert len(seen) == 3
    for statement, parameters in seen:
        assert "'QUEUED'" in statement, statement
        assert "'RUNNING'" in statement, statement
        values = list(parameters.values() if isinstance(parameters, dict) else parameters)
        assert "QUEUED" not in values, parameters
        assert "RUNNING" not in values, parameters
