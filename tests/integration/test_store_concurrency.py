"""Store writes under concurrency: an exact "did my insert win?", atomic kill-switch writes.

These run on the store alone, on a freshly migrated database (no service): on SQLite and, on the
PostgreSQL pass, on PostgreSQL. The ``postgres_only`` ones interleave two transactions under READ
COMMITTED deterministically: the first writes and stays open, the second writes from a thread and
is seen waiting for the first one's lock, then the first commits and the second finishes.
(SQLite takes its single write lock at BEGIN IMMEDIATE, so there is no interleaving to test.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, func, select, text

from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig
from fulfill.store import killswitches, outbox
from fulfill.store.db import Database, insert_ignore
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.tables import action_type_registry, outbox_messages
from tests.support import postgres
from tests.support.harness import fresh_database_url
from tests.support.http_doubles import wait_for

T = TypeVar("T")
NOW = "2026-11-24T00:00:00.000Z"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    url = fresh_database_url(tmp_path)
    db = Database(url)
    upgrade_to_head(db)
    try:
        yield db
    finally:
        db.dispose()
        if postgres.is_postgres_url(url):
            postgres.drop_database(url)


def _registry_row(version: int, tool: str = "internal.create_task") -> dict[str, Any]:
    return {
        "action_type": "RACE",
        "registry_version": version,
        "tool_name": tool,
        "created_at": NOW,
        "deprecated_at": None,
        "document": {"tool": tool},
    }


def _message(message_id: str) -> dict[str, Any]:
    return {"message_id": message_id, "topic": "T", "tenant_id": "t1", "payload": {}, "created_at": NOW}


class Interleaving:
    """Runs ``second`` in its own transaction on a thread while the caller's first transaction is
    still open, and tells when ``second`` waits for a lock the first one holds."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, second: Callable[[Connection], Any]) -> None:
        def run() -> None:
            try:
                with self.db.write() as conn:
                    self.result = second(conn)
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        wait_for(self._waiting_for_a_lock, timeout=10)

    def _waiting_for_a_lock(self) -> bool:
        with self.db.read() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        return int(waiting) > 0

    def finish(self) -> Any:
        assert self._thread is not None
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the second transaction never finished"
        if self.error is not None:
            raise self.error
        return self.result


def interleave(db: Database, first: Callable[[Connection], T], second: Callable[[Connection], Any]) -> T:
    """``first`` writes and stays uncommitted; ``second`` starts and waits; ``first`` commits."""
    other = Interleaving(db)
    with db.write() as conn:
        first_result = first(conn)
        other.start(second)
    return first_result, other.finish()  # type: ignore[return-value]


# --- insert_ignore -------------------------------------------------------------------------------


def test_insert_ignore_reports_a_duplicate_as_not_inserted(database: Database) -> None:
    with database.write() as conn:
        assert insert_ignore(conn, action_type_registry, _registry_row(1)) is True
        assert insert_ignore(conn, action_type_registry, _registry_row(1, "internal.create_note")) is False
        assert insert_ignore(conn, outbox_messages, _message("m-1")) is True
        assert insert_ignore(conn, outbox_messages, _message("m-1")) is False
    with database.write() as conn:  # and in a later transaction
        assert insert_ignore(conn, action_type_registry, _registry_row(1, "internal.create_note")) is False
        assert insert_ignore(conn, action_type_registry, _registry_row(2)) is True
    with database.read() as conn:
        tools = conn.execute(
            select(action_type_registry.c.tool_name).order_by(action_type_registry.c.registry_version)
        ).scalars()
        assert list(tools) == ["internal.create_task", "internal.create_task"]


@postgres.postgres_only
def test_of_two_concurrent_inserts_of_one_key_exactly_one_wins(database: Database) -> None:
    first, second = interleave(
        database,
        lambda conn: insert_ignore(conn, outbox_messages, _message("m-race")),
        lambda conn: insert_ignore(conn, outbox_messages, _message("m-race")),
    )
    assert (first, second) == (True, False)
    with database.read() as conn:
        assert conn.execute(select(func.count()).select_from(outbox_messages)).scalar_one() == 1


# --- kill switches -------------------------------------------------------------------------------


def test_kill_switch_writes_count_revisions_and_return_what_was_stored(database: Database) -> None:
    with database.read() as conn:
        assert killswitches.get_global(conn).revision == 0
        assert killswitches.get_tenant(conn, "t1").revision == 0
    for revision, stop in enumerate([True, False, True], start=1):
        with database.write() as conn:
            stored = killswitches.put_global(
                conn, GlobalExecutionConfig(global_stop=stop, disabled_action_types=["B", "A", "B"]), now=NOW
            )
        assert (stored.global_stop, stored.disabled_action_types, stored.revision) == (
            stop,
            ["A", "B"],
            revision,
        )
        with database.read() as conn:
            assert killswitches.get_global(conn) == stored
    with database.write() as conn:
        tenant = killswitches.put_tenant(
            conn, TenantExecutionConfig(tenant_id="t1", execution_enabled=False), now=NOW
        )
    assert (tenant.execution_enabled, tenant.revision, tenant.updated_at) == (False, 1, NOW)
    with database.read() as conn:
        assert killswitches.get_tenant(conn, "t1") == tenant
        assert killswitches.get_tenant(conn, "t2").revision == 0  # another tenant is untouched


