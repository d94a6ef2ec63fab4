"""The indexes of intents waiting for approval hold only those (migration 0026), and every query of
pending intents reaches them: the approvals page (its filters, its count; one account's through the
index by account, migration 0027), the pending list, the escalation sweep and the dashboard's
pending ages. SQLite, and PostgreSQL on its pass.

The status is a constant in each query's text (``store/tables.py is_pending_approval``): the plan
PostgreSQL keeps for a prepared statement is built without the parameters' values, and could not
use a partial index for a status given as one (the last test). The plans come from ``EXPLAIN
QUERY PLAN`` on SQLite and from ``EXPLAIN`` on PostgreSQL with sequential and bitmap scans priced
out (its planner prefers a sequential scan of a small table whatever its indexes), as in
``test_listing_cost.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Connection

from fulfill.domain.models import ApprovalStatus
from fulfill.domain.records import PendingFilter
from fulfill.store import dashboard, intents
from fulfill.store.db import Database
from fulfill.store.migrate import alembic_config
from fulfill.store.tables import action_intents
from tests.support.harness import fresh_database
from tests.support.plans import assert_plan_reaches, index_conditions, last_statement_plan
from tests.unit.factories import make_intent

PENDING_INDEXES = {
    "ix_action_intents_pending",
    "ix_action_intents_pending_proposer",
    "ix_action_intents_pending_policy",
    "ix_action_intents_escalation",
}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        _intents(db)
        yield db


def _intents(db: Database) -> None:
    with db.write() as conn:
        for index in range(30):
            status = ApprovalStatus.PENDING_APPROVAL if index % 3 == 0 else ApprovalStatus.APPROVED
            intent = make_intent(
                action_intent_id=f"ai_{index:03d}",
                account_id="acc_1" if index % 2 == 0 else "acc_2",
                approval_status=status,
                created_at=f"2026-12-06T00:00:{index:02d}.000Z",
            )
            assert intents.insert_intent(conn, intent, f"hash_{index}")


def _page(wanted: PendingFilter) -> Callable[[Connection], Any]:
    return lambda conn: intents.page_pending_approval(
        conn, tenant_id="t1", wanted=wanted, oldest_first=False, after=None, limit=5
    )


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (_page(PendingFilter()), "ix_action_intents_pending"),
        (_page(PendingFilter(proposed_by="agent@example.com")), "ix_action_intents_pending_proposer"),
        (_page(PendingFilter(policy_id="pol_routine01")), "ix_action_intents_pending_policy"),
        (_page(PendingFilter(account_id="acc_2")), "ix_action_intents_pending_account"),
        (
            lambda conn: intents.count_pending_approval(
                conn, tenant_id="t1", wanted=PendingFilter(account_id="acc_2")
            ),
            "ix_action_intents_pending_account",
        ),
        (
            lambda conn: intents.count_pending_approval(conn, tenant_id="t1", wanted=PendingFilter()),
            "ix_action_intents_pending",
        ),
        (
            lambda conn: intents.list_pending_approval(conn, tenant_id="t1", account_ids=None, limit=5),
            "ix_action_intents_pending",
        ),
        (
            lambda conn: intents.escalation_candidates(conn, now_epoch=1_900_000_000, limit=5),
            "ix_action_intents_escalation",
        ),
        (
            lambda conn: dashboard.pending_by_age(
                conn,
                bounds=["2026-12-06T00:00:20.000Z", "2026-12-06T00:00:10.000Z"],
                now_epoch=1e9,
                tenant_id="t1",
            ),
            "ix_action_intents_pending",
        ),
    ],
)
def test_each_query_of_pending_intents_reads_its_partial_index(
    database: Database, query: Callable[[Connection], Any], index: str
) -> None:
    assert_plan_reaches(database, query, index)


def test_a_status_given_as_a_parameter_would_miss_the_partial_index_in_the_kept_plan(
    database: Database,
) -> None:
    """Why the status is a constant in the queries' text: the same page query with the status as a
    parameter reaches the partial index in a plan made for its values, not in the kept one."""
    if database.is_sqlite:
        pytest.skip("PostgreSQL's kept plan of a prepared statement")

    def page_with_a_parameter(conn: Connection) -> Any:
        query = (
            sa.select(action_intents.c.document)
            .where(action_intents.c.tenant_id == "t1", action_intents.c.approval_status == "PENDING_APPROVAL")
            .order_by(action_intents.c.created_at.desc(), action_intents.c.action_intent_id.desc())
            .limit(5)
        )
        return conn.execute(query).all()

    assert "ix_action_intents_pending" in last_statement_plan(database, page_with_a_parameter)
    assert "ix_action_intents_pending" not in last_statement_plan(database, page_with_a_parameter, kept=True)


def test_the_queries_still_find_exactly_the_pending_intents(database: Database) -> None:
    with database.read() as conn:
        page, more = intents.page_pending_approval(
            conn, tenant_id="t1", wanted=PendingFilter(), oldest_first=True, after=None, limit=20
        )
        assert [intent.action_intent_id for intent in page] == [f"ai_{i:03d}" for i in range(0, 30, 3)]
        assert not more
        assert intents.count_pending_approval(conn, tenant_id="t1", wanted=PendingFilter()) == 10
        one_account = PendingFilter(account_id="acc_2")
        page, more = intents.page_pending_approval(
            conn, tenant_id="t1", wanted=one_account, oldest_first=False, after=None, limit=20
        )
        assert [intent.action_intent_id for intent in page] == [f"ai_{i:03d}" for i in (27, 21, 15, 9, 3)]
        assert intents.count_pending_approval(conn, tenant_id="t1", wanted=one_account) == 5
        counts, oldest = dashboard.pending_by_age(
            conn, bounds=["2026-12-06T00:00:29.000Z"], now_epoch=1e9, tenant_id="t1"
        )
        assert (counts, oldest) == ([10], "2026-12-06T00:00:00.000Z")


def _index_conditions(db: Database, names: set[str] = PENDING_INDEXES) -> dict[str, str | None]:
    return index_conditions(db, "action_intents", names)


def test_0026_makes_the_pending_indexes_partial_and_downgrades(tmp_path: Path) -> None:
    with fresh_database(tmp_path, migrated=False) as db:
        config = alembic_config(db)
        command.upgrade(config, "0025")
        assert _index_conditions(db) == dict.fromkeys(PENDING_INDEXES)  # whole indexes before
        _intents(db)
        command.upgrade(config, "0026")
        conditions = _index_conditions(db)
        assert set(conditions) == PENDING_INDEXES
        for condition in conditions.values():
            assert condition is not None
            assert "approval_status" in condition
            assert "PENDING_APPROVAL" in condition
        with db.read() as conn:
            assert intents.count_pending_approval(conn, tenant_id="t1", wanted=PendingFilter()) == 10
        command.downgrade(config, "0025")
        assert _index_conditions(db) == dict.fromkeys(PENDING_INDEXES)


def test_0027_indexes_pending_intents_by_account_and_downgrades(tmp_path: Path) -> None:
    account_index = "ix_action_intents_pending_account"
    with fresh_database(tmp_path, migrated=False) as db:
        config = alembic_config(db)
        command.upgrade(config, "0026")
        _intents(db)
        assert account_index not in _index_conditions(db, {account_index})
        command.upgrade(config, "0027")
        condition = _index_conditions(db, {account_index})[account_index]
        assert condition is not None
        assert "PENDING_APPROVAL" in condition
        with db.read() as conn:
            wanted = PendingFilter(account_id="acc_2")
            assert intents.count_pending_approval(conn, tenant_id="t1", wanted=wanted) == 5
        command.downgrade(config, "0026")
        assert account_index not in _index_conditions(db, {account_index})
