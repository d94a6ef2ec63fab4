"""PostgreSQL pools ping a connection on checkout only after it sat idle (``store/db.py
ping_after_idle``), fulfill's own engine and DBOS's system-database engine alike.

A connection given back to its pool less than ``PING_AFTER_IDLE_SECONDS`` ago goes out again
without a ``SELECT 1`` first; one idle longer is pinged, and one the server dropped meanwhile is
replaced by a fresh one before anything runs on it, so that no request and no step fails on it.
The pings counted here are the dialect's ping (``do_ping``), which is what SQLAlchemy's own
``pool_pre_ping`` calls too: a pool that still pinged before every checkout would count one per
checkout. Only this thread's pings are counted (the service's own threads use the pools too).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError

from fulfill.store import db as db_module
from fulfill.store.db import PING_AFTER_IDLE_SECONDS, Database, is_transient_store_error
from tests.support import postgres
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for

pytestmark = postgres.postgres_only

# Longer than the threshold, so that a connection left alone for this long is pinged.
IDLE = PING_AFTER_IDLE_SECONDS + 0.5
CHECKOUTS = 20


class Pings:
    """The pings of ``engine``'s pool made by the thread that built this."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        thread = threading.get_ident()
        dialect = engine.dialect
        ping = dialect.do_ping

        def counting(dbapi_connection: Any) -> bool:
            if threading.get_ident() == thread:
                self.count += 1
            return ping(dbapi_connection)

        monkeypatch.setattr(dialect, "do_ping", counting)


def dbos_engine() -> Engine:
    from dbos import _dbos as dbos_internals

    instance = dbos_internals._dbos_global_instance
    assert instance is not None
    engine: Engine = instance._sys_db.engine
    return engine


@pytest.fixture
def database() -> Iterator[Database]:
    url = postgres.create_database()
    db = Database(url)
    yield db
    db.dispose()
    postgres.drop_database(url)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_settings(tmp_path)).start()
    yield harness
    harness.stop()


