"""A tenant's account names (the console's choice of account on the approvals and executions
pages): in name order, the tenant's own, at most the limit, and read one index seek per account,
whatever the number of intents behind each (``store/intents.py list_accounts``). SQLite, and
PostgreSQL on its pass.

The cost is counted, not timed: on SQLite the virtual machine's instructions (its progress
handler), on PostgreSQL the rows each node of the executed plan read (``EXPLAIN ANALYZE``), the
plan for one run and the plan it keeps for a prepared statement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from fulfill.store import intents
from fulfill.store.db import Database
from tests.support.harness import fresh_database
from tests.support.plans import last_statement_rows_read
from tests.unit.factories import make_intent

ACCOUNTS = ["acc-a", "acc-b", "acc-c"]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        with db.write() as conn:
            # "busy": 400 intents in each account; "quiet": 2 in each; "other": names of its own
            for tenant_id, per_account in (("busy", 400), ("quiet", 2)):
                for account_id in ACCOUNTS:
                    for index in range(per_account):
                        intent = make_intent(
                            tenant_id=tenant_id,
                            account_id=account_id,
                            action_intent_id=f"ai_{account_id}_{index}",
                        )
                        intents.insert_intent(conn, intent, "hash")
            for account_id in ("acc-0", "acc-bb", "acc-z"):
                intents.insert_intent(
                    conn,
                    make_intent(
                        tenant_id="other", account_id=account_id, action_intent_id=f"ai_{account_id}"
                    ),
                    "hash",
                )
            if not db.is_sqlite:
                conn.execute(text("ANALYZE action_intents"))
        yield db


def test_names_in_order_the_tenants_own_up_to_the_limit(database: Database) -> None:
    with database.read() as conn:
        assert intents.list_accounts(conn, tenant_id="busy", limit=200) == ACCOUNTS
        assert intents.list_accounts(conn, tenant_id="quiet", limit=200) == ACCOUNTS
        assert intents.list_accounts(conn, tenant_id="other", limit=200) == ["acc-0", "acc-bb", "acc-z"]
        assert intents.list_accounts(conn, tenant_id="busy", limit=2) == ["acc-a", "acc-b"]
        assert intents.list_accounts(conn, tenant_id="busy", limit=1) == ["acc-a"]
        assert intents.list_accounts(conn, tenant_id="busy", limit=0) == []
        assert intents.list_accounts(conn, tenant_id="nobody", limit=200) == []


def _sqlite_instructions(conn: Connection, tenant_id: str) -> int:
    driver = conn.connection.dbapi_connection
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0  # go on

    driver.set_progress_handler(count, 1)  # type: ignore[union-attr]
    try:
        intents.list_accounts(conn, tenant_id=tenant_id, limit=200)
    finally:
        driver.set_progress_handler(None, 1)  # type: ignore[union-attr]
    return counted[0]


def test_the_read_is_one_seek_per_account_however_many_intents(database: Database) -> None:
    if database.is_sqlite:
        with database.read() as conn:
            busy, quiet = _sqlite_instructions(conn, "busy"), _sqlite_instructions(conn, "quiet")
        # 1,200 intents against 6: the same steps, give or take a few instructions
        assert busy <= quiet * 1.2, (busy, quiet)
        return
    for kept in (False, True):
        # each account's seek reads one entry, and one more finds no account after the last
        read = last_statement_rows_read(
            database, lambda conn: intents.list_accounts(conn, tenant_id="busy", limit=200), kept=kept
        )
        assert read <= len(ACCOUNTS) + 1, read
