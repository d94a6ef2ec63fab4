"""How the store's reads and writes reach the database.

PostgreSQL: a read runs each statement on its own (no ``BEGIN``/``COMMIT`` round trips; under READ
COMMITTED each statement had its own snapshot anyway); a read that asks for one snapshot
(``store/ledger.py snapshot``) gets a REPEATABLE READ transaction that ends with the read, and the
connection goes back to the pool ready for a write transaction. SQLite: a read is one deferred
transaction (one snapshot), as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fulfill.store import ledger
from fulfill.store.db import Database
from tests.support import postgres
from tests.support.harness import fresh_database


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path, pool_size=1) as db:
        yield db


def _status(conn: object) -> TransactionStatus:
    return TransactionStatus(conn.connection.dbapi_connection.info.transaction_status)  # type: ignore[attr-defined]


@postgres.postgres_only
def test_a_postgresql_read_runs_outside_a_transaction_block(database: Database) -> None:
    with database.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM action_intents").scalar_one() == 0
        assert _status(conn) is TransactionStatus.IDLE  # no BEGIN was sent
    with database.write() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM action_intents")
        assert _status(conn) is TransactionStatus.INTRANS  # a write is one transaction


@postgres.postgres_only
def test_a_snapshot_read_is_one_repeatable_read_transaction_and_ends_with_the_read(
    database: Database,
) -> None:
    with database.read() as conn:
        ledger.snapshot(conn)
        assert _status(conn) is TransactionStatus.INTRANS
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar_one() == "repeatable read"
    # The same pooled connection (pool_size=1), back to an ordinary write transaction.
    with database.write() as conn:
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar_one() == "read committed"
        assert _status(conn) is TransactionStatus.INTRANS
    with database.read() as conn:
        conn.exec_driver_sql("SELECT 1")
        assert _status(conn) is TransactionStatus.IDLE


@postgres.postgres_only
def test_a_failed_statement_in_a_read_leaves_the_connection_usable(database: Database) -> None:
    with pytest.raises(Exception, match="no_such_table"), database.read() as conn:
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    with database.read() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1


@postgres.sqlite_only("a SQLite read is one deferred transaction")
def test_a_sqlite_read_is_one_transaction(database: Database) -> None:
    with database.read() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM action_intents")
        assert conn.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]


@postgres.postgres_only
def test_a_postgresql_connection_opened_for_a_burst_is_kept_for_the_next_one(tmp_path: Path) -> None:
    """The pool keeps every connection it opened, up to the same most at once as before
    (pool_size + max_overflow): a second burst opens none, where an overflow closed on its
    return used to be opened again, a new server backend each time."""
    db = Database(postgres.create_database(), pool_size=2, max_overflow=3)
    opened: list[object] = []
    event.listen(db.engine, "connect", lambda dbapi_connection, _record: opened.append(dbapi_connection))
    try:
        for _burst in range(2):
            with ExitStack() as stack:
                for _ in range(5):
                    stack.enter_context(db.read()).exec_driver_sql("SELECT 1")
        assert len(opened) == 5
        # Still at most five at once: a sixth waits for one of them, and times out here.
        db.engine.pool._timeout = 0.2  # type: ignore[attr-defined]
        with ExitStack() as stack:
            for _ in range(5):
                stack.enter_context(db.read())
            with pytest.raises(PoolTimeout):
                stack.enter_context(db.read())
        assert len(opened) == 5
    finally:
        db.dispose()
        postgres.drop_database(db.url)