def _put_global(stop: bool, types: list[str]) -> Callable[[Connection], killswitches.StoredGlobalConfig]:
    config = GlobalExecutionConfig(global_stop=stop, disabled_action_types=types)
    return lambda conn: killswitches.put_global(conn, config, now=NOW)


def _put_tenant(enabled: bool, types: list[str]) -> Callable[[Connection], killswitches.StoredTenantConfig]:
    config = TenantExecutionConfig(tenant_id="t1", execution_enabled=enabled, disabled_action_types=types)
    return lambda conn: killswitches.put_tenant(conn, config, now=NOW)


@postgres.postgres_only
@pytest.mark.parametrize("existing", [False, True], ids=["first-write", "overwrite"])
def test_the_later_of_two_concurrent_global_writes_is_the_one_stored(
    database: Database, existing: bool
) -> None:
    if existing:
        with database.write() as conn:
            _put_global(False, [])(conn)
    first, second = interleave(database, _put_global(True, ["FIRST"]), _put_global(False, ["SECOND"]))
    with database.read() as conn:
        stored = killswitches.get_global(conn)
    assert stored == second  # what the last writer was told is what stays
    assert (stored.global_stop, stored.disabled_action_types) == (False, ["SECOND"])
    assert second.revision == first.revision + 1


@postgres.postgres_only
@pytest.mark.parametrize("existing", [False, True], ids=["first-write", "overwrite"])
def test_the_later_of_two_concurrent_tenant_writes_is_the_one_stored(
    database: Database, existing: bool
) -> None:
    if existing:
        with database.write() as conn:
            _put_tenant(True, [])(conn)
    first, second = interleave(database, _put_tenant(False, ["FIRST"]), _put_tenant(True, ["SECOND"]))
    with database.read() as conn:
        stored = killswitches.get_tenant(conn, "t1")
    assert stored == second
    assert (stored.execution_enabled, stored.disabled_action_types) == (True, ["SECOND"])
    assert second.revision == first.revision + 1


@postgres.postgres_only
def test_concurrent_read_modify_writes_under_a_row_lock_lose_nothing(database: Database) -> None:
    """What ``fulfill kill-switch action-type … disable`` does: read with ``for_update``, change, write."""

    def disable(action_type: str) -> Callable[[Connection], killswitches.StoredGlobalConfig]:
        def change(conn: Connection) -> killswitches.StoredGlobalConfig:
            current = killswitches.get_global(conn, for_update=True)
            types = [*current.disabled_action_types, action_type]
            return killswitches.put_global(
                conn, current.model_copy(update={"disabled_action_types": types}), now=NOW
            )

        return change

    interleave(database, disable("FIRST"), disable("SECOND"))
    with database.read() as conn:
        stored = killswitches.get_global(conn)
    assert (stored.disabled_action_types, stored.revision) == (["FIRST", "SECOND"], 2)


# --- outbox claims -------------------------------------------------------------------------------


@postgres.postgres_only
def test_a_relay_claiming_while_another_holds_rows_skips_them_without_waiting(database: Database) -> None:
    with database.write() as conn:
        for index in range(3):
            outbox.enqueue(
                conn,
                message_id=f"m-{index}",
                topic="T",
                tenant_id="t1",
                payload={},
                destinations=["https://hooks.example/a"],
                now=NOW,
                now_epoch=100.0 + index,
            )
    finished = threading.Event()
    claimed: list[outbox.Delivery] = []

    def second_relay() -> None:
        with database.write() as conn:
            claimed.extend(outbox.claim_due(conn, now_epoch=200.0, lease_seconds=60, owner="B"))
        finished.set()

    with database.write() as conn:
        first = outbox.claim_due(conn, now_epoch=200.0, lease_seconds=60, owner="A", limit=2)
        thread = threading.Thread(target=second_relay, daemon=True)
        thread.start()
        # The first claim is still uncommitted, and its rows are locked: the second relay takes
        # what is left instead of queueing behind them.
        assert finished.wait(timeout=10), "the second claim waited for the first one's rows"
    thread.join(timeout=10)
    assert [d.message_id for d in first] == ["m-0", "m-1"]
    assert [d.message_id for d in claimed] == ["m-2"]
