"""``Store.exclusive``: one holder of a name at a time, answered at once, given back when the block
ends (raising or not), on the in-memory store, SQLite and PostgreSQL; on PostgreSQL held by the
database, so that another engine (another process) is refused too, and a holder whose connection
dies gives it back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from fulfill.ports.store import Store
from fulfill.store.db import Database
from fulfill.store.sql_store import SqlStore
from tests.support.stores import KINDS, store_of_kind

NAME = "fulfill-test-exclusive"


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with store_of_kind(request.param, tmp_path) as each:
        yield each


def _try_from_another_thread(store: Store, name: str = NAME) -> bool:
    def attempt() -> bool:
        with store.exclusive(name) as held:
            return held

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(attempt).result(timeout=30)


def test_one_holder_at_a_time_and_given_back_when_the_block_ends(store: Store) -> None:
    with store.exclusive(NAME) as held:
        assert held
        assert not _try_from_another_thread(store)
        assert _try_from_another_thread(store, "another name")  # names are apart
    assert _try_from_another_thread(store)


def test_given_back_when_the_block_raises(store: Store) -> None:
    def failing_holder() -> None:
        with store.exclusive(NAME) as held:
            assert held
            raise RuntimeError("in the block")

    with pytest.raises(RuntimeError, match="in the block"):
        failing_holder()
    assert _try_from_another_thread(store)


def _sql_database(store: Store) -> Database:
    if not isinstance(store, SqlStore) or store.database.is_sqlite:
        pytest.skip("PostgreSQL's advisory lock (on SQLite, and in memory, the one process holds it)")
    return store.database


def test_another_engine_is_refused_on_postgresql(store: Store) -> None:
    """Another engine is another session, as another process's would be."""
    database = _sql_database(store)
    other = Database(database.url)
    try:
        with store.exclusive(NAME) as held:
            assert held
            with SqlStore(other).exclusive(NAME) as elsewhere:
                assert not elsewhere
        with SqlStore(other).exclusive(NAME) as elsewhere:
            assert elsewhere
    finally:
        other.dispose()


def test_a_holder_whose_connection_dies_gives_it_back_on_postgresql(store: Store) -> None:
    """A worker that dies mid-pass: its session ends and the lock with it. Here its backend is
    terminated while the block runs; the block's end does not fail on the dead connection."""
    database = _sql_database(store)
    other = Database(database.url)
    entered = threading.Event()
    release = threading.Event()

    failures: list[BaseException] = []

    def holder() -> None:
        try:
            with SqlStore(other).exclusive(NAME) as held:
                assert held
                entered.set()
                release.wait(30)
        except BaseException as exc:  # the test's thread reports it
            failures.append(exc)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert entered.wait(30)
        assert not _try_from_another_thread(store)
        with database.engine.connect() as conn:
            terminated = (
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND pid <> pg_backend_pid() "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                )
                .scalars()
                .all()
            )
        assert terminated == [True]
        assert _try_from_another_thread(store)
    finally:
        release.set()
        thread.join(30)
        other.dispose()
    assert not thread.is_alive()
    assert failures == []  # its end on a dead connection raised nothing
