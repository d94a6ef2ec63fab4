"""The count of a tenant's attempts in flight (its place in the execution queue's fair order, read
at each enqueue) counts only its QUEUED and RUNNING attempts, up to a most, and finds them on the
partial index of attempts in flight under its own id: the cost follows the tenant's own attempts in
flight, not its history, nor another tenant's backlog (``store/executions.py count_active``,
migration 0025). The count on both backends; the plan on each, PostgreSQL's both as a one-off plan
and as the plan it keeps for a prepared statement."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, event, inspect, text

from fulfill.domain.fairness import MAX_QUEUE_PRIORITY
from fulfill.domain.models import AttemptStatus, ExecutionStatus
from fulfill.store import executions
from fulfill.store.db import Database
from fulfill.store.migrate import alembic_config
from tests.support.harness import fresh_database
from tests.unit.factories import make_attempt, make_tenant_attempts


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


def _attempts(db: Database, tenant_id: str, statuses: list[AttemptStatus], *, first: int = 0) -> None:
    with db.write() as conn:
        for attempt in make_tenant_attempts(tenant_id, statuses, first=first):
            assert executions.insert_attempt(conn, attempt, deadline_epoch=1e9)


def test_only_the_tenants_queued_and_running_attempts_are_counted(database: Database) -> None:
    done = [AttemptStatus.SUCCEEDED] * 5 + [AttemptStatus.FAILED] * 2
    _attempts(database, "t1", [AttemptStatus.QUEUED, AttemptStatus.RUNNING, AttemptStatus.RUNNING, *done])
    _attempts(database, "t2", [AttemptStatus.QUEUED, *done])
    with database.read() as conn:
        assert executions.count_active(conn, "t1", most=MAX_QUEUE_PRIORITY) == 3
        assert executions.count_active(conn, "t2", most=MAX_QUEUE_PRIORITY) == 1
        assert executions.count_active(conn, "t3", most=MAX_QUEUE_PRIORITY) == 0


def test_a_count_stops_at_its_most(database: Database) -> None:
    _attempts(database, "t1", [AttemptStatus.QUEUED] * 7 + [AttemptStatus.RUNNING] * 5)
    with database.read() as conn:
        assert executions.count_active(conn, "t1", most=MAX_QUEUE_PRIORITY) == 12
        assert executions.count_active(conn, "t1", most=10) == 10
        assert executions.count_active(conn, "t1", most=12) == 12
        assert executions.count_active(conn, "t1", most=1) == 1
        with pytest.raises(ValueError, match="most must be at least 1"):
            executions.count_active(conn, "t1", most=0)


def test_on_sqlite_the_count_seeks_the_tenants_attempts_in_flight_only(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite's plan; PostgreSQL's is the next test")
    _attempts(database, "t1", [AttemptStatus.SUCCEEDED] * 50 + [AttemptStatus.RUNNING])
    _attempts(database, "t2", [AttemptStatus.QUEUED] * 50)
    with database.read() as conn:
        with _statements_run(conn) as statements:
            assert executions.count_active(conn, "t1", most=MAX_QUEUE_PRIORITY) == 1
        sql, parameters = statements[-1]
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).all()]
    searches = [step for step in plan if "execution_attempts" in step]
    assert len(searches) == 1, plan
    assert "INDEX ix_execution_attempts_active_tenant (tenant_id=?)" in searches[0], plan
    assert not [step for step in plan if "SCAN execution_attempts" in step or "TEMP B-TREE" in step], plan


def _postgresql_plan(conn: Connection, prepared: str, tenant_id: str) -> list[dict[str, Any]]:
    """Every node of PostgreSQL's plan of ``prepared`` run for ``tenant_id``, as it ran."""
    (document,) = conn.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {prepared}('{tenant_id}')"
    ).one()
    nodes: list[dict[str, Any]] = []
    pending = [document[0]["Plan"]]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(node.get("Plans", []))
    return nodes


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_on_postgresql_another_tenants_backlog_is_never_read(
    database: Database, plan_cache_mode: str
) -> None:
    """One tenant's backlog is most of the table. PostgreSQL plans a statement it has prepared (as
    psycopg does after five runs) from the average tenant: a limit read from the table's start
    looked cheapest, and read every row of every tenant for a tenant with three in flight. Both the
    plan made for one run and the plan kept for every run read the table through that index only,
    and only the counted tenant's entries in it, up to the most."""
    if database.is_sqlite:
        pytest.skip("PostgreSQL's plans; SQLite's is the test before")
    _attempts(database, "small", [AttemptStatus.QUEUED] * 3 + [AttemptStatus.SUCCEEDED] * 200)
    _attempts(database, "greedy", [AttemptStatus.QUEUED] * 3000)
    with database.write() as conn:
        conn.execute(text("ANALYZE execution_attempts"))
    with database.read() as conn:
        with _statements_run(conn) as statements:
            assert executions.count_active(conn, "small", most=MAX_QUEUE_PRIORITY) == 3
            assert executions.count_active(conn, "greedy", most=MAX_QUEUE_PRIORITY) == MAX_QUEUE_PRIORITY
        sql = statements[-1][0].replace("%(tenant_id)s", "$1")
        conn.exec_driver_sql(f"SET plan_cache_mode = {plan_cache_mode}")
        conn.exec_driver_sql(f"PREPARE count_active(varchar) AS {sql}")
        for tenant_id, counted in (("small", 3), ("greedy", MAX_QUEUE_PRIORITY)):
            nodes = _postgresql_plan(conn, "count_active", tenant_id)
            assert not [node for node in nodes if node["Node Type"] == "Seq Scan"], nodes
            index_reads = [node for node in nodes if "Index Name" in node]
            assert len(index_reads) == 1, nodes
            assert index_reads[0]["Index Name"] == "ix_execution_attempts_active_tenant", index_reads[0]
            assert index_reads[0]["Actual Rows"] == counted, index_reads[0]  # its own, up to the most
        conn.exec_driver_sql("DEALLOCATE count_active")
        conn.exec_driver_sql("RESET plan_cache_mode")


