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
import hashlib
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InvalidatePoolError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fulfill.ports.store import StoreUnavailable

_WRITE_OPTION = "fulfill_write"
AUTOCOMMIT = "AUTOCOMMIT"

# How long a pooled PostgreSQL connection may sit in its pool and still be pinged and used: one
# idle longer is replaced by a fresh one when it is next checked out, with nothing sent on it. A
# NAT or a stateful firewall between the service and the database forgets a connection idle for
# a few minutes (some silently: what is sent on it afterwards goes nowhere and nothing answers),
# and a ping on such a connection would wait as long as the kernel keeps retransmitting (Linux's
# default, net.ipv4.tcp_retries2 = 15, gives up after about 15 minutes). Two minutes is below the
# shortest of the common ones (four minutes); ``FULFILL_DATABASE_MAX_IDLE_SECONDS`` sets it. The
# pools hand out the connection given back last, so the few that steady traffic uses never get
# this old; a burst after a quiet spell opens new ones for the rest.
MAX_IDLE_SECONDS = 120.0


def in_autocommit(conn: Connection) -> bool:
    """Whether ``conn`` runs each statement on its own (a PostgreSQL read, see :meth:`Database.read`)."""
    return conn.get_execution_options().get("isolation_level") == AUTOCOMMIT


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 20,
        max_idle_seconds: float = MAX_IDLE_SECONDS,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # SQLite has one writer per file. Threads of this process queue for it on a lock that
        # hands it over at once, instead of polling in SQLite's busy handler (which sleeps 1, 2,
        # 5, 10… ms between tries, and whose holder may be waiting for the GIL meanwhile). The
        # busy handler still arbitrates between processes.
        self._writer: threading.Lock | None = threading.Lock() if self.is_sqlite else None
        self._exclusive = NamedLocks()
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
            # A connection is pinged on checkout only after it sat in the pool a while
            # (:func:`ping_after_idle`), not before every checkout; the pool hands out the
            # connection given back last (LIFO), so that a steady trickle of checkouts keeps
            # reusing the few connections it needs, fresh from their last use, instead of going
            # round every connection of the pool in turn, each idle long enough to need a ping.
            self.engine = create_engine(
                url, pool_size=pool_size + max_overflow, max_overflow=0, pool_use_lifo=True
            )
            ping_after_idle(self.engine, max_idle_seconds=max_idle_seconds)

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

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether the caller alone holds ``name`` until the block ends, without waiting: among every
        process on the database on PostgreSQL (a session advisory lock, which a process that dies
        gives back with its connection), among this process's threads on SQLite (one writer
        process per file set)."""
        if self.is_sqlite:
            with self._exclusive.holding(name) as held:
                yield held
            return
        key = advisory_key(name)
        with self.engine.connect().execution_options(isolation_level=AUTOCOMMIT) as conn:
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
            try:
                yield held
            finally:
                if held:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    except DBAPIError:
                        conn.invalidate()  # the lock goes with the session, not back to the pool

    def dispose(self) -> None:
        self.engine.dispose()


class NamedLocks:
    """This process's locks by name, each taken without waiting."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def holding(self, name: str) -> Iterator[bool]:
        """Whether the caller took ``name`` (held until the block ends); False if another holds it."""
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock's key for ``name``: the same in every process."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


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


# How long a pooled PostgreSQL connection may sit in its pool and still be handed out without a
# ping (``SELECT 1``) first. A connection given back less than this ago worked then; one idle
# longer is pinged on checkout, and one that fails the ping is replaced, as ``pool_pre_ping`` does
# for every checkout. One second: on the hot path a connection comes back within milliseconds and
# goes out again within milliseconds (so nearly every ping is saved), while a database restart
# takes longer than that, so a connection that last worked before the restart has been idle
# longer than this when the database is back, and is pinged. What is given up: a backend killed
# on its own (``pg_terminate_backend``) less than a second after its connection was used fails
# the first statement run on it; that disconnect invalidates the pool (every connection older is
# replaced) and the statement's caller retries it, as it does for any statement in flight when
# the database goes away.
PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED_AT = "fulfill_returned_at"


