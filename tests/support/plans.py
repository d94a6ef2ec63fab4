"""The query plan of a store function's statement, on the test's backend.

SQLite's from ``EXPLAIN QUERY PLAN``; PostgreSQL's from ``EXPLAIN`` with sequential and bitmap scans
priced out (its planner prefers a sequential scan of a small table whatever its indexes), as in
``test_listing_cost.py``. ``kept``: on PostgreSQL, the plan it keeps for the statement prepared
(``plan_cache_mode = force_generic_plan``, what it settles on after psycopg's fifth run), built
for any values of the parameters."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from psycopg.sql import Literal
from sqlalchemy import Connection, event

from fulfill.store.db import Database

_PARAMETER = re.compile(r"%\((\w+)\)s")


def last_statement_plan(db: Database, run: Callable[[Connection], Any], *, kept: bool = False) -> str:
    """The plan of the last statement ``run`` executes, one line per step."""
    statements: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        statements.append((statement, parameters))

    with db.write() as conn:  # a transaction: SET LOCAL holds for the EXPLAIN
        event.listen(conn, "before_cursor_execute", remember)
        try:
            run(conn)
        finally:
            event.remove(conn, "before_cursor_execute", remember)
        sql, parameters = statements[-1]
        if conn.dialect.name != "postgresql":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        if not kept:
            rows = conn.exec_driver_sql("EXPLAIN " + sql, parameters).all()
            return "\n".join(str(row[0]) for row in rows)
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        names = list(dict.fromkeys(_PARAMETER.findall(sql)))
        numbered = _PARAMETER.sub(lambda found: f"${names.index(found.group(1)) + 1}", sql)
        conn.exec_driver_sql(f"PREPARE planned_statement AS {numbered}")
        driver = conn.connection.dbapi_connection
        arguments = ", ".join(Literal(parameters[name]).as_string(driver) for name in names)
        rows = conn.exec_driver_sql(f"EXPLAIN EXECUTE planned_statement({arguments})").all()
        conn.exec_driver_sql("DEALLOCATE planned_statement")
        return "\n".join(str(row[0]) for row in rows)