def test_fulfills_pool_pings_once_for_checkouts_in_quick_succession_and_again_after_idleness(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = Pings(database.engine, monkeypatch)
    _use_at_once(database.engine, 4)  # the pool holds four connections, all idle below
    assert pings.count == 0, "a connection just opened was pinged"

    time.sleep(IDLE)
    for _ in range(CHECKOUTS // 2):
        with database.read() as conn:
            conn.execute(text("SELECT 1"))
        with database.write() as conn:
            conn.execute(text("SELECT 1"))
    # One: the pool hands out the connection given back last, not each of the four in turn.
    assert pings.count == 1, f"{CHECKOUTS} checkouts in quick succession pinged {pings.count} times"

    time.sleep(IDLE)
    with database.read() as conn:
        conn.execute(text("SELECT 1"))
    assert pings.count == 2, "a checkout after the connection sat idle was not pinged"


def test_a_connection_dropped_within_the_threshold_fails_one_statement_as_transient_and_is_replaced(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the threshold gives up: a connection the server drops less than the threshold after
    its last use goes out unchecked. Its first statement fails as a dropped connection (an error
    the steps retry and the API answers 503 for), and the pool is renewed: the next statement
    runs, on a new connection, and the other connection the pool held is replaced too."""
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)  # "within the threshold", however slow
    # The pool holds two connections; the one given back last (the outer) goes out first.
    with database.read() as outer, database.read() as inner:
        victim = outer.execute(text("SELECT pg_backend_pid()")).scalar_one()
        older = inner.execute(text("SELECT pg_backend_pid()")).scalar_one()
    _terminate(database.url, [victim])

    with pytest.raises(DBAPIError) as failed, database.read() as conn:
        conn.execute(text("SELECT pg_backend_pid()"))
    assert failed.value.connection_invalidated
    assert is_transient_store_error(failed.value)

    pids = set()
    for _ in range(2):
        with database.read() as conn, database.write() as other:
            pids |= {conn.execute(text("SELECT pg_backend_pid()")).scalar_one()}
            pids |= {other.execute(text("SELECT pg_backend_pid()")).scalar_one()}
    assert not pids & {victim, older}, "a connection older than the failure went out again"


def test_a_ping_failing_otherwise_than_a_dropped_connection_is_the_callers_error(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with SQLAlchemy's own pre-ping: only a dropped connection is replaced and checked out
    in its place; any other error of the ping (here a statement cancelled on the server) reaches
    the caller, as an error the steps retry and the API answers 503 for, and the pool goes on."""
    import psycopg

    with database.read() as conn:
        conn.execute(text("SELECT 1"))
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", -1.0)  # every checkout pings
    ping = database.engine.dialect.do_ping

    def cancelled(_dbapi_connection: Any) -> bool:
        raise psycopg.errors.QueryCanceled("canceling statement due to user request")

    monkeypatch.setattr(database.engine.dialect, "do_ping", cancelled)
    with pytest.raises(DBAPIError) as failed, database.read():
        pass
    assert isinstance(failed.value.orig, psycopg.errors.QueryCanceled)
    assert is_transient_store_error(failed.value)
    monkeypatch.setattr(database.engine.dialect, "do_ping", ping)
    with database.read() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


def test_dbos_pool_pings_only_after_the_threshold_not_before_every_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DBOS's pool is shared with DBOS's own threads (they take connections about every second),
    so which connection this thread gets, and how long it sat, is not this test's to choose: the
    threshold is moved instead. An hour: nothing was idle that long, nothing is pinged (DBOS's own
    pre-ping would ping every checkout). Zero: every checkout comes after the threshold."""
    harness = Harness(make_settings(tmp_path, role="api")).start()
    try:
        engine = dbos_engine()
        # DBOS's pool, like fulfill's, hands out the connection given back last (its configuration
        # from the service; the queue inside SQLAlchemy's pool carries the order).
        assert engine.pool._pool.use_lifo  # type: ignore[attr-defined]
        pings = Pings(engine, monkeypatch)
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
        for _ in range(CHECKOUTS):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        assert pings.count == 0, f"{CHECKOUTS} checkouts in quick succession pinged {pings.count} times"

        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
        for _ in range(CHECKOUTS):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        assert pings.count == CHECKOUTS, (
            f"{CHECKOUTS} checkouts after the threshold pinged {pings.count} times"
        )
    finally:
        harness.stop()


def test_connections_killed_while_idle_in_the_pools_are_replaced_without_a_failed_request(
    harness: Harness,
) -> None:
    failed: list[str] = []

    def note_failure(response: httpx.Response) -> None:
        if response.status_code >= 500:
            failed.append(f"{response.request.method} {response.request.url.path}: {response.status_code}")

    client = harness.client()
    for each in (client, harness.colleague(client)):
        each.event_hooks["response"].append(note_failure)
    assert harness.run_task(client)["status"] == "SUCCEEDED"
    engines = {"fulfill": harness.db.engine, "dbos_transact": dbos_engine()}
    for engine in engines.values():
        # Each pool holds ten connections; the service's own threads (DBOS's take connections
        # about every second, a few at once) reuse the ones given back last, and leave the rest.
        _use_at_once(engine, 10)

    disconnects: list[str] = []
    # When each connection last left its pool, and when the kill was over. The promise is for
    # connections taken from a pool after the kill: one of the backends the kill chose can be taken
    # (pinged, still alive) by a service thread between the choice and the termination, and its
    # statement then fails as any statement on a connection killed while in use does.
    checked_out_at: dict[int, float] = {}
    killed_by = [float("inf")]

    def note_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        checked_out_at[id(dbapi_connection)] = time.monotonic()

    def note_disconnect(context: Any) -> None:
        if not context.is_disconnect:
            return
        connection = (
            context.connection.connection.dbapi_connection if context.connection is not None else None
        )
        if checked_out_at.get(id(connection), float("inf")) >= killed_by[0]:
            disconnects.append(str(context.original_exception))

    for engine in engines.values():
        event.listen(engine, "handle_error", note_disconnect)
        event.listen(engine.pool, "checkout", note_checkout)
    try:
        time.sleep(2 * IDLE)
        killed = _terminate_idle_backends(harness.settings.database_url, idle_seconds=IDLE)
        killed_by[0] = time.monotonic()
        assert set(engines) <= {name or "fulfill" for name in killed.values()}, killed
        # Every connection either pool holds goes out at once, the killed ones among them.
        for engine in engines.values():
            _use_at_once(engine, engine.pool.checkedin())  # type: ignore[attr-defined]
        for _ in range(2):
            assert harness.run_task(client)["status"] == "SUCCEEDED"
    finally:
        for engine in engines.values():
            event.remove(engine, "handle_error", note_disconnect)
            event.remove(engine.pool, "checkout", note_checkout)
    assert not failed, failed
    assert not disconnects, f"a statement ran on a dropped connection: {disconnects}"


def _use_at_once(engine: Engine, count: int) -> None:
    """Check ``count`` connections out of ``engine``'s pool at once, run a statement on each."""
    held = [engine.connect() for _ in range(count)]
    try:
        for conn in held:
            conn.execute(text("SELECT 1"))
    finally:
        for conn in held:
            conn.close()


def _terminate_idle_backends(url: str, *, idle_seconds: float) -> dict[int, str]:
    """End, on the server, every backend of ``url``'s database idle for longer than
    ``idle_seconds`` (the service's pooled connections left alone that long; not DBOS's
    notification listener, which holds a connection of its own outside the pool), and wait until
    they are gone; answers their pids and application names."""
    killer = Database(url, pool_size=1, max_overflow=0)
    try:
        with killer.write() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid, application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND state = 'idle' AND state_change < now() - make_interval(secs => :idle)"
                    " AND query NOT LIKE 'LISTEN%'"
                ),
                {"idle": idle_seconds},
            ).all()
            killed = {int(pid): str(name) for pid, name in rows}
        _terminate(url, list(killed))
        return killed
    finally:
        killer.dispose()


def _terminate(url: str, pids: list[int]) -> None:
    """End these backends on the server and wait until they are gone."""
    killer = Database(url, pool_size=1, max_overflow=0)
    try:
        with killer.write() as conn:
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        def gone() -> bool:
            with killer.read() as conn:
                alive = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": pids}
                ).scalar_one()
            return alive == 0

        wait_for(gone)
    finally:
        killer.dispose()
