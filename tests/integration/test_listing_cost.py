"""The account listing costs O(limit): every page, however deep, is an index seek (query plans).

On SQLite the plan comes from ``EXPLAIN QUERY PLAN``; on PostgreSQL from ``EXPLAIN``, with
sequential and bitmap scans priced out for the statement, because PostgreSQL's planner prefers a
sequential scan of an almost empty table whatever its indexes. Sorting stays allowed: if the index
could not deliver the page order, the plan would show a Sort.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from fulfill.domain.models import ExecutionStatus
from fulfill.store import intents
from tests.support.harness import Harness


def _plan(harness: Harness, **arguments: Any) -> list[str]:
    statements: list[tuple[str, Any]] = []
    mine: list[Any] = []

    def remember(conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if conn in mine:  # not the service's own background work on the same engine
            statements.append((statement, parameters))

    event.listen(harness.db.engine, "before_cursor_execute", remember)
    try:
        with harness.db.read() as conn:
            mine.append(conn)
            intents.list_account_executions(
                conn, tenant_id="t1", account_id="acc-1", now_epoch=0, limit=51, **arguments
            )
            sql, parameters = statements[-1]
            if conn.dialect.name == "postgresql":
                # A read runs without a transaction block on PostgreSQL, where SET LOCAL would do
                # nothing: the settings are the session's, reset before the connection goes back.
                conn.exec_driver_sql("SET enable_seqscan = off")
                conn.exec_driver_sql("SET enable_bitmapscan = off")
                try:
                    assert conn.exec_driver_sql("SHOW enable_seqscan").scalar() == "off"
                    return [row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql, parameters).all()]
                finally:
                    conn.exec_driver_sql("RESET enable_seqscan")
                    conn.exec_driver_sql("RESET enable_bitmapscan")
            return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).all()]
    finally:
        event.remove(harness.db.engine, "before_cursor_execute", remember)


@pytest.mark.parametrize("status", [None, ExecutionStatus.SUCCEEDED, ExecutionStatus.RUNNING])
@pytest.mark.parametrize("after", [None, ("2026-11-24T00:00:00.000Z", "ai_m")])
def test_pages_are_index_seeks_without_sorting(
    shared: Harness, status: ExecutionStatus | None, after: tuple[str, str] | None
) -> None:
    plan = _plan(shared, status=status, after=after)
    expected_index = (
        "ix_action_intents_account_status_recent" if status else "ix_action_intents_account_recent"
    )
    if not shared.db.is_sqlite:
        [scan] = [line for line in plan if "on action_intents" in line]
        assert f"Index Scan Backward using {expected_index}" in scan, plan
        condition = plan[plan.index(scan) + 1]
        assert "Index Cond:" in condition, plan
        if after is not None:
            assert "last_update_at)::text <=" in condition, plan  # a range seek to the cursor
        assert not any("Sort" in line for line in plan), plan  # no sort of the whole account
        assert not any("Seq Scan" in line for line in plan), plan
        return
    [intents_step] = [step for step in plan if "action_intents" in step]
    assert f"USING INDEX {expected_index}" in intents_step
    if after is not None:
        assert "last_update_at<?" in intents_step, plan  # a range seek to the cursor, not a scan from the top
    assert not any("TEMP B-TREE" in step for step in plan)  # no sort of the whole account
    assert all("SCAN" not in step for step in plan)
