"""The threads of one process queue for the writer of DBOS's SQLite file on a lock, as they do for
fulfill's own file, instead of polling in SQLite's busy handler (store/db.py
``queue_sqlite_writers``): the lock is held from a connection's first write to its commit,
rollback or close, reads take nothing, and the service puts it on DBOS's engine (SQLite only)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dbos import _dbos as dbos_internals

from fulfill.store.db import queue_sqlite_writers, sqlite_writer_lock
from tests.support import postgres
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for


class _SeenLock:
    """A lock that says when a second thread starts waiting for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        self.waiting.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


def _dbos_like_engine(path: Path, busy_timeout_ms: int) -> sa.Engine:
    """An engine opened the way DBOS opens its SQLite file: the driver begins a write transaction
    (IMMEDIATE) at the first write statement; the busy handler waits ``busy_timeout_ms``."""
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        dbapi_conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")

    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    # DBOS runs every statement through an engine with its own execution options.
    return engine.execution_options(schema_translate_map={None: None})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    # No busy timeout: a second writer reaching SQLite while the first holds the file fails at once.
    made = _dbos_like_engine(tmp_path / "dbos.sqlite", busy_timeout_ms=0)
    yield made
    made.dispose()


def test_a_second_writer_waits_for_the_first_on_the_lock_not_in_sqlite(engine: sa.Engine) -> None:
    lock = _SeenLock()
    assert queue_sqlite_writers(engine, lock) is lock
    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t (v) VALUES ('second')")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t (v) VALUES ('first')")  # holds the file's writer now
        assert lock.locked()
        thread = threading.Thread(target=second)
        thread.start()
        assert lock.waiting.wait(10)  # the second writer queues on the lock, not in SQLite
    thread.join(10)
    # Without the lock the second INSERT would have met the held file: "database is locked".
    assert outcome == [None]
    assert not lock.locked()
    with engine.connect() as conn:
        assert [row[0] for row in conn.exec_driver_sql("SELECT v FROM t ORDER BY k")] == ["first", "second"]


def test_the_lock_is_given_back_after_a_rollback_a_failed_write_and_is_not_taken_by_reads(
    engine: sa.Engine,
) -> None:
    lock = queue_sqlite_writers(engine)
    assert lock is not None
    assert sqlite_writer_lock(engine) is lock
    assert queue_sqlite_writers(engine) is lock  # once per engine
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM t").scalar()
        assert _released(lock)  # reads take nothing
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (1, 'kept')")
        conn.rollback()
    assert _released(lock)

    def twice() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (2, 'a')")
            conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (2, 'again')")  # the key is taken

    with pytest.raises(sa.exc.IntegrityError):
        twice()
    assert _released(lock)
    # A write that fails before its transaction begins gives the lock back at once.
    conn = engine.connect()
    with pytest.raises(sa.exc.OperationalError):
        conn.exec_driver_sql("INSERT INTO no_such_table (k) VALUES (1)")
    assert _released(lock)
    conn.close()
    # A write left open is ended when its connection goes back to the pool (a rollback there).
    conn = engine.connect()
    conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (3, 'left open')")
    conn.close()
    assert _released(lock)
    # A write in autocommit is its own transaction: it takes nothing and leaves nothing held.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (4, 'autocommit')")
        assert _released(lock)
    # A transaction ended by a statement of its own gives the lock back with it.
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (5, 'committed by a statement')")
        assert not _released(lock)
        conn.exec_driver_sql("COMMIT")
        assert _released(lock)
    with engine.connect() as conn:
        assert [row[0] for row in conn.exec_driver_sql("SELECT k FROM t ORDER BY k")] == [4, 5]


def _released(lock: Any) -> bool:
    """Whether nobody holds ``lock`` (taken and given back at once to find out)."""
    if not lock.acquire(blocking=False):
        return False
    lock.release()
    return True


def test_another_database_gets_no_lock() -> None:
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert queue_sqlite_writers(engine) is None
    assert sqlite_writer_lock(engine) is None


def test_the_service_queues_the_writers_of_dbos_file(tmp_path: Path) -> None:
    harness = Harness(make_settings(tmp_path)).start()
    try:
        instance = dbos_internals._dbos_global_instance
        assert instance is not None
        lock = sqlite_writer_lock(instance._sys_db.engine)
        if postgres.enabled():
            assert lock is None  # row locks there: nothing to queue for
        else:
            assert lock is not None
            # An execution runs through DBOS's file with the lock in place, and gives it back.
            outcome = harness.run_task(harness.client())
            assert outcome["status"] == "SUCCEEDED"
            # Given back (DBOS's own background passes write too: one may hold it for a moment).
            wait_for(lambda: _released(lock), timeout=10)
    finally:
        harness.stop()


def test_dbos_sqlite_engine_runs_an_execution_without_pinging_its_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite connection is a handle on a file: nothing can drop it while it sits in the pool,
    so DBOS's default ping before every checkout (a ``SELECT 1`` each) would find nothing. The
    service switches it off for SQLite, as it does on PostgreSQL for a ping after idleness only
    (``test_pool_ping.py``). Every thread's pings are counted: the background ones as well."""
    if postgres.enabled():
        pytest.skip("DBOS's engine on SQLite; on PostgreSQL its pings are test_pool_ping.py's")
    harness = Harness(make_settings(tmp_path)).start()
    try:
        instance = dbos_internals._dbos_global_instance
        assert instance is not None
        dialect = instance._sys_db.engine.dialect
        pings = [0]
        ping = dialect.do_ping

        def counting(dbapi_connection: Any) -> bool:
            pings[0] += 1
            return ping(dbapi_connection)

        monkeypatch.setattr(dialect, "do_ping", counting)
        with harness.client() as client:
            outcomes = [harness.run_task(client) for _ in range(3)]
        assert [outcome["status"] for outcome in outcomes] == ["SUCCEEDED"] * 3
        assert pings[0] == 0
    finally:
        harness.stop()
