"""The query plan of a store function's statement, on the test's backend.

SQLite's from ``EXPLAIN QUERY PLAN``; PostgreSQL's from ``EXPLAIN`` with sequential and bitmap scans
priced out (its planner prefers a sequential scan of a small table whatever its indexes), as in
``test_listing_cost.py``. ``kept``: on PostgreSQL, the plan it keeps for the statement prepared
(``plan_cache_mode = force_generic_plan``, what it settles on after psycopg's fifth run), built
for any values of the parameters."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from psycopg.sql import Literal
from sqlalchemy import Connection, event, text

from fulfill.store.db import Database

_PARAMETER = re.compile(r"%\((\w+)\)s")


def last_statement_plan(db: Database, run: Callable[[Connection], Any], *, kept: bool = False) -> str:
    """The plan of the last statement ``run`` executes, one line per step."""
    with db.write() as conn:  # a transaction: SET LOCAL holds for the EXPLAIN
        sql, parameters = _last_statement(conn, run)
        if conn.dialect.name != "postgresql":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        if not kept:
            rows = conn.exec_driver_sql("EXPLAIN " + sql, parameters).all()
            return "\n".join(str(row[0]) for row in rows)
        rows = _explain_prepared(conn, "EXPLAIN", sql, parameters, "force_generic_plan")
        return "\n".join(str(row[0]) for row in rows)


def assert_plan_reaches(db: Database, run: Callable[[Connection], Any], index: str) -> None:
    """The last statement ``run`` executes reads ``index``: in its plan and, on PostgreSQL, in the
    plan kept for it prepared too (the one a partial index is easiest to miss in)."""
    plan = last_statement_plan(db, run)
    assert index in plan, plan
    if not db.is_sqlite:
        kept = last_statement_plan(db, run, kept=True)
        assert index in kept, kept


def last_statement_rows_read(db: Database, run: Callable[[Connection], Any], *, kept: bool) -> int:
    """PostgreSQL only: how many rows the last statement ``run`` executes read from tables and
    indexes when run again (``EXPLAIN ANALYZE``), with the plan for one run or the plan kept:
    :func:`_rows_read`."""
    with db.write() as conn:
        sql, parameters = _last_statement(conn, run)
        mode = "force_generic_plan" if kept else "force_custom_plan"
        rows = _explain_prepared(conn, "EXPLAIN (ANALYZE, FORMAT JSON)", sql, parameters, mode)
    found = rows[0][0]
    plan = found if isinstance(found, list) else json.loads(found)
    return _rows_read(plan[0]["Plan"])


def _rows_read(node: dict[str, Any]) -> int:
    """The rows each scan of the plan read (those it returned and those its filter dropped), summed
    over its loops: a bitmap's index scan and its heap scan count each."""
    own = 0
    if "Relation Name" in node or "Index Name" in node:
        seen = sum(int(node.get(key, 0)) for key in _SEEN)
        own = seen * int(node.get("Actual Loops", 1))
    return own + sum(_rows_read(child) for child in node.get("Plans", []))


_SEEN = ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck")


def _last_statement(conn: Connection, run: Callable[[Connection], Any]) -> tuple[str, Any]:
    statements: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        statements.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", remember)
    try:
        run(conn)
    finally:
        event.remove(conn, "before_cursor_execute", remember)
    return statements[-1]


def _explain_prepared(conn: Connection, explain: str, sql: str, parameters: Any, mode: str) -> list[Any]:
    """``explain`` of ``sql`` prepared, run with ``parameters`` under ``plan_cache_mode = mode``."""
    conn.exec_driver_sql(f"SET LOCAL plan_cache_mode = {mode}")
    names = list(dict.fromkeys(_PARAMETER.findall(sql)))
    numbered = _PARAMETER.sub(lambda found: f"${names.index(found.group(1)) + 1}", sql)
    conn.exec_driver_sql(f"PREPARE planned_statement AS {numbered}")
    driver = conn.connection.dbapi_connection
    arguments = ", ".join(Literal(parameters[name]).as_string(driver) for name in names)
    # A statement without parameters is executed without the parentheses (PostgreSQL's grammar).
    call = f"planned_statement({arguments})" if names else "planned_statement"
    rows = conn.exec_driver_sql(f"{explain} EXECUTE {call}").all()
    conn.exec_driver_sql("DEALLOCATE planned_statement")
    return list(rows)


def index_conditions(db: Database, table: str, names: set[str]) -> dict[str, str | None]:
    """Each index of ``table`` among ``names`` that the database has, with its condition as the
    database writes it (None: a whole index)."""
    with db.read() as conn:
        if conn.dialect.name == "postgresql":
            query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :table"
        else:
            query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :table"
        rows = conn.execute(text(query), {"table": table}).all()
    found: dict[str, str | None] = {}
    for name, definition in rows:
        if name in names:
            _, _, condition = str(definition).partition(" WHERE ")
            found[name] = condition or None
    return found