def ping_after_idle(engine: Engine, *, max_idle_seconds: float = MAX_IDLE_SECONDS) -> None:
    """Ping a connection of ``engine``'s pool on checkout when it has been idle for longer than
    :data:`PING_AFTER_IDLE_SECONDS` (read at each checkout), instead of before every checkout
    (``pool_pre_ping``, which the engine must not set as well). A connection just opened, or
    given back to the pool that long ago or less, goes out as it is. A ping that finds the
    connection dropped (the dialect's own test of a disconnect) raises SQLAlchemy's
    ``InvalidatePoolError`` from the pool's ``checkout`` event: the pool replaces the connection
    with a fresh one, and every other connection opened before it at its next checkout, exactly
    what a failed pre-ping does. Any other error of the ping goes to the caller, as a failed
    connect does (SQLAlchemy's ``DBAPIError``; the pool drops that connection).

    A connection idle for longer than ``max_idle_seconds`` (:data:`MAX_IDLE_SECONDS`) is not
    pinged: the ``checkout`` event raises SQLAlchemy's ``DisconnectionError``, and the pool closes
    that one connection and hands out a fresh one in its place (the others stay)."""
    dialect = engine.dialect

    def stamp(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        idle = 0.0 if returned_at is None else time.monotonic() - returned_at
        if idle <= PING_AFTER_IDLE_SECONDS:
            return
        if idle > max_idle_seconds:
            raise DisconnectionError(f"the connection sat idle for {idle:.0f} s: replaced, not pinged")
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError(f"the connection was dropped while idle: {exc}") from exc
            raise

    event.listen(engine, "connect", stamp)
    event.listen(engine, "checkin", stamp)
    event.listen(engine, "checkout", checkout)


class WriterLock(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...


# How long a thread queues for the writer lock of another engine's SQLite file before it goes to
# SQLite's busy handler as it did without the lock (the busy timeout DBOS sets on its file).
WRITER_QUEUE_SECONDS = 30.0
_DML = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_QUEUED_ENGINES: weakref.WeakKeyDictionary[Engine, WriterLock] = weakref.WeakKeyDictionary()


def queue_sqlite_writers(engine: Engine, lock: WriterLock | None = None) -> WriterLock | None:
    """Threads of this process writing through ``engine`` (another library's, on a SQLite file:
    DBOS's system database) queue for the file's writer on a lock, as :class:`Database` does for
    fulfill's own file, instead of polling in SQLite's busy handler; answers the lock (None for
    another database, where nothing changes).

    Such an engine's driver opens its write transaction implicitly, at the first ``INSERT``,
    ``UPDATE``, ``DELETE`` or ``REPLACE`` outside a transaction (``isolation_level`` set on the
    connection), and SQLite's busy handler then sleeps 1, 2, 5, 10… up to 100 ms between tries
    while the file may sit unlocked. Here the lock is taken right before such a statement and given
    back right after the connection's commit, rollback or close (or after a statement that left no
    transaction open), so it is held exactly while the connection may hold the file's write lock.
    Reads take nothing, nor does a connection in autocommit. A thread that cannot have the
    lock within :data:`WRITER_QUEUE_SECONDS` goes on to SQLite's busy handler (as before), so a
    connection that never ends its transaction cannot stop the others for longer than that. The
    busy handler still arbitrates between processes. Durability is unchanged: every commit is the
    same commit."""
    if engine.dialect.name != "sqlite":
        return None
    known = _QUEUED_ENGINES.get(engine)
    if known is not None:
        return known
    writer: WriterLock = lock or threading.Lock()
    holder: list[int] = []  # id() of the DBAPI connection holding the lock, while one does

    def before_cursor_execute(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        raw = cursor.connection
        if raw.in_transaction or raw.isolation_level is None:
            return  # in its transaction already, or each statement on its own (autocommit)
        if not statement.lstrip()[:7].upper().startswith(_DML) or (holder and holder[0] == id(raw)):
            return
        if writer.acquire(timeout=WRITER_QUEUE_SECONDS):
            holder.append(id(raw))

    def give_back_unless_in_transaction(raw: Any) -> None:
        # The statement did not leave a transaction open (it failed before beginning one, or it
        # ended one itself): nothing holds the file for this connection any more.
        if holder and holder[0] == id(raw) and not raw.in_transaction:
            holder.clear()
            writer.release()

    def after_cursor_execute(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        give_back_unless_in_transaction(cursor.connection)

    def handle_error(context: Any) -> None:
        conn = context.connection
        raw = conn.connection.dbapi_connection if conn is not None and not conn.closed else None
        if raw is not None:
            give_back_unless_in_transaction(raw)

    dialect = engine.dialect

    def releasing(end: Any) -> Any:
        def ended(connection: Any) -> None:
            try:
                end(connection)
            finally:
                raw = getattr(connection, "dbapi_connection", connection)
                if holder and holder[0] == id(raw):
                    holder.clear()
                    writer.release()

        return ended

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    event.listen(engine, "after_cursor_execute", after_cursor_execute)
    event.listen(engine, "handle_error", handle_error)
    # SQLAlchemy announces a commit or rollback before it happens; the lock is given back after.
    dialect.do_commit = releasing(dialect.do_commit)  # type: ignore[method-assign]
    dialect.do_rollback = releasing(dialect.do_rollback)  # type: ignore[method-assign]
    dialect.do_close = releasing(dialect.do_close)  # type: ignore[method-assign]
    _QUEUED_ENGINES[engine] = writer
    return writer


def sqlite_writer_lock(engine: Engine) -> WriterLock | None:
    """The lock :func:`queue_sqlite_writers` put on ``engine``, if it did."""
    return _QUEUED_ENGINES.get(engine)


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
