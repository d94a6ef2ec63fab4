"""The database handle: one engine, read and write transactions, SQLite tuned for durability.

SQLite runs in WAL mode (readers never block the writer) with ``synchronous=FULL`` (a committed
transaction survives power loss). Write transactions start with ``BEGIN IMMEDIATE`` so that a
read-then-write transaction takes the write lock up front instead of failing to upgrade later;
read transactions are deferred and run alongside the writer.

On PostgreSQL a read runs without a transaction block (autocommit): under READ COMMITTED every
statement sees its own snapshot anyway, so ``BEGIN`` and ``COMMIT`` around a read bought nothing
but two round trips. A read that needs one snapshot for several statements asks for it
(``store/ledger.py snapshot``), which opens a REPEATABLE READ transaction for the rest of it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fulfill.ports.store import StoreUnavailable

_WRITE_OPTION = "fulfill_write"
AUTOCOMMIT = "AUTOCOMMIT"


def in_autocommit(conn: Connection) -> bool:
    """Whether ``conn`` runs each statement on its own (a PostgreSQL read, see :meth:`Database.read`)."""
    return conn.get_execution_options().get("isolation_level") == AUTOCOMMIT


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # SQLite has one writer per file. Threads of this process queue for it on a lock that
        # hands it over at once, instead of polling in SQLite's busy handler (which sleeps 1, 2,
        # 5, 10… ms between tries, and whose holder may be waiting for the GIL meanwhile). The
        # busy handler still arbitrates between processes.
        self._writer: threading.Lock | None = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url, pool_size=pool_size, max_overflow=max_overflow, connect_args={"check_same_thread": False}
            )
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            # Every connection opened is kept, up to the same most at once (pool_size +
            # max_overflow): an overflow connection closed on its return was opened again by the
            # next burst, a new server backend each time (a fork, authentication, cold catalog
            # caches) holding none of the statements psycopg had prepared on the one closed.
            self.engine = create_engine(
                url,
                pool_size=pool_size + max_overflow,
                max_overflow=0,
                pool_pre_ping=True,
            )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with (
            self._writer or nullcontext(),
            self.engine.connect().execution_options(**{_WRITE_OPTION: True}) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        if self.is_sqlite:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self.engine.connect().execution_options(isolation_level=AUTOCOMMIT) as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event decide how each transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert a row unless it collides with an existing key; True exactly when this call inserted it.

    The answer comes from ``RETURNING``, not from the row count: psycopg 3 reports a row count of
    -1 for ``INSERT … ON CONFLICT DO NOTHING`` whether or not a row was inserted. A row comes back
    only when this statement inserted it. On PostgreSQL a conflicting insert waits for the
    transaction holding the key to end, so under READ COMMITTED exactly one of two concurrent
    inserts of one key wins, and the other sees False. (SQLite has RETURNING since 3.35.)
    """
    return conn.execute(_insert_ignore_statement(conn.dialect.name, table), values).first() is not None


@functools.cache
def _insert_ignore_statement(dialect: str, table: Table) -> Any:
    """Built once per table: the values are bound at execution, so the compiled form is reused."""
    key = next(iter(table.primary_key.columns))
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(key)


def is_transient_store_error(exc: BaseException) -> bool:
    """A database error worth retrying: a lock timeout, a dropped connection, a failover, or no
    pooled connection free in time (every connection busy for a moment under load); or the
    port's own :class:`StoreUnavailable`."""
    if isinstance(exc, OperationalError | PoolTimeout | StoreUnavailable):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