def test_the_active_statuses_are_part_of_the_statements_text_not_parameters(database: Database) -> None:
    """The count (every approval's enqueue) and the attempt's end (every outcome) carry QUEUED and
    RUNNING as constants in their text: a list of values is an expanding parameter, which
    SQLAlchemy renders into the statement again at each execution."""
    _attempts(database, "t1", [AttemptStatus.RUNNING])
    with database.write() as conn, _statements_run(conn) as seen:
        assert executions.count_active(conn, "t1", most=MAX_QUEUE_PRIORITY) == 1
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
        assert executions.count_active(conn, "t1", most=MAX_QUEUE_PRIORITY) == 0
    assert len(seen) == 3
    for statement, parameters in seen:
        assert "'QUEUED'" in statement, statement
        assert "'RUNNING'" in statement, statement
        values = list(parameters.values() if isinstance(parameters, dict) else parameters)
        assert "QUEUED" not in values, parameters
        assert "RUNNING" not in values, parameters


def test_0025_indexes_the_attempts_already_in_flight_and_downgrades(tmp_path: Path) -> None:
    """On a database that has attempts when it is migrated: the new index takes those in flight
    (the count at 0025 finds them, through it), and the downgrade drops it."""
    with fresh_database(tmp_path, migrated=False) as db:
        config = alembic_config(db)
        command.upgrade(config, "0024")
        _attempts(db, "t1", [AttemptStatus.QUEUED, AttemptStatus.RUNNING, AttemptStatus.SUCCEEDED])
        _attempts(db, "t2", [AttemptStatus.QUEUED])
        command.upgrade(config, "0025")
        assert "ix_execution_attempts_active_tenant" in _attempt_indexes(db)
        with db.read() as conn:
            assert executions.count_active(conn, "t1", most=MAX_QUEUE_PRIORITY) == 2
            assert executions.count_active(conn, "t2", most=MAX_QUEUE_PRIORITY) == 1
        command.downgrade(config, "0024")
        assert "ix_execution_attempts_active_tenant" not in _attempt_indexes(db)


def _attempt_indexes(db: Database) -> set[str]:
    with db.read() as conn:
        return {index["name"] for index in inspect(conn).get_indexes("execution_attempts") if index["name"]}
