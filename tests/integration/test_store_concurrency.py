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

from fulfill.domain.models import (
    ActionIntentV1,
    ApprovalStatus,
    AttemptStatus,
    ExecutionAttempt,
    ExecutionStatus,
    GlobalExecutionConfig,
    TenantExecutionConfig,
)
from fulfill.store import executions, intents, killswitches, outbox
from fulfill.store.db import Database, insert_ignore
from fulfill.store.tables import action_intents, action_type_registry, outbox_messages
from tests.support import postgres
from tests.support.harness import fresh_database
from tests.support.http_doubles import wait_for
from tests.unit.factories import make_intent

T = TypeVar("T")
NOW = "2026-11-24T00:00:00.000Z"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        yield db


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


# --- the execution's own writes: one statement where a write and a read were two -------------------


def _approved_intent_with_queued_attempt(db: Database) -> tuple[ActionIntentV1, ExecutionAttempt]:
    from fulfill.engine.intake import queued_attempt

    intent = make_intent()
    attempt = queued_attempt(intent, 1_900_000_000.0)
    with db.write() as conn:
        assert intents.insert_intent(conn, intent, "hash")
        assert executions.insert_attempt(conn, attempt, deadline_epoch=1_900_000_100.0)
    return intent, attempt


def _begin(
    conn: Any, attempt: ExecutionAttempt, *, attempt_id: str | None = None, deadline: float = 1.0
) -> Any:
    return executions.begin_attempt(
        conn,
        tenant_id=attempt.tenant_id,
        account_id=attempt.account_id,
        action_intent_id=attempt.action_intent_id,
        attempt_id=attempt_id or attempt.attempt_id,
        started_at=NOW,
        deadline_epoch=deadline,
    )


def test_begin_attempt_returns_the_running_attempt_as_stored_and_starts_it_once(database: Database) -> None:
    _, attempt = _approved_intent_with_queued_attempt(database)
    with database.write() as conn:
        running = _begin(conn, attempt, deadline=1_900_000_300.25)
    with database.read() as conn:
        stored = executions.get_attempt(conn, "t1", attempt.account_id, attempt.action_intent_id)
        assert stored is not None
        deadline = executions.get_deadline(conn, stored)
    assert running == stored
    assert (stored.status, stored.started_at, deadline) == (AttemptStatus.RUNNING, NOW, 1_900_000_300.25)
    with database.write() as conn:
        assert _begin(conn, attempt) is None


def test_begin_attempt_starts_only_the_queued_attempt_of_that_id(database: Database) -> None:
    """Called without reading the attempt first (StartExecution): another attempt id, or an
    intent without an attempt, is left as it is and answers None."""
    _, attempt = _approved_intent_with_queued_attempt(database)
    with database.write() as conn:
        assert _begin(conn, attempt, attempt_id="att-someone-else") is None
        assert _begin(conn, attempt.model_copy(update={"action_intent_id": "ai-none"})) is None
    with database.read() as conn:
        stored = executions.get_attempt(conn, "t1", attempt.account_id, attempt.action_intent_id)
    assert stored is not None
    assert (stored.attempt_id, stored.status) == (attempt.attempt_id, AttemptStatus.QUEUED)


def test_lock_and_mark_execution_marks_the_intent_and_returns_it(database: Database) -> None:
    intent, _ = _approved_intent_with_queued_attempt(database)
    with database.write() as conn:
        returned = intents.lock_and_mark_execution(
            conn, "t1", intent.action_intent_id, status=ExecutionStatus.SUCCEEDED, at=NOW
        )
        assert (
            intents.lock_and_mark_execution(conn, "t1", "ai_missing", status=ExecutionStatus.FAILED, at=NOW)
            is None
        )
        assert (
            intents.lock_and_mark_execution(
                conn, "t2", intent.action_intent_id, status=ExecutionStatus.FAILED, at=NOW
            )
            is None
        )  # another tenant's id: nothing marked, nothing returned
    assert returned == intent
    with database.read() as conn:
        row = conn.execute(
            select(action_intents.c.execution_status, action_intents.c.last_update_at).where(
                action_intents.c.action_intent_id == intent.action_intent_id
            )
        ).one()
    assert tuple(row) == ("SUCCEEDED", NOW)


def _cancel(action_intent_id: str) -> Callable[[Connection], ActionIntentV1 | None]:
    """What a cancel does: read the intent locked, move it to CANCELLED."""

    def cancel(conn: Connection) -> ActionIntentV1 | None:
        current = intents.get_intent(conn, "t1", action_intent_id, for_update=True)
        assert current is not None
        return intents.transition_approval(conn, current, to_status=ApprovalStatus.CANCELLED, now=NOW)

    return cancel


@postgres.postgres_only
def test_an_outcome_recorded_while_a_cancel_holds_the_intent_sees_the_cancel(database: Database) -> None:
    """RecordOutcome's one-statement mark waits for a cancel's row lock and returns the intent as
    the cancel left it (so the workflow hands the write to compensation)."""
    intent, _ = _approved_intent_with_queued_attempt(database)
    _, seen = interleave(
        database,
        _cancel(intent.action_intent_id),
        lambda conn: intents.lock_and_mark_execution(
            conn, "t1", intent.action_intent_id, status=ExecutionStatus.SUCCEEDED, at=NOW
        ),
    )
    assert seen is not None
    assert seen.approval_status is ApprovalStatus.CANCELLED


@postgres.postgres_only
def test_a_cancel_waits_for_an_outcome_being_recorded(database: Database) -> None:
    """A cancel's locked read waits for RecordOutcome's mark to commit: it sees the outcome."""
    intent, _ = _approved_intent_with_queued_attempt(database)

    def read_status(conn: Connection) -> str:
        assert intents.get_intent(conn, "t1", intent.action_intent_id, for_update=True) is not None
        return str(
            conn.execute(
                select(action_intents.c.execution_status).where(
                    action_intents.c.action_intent_id == intent.action_intent_id
                )
            ).scalar_one()
        )

    _, status = interleave(
        database,
        lambda conn: intents.lock_and_mark_execution(
            conn, "t1", intent.action_intent_id, status=ExecutionStatus.SUCCEEDED, at=NOW
        ),
        read_status,
    )
    assert status == "SUCCEEDED"


def test_the_global_and_a_tenants_switches_read_in_one_statement_are_what_each_read_gives(
    database: Database,
) -> None:
    def both_ways() -> tuple[Any, Any]:
        with database.read() as conn:
            return (
                killswitches.get_global_and_tenant(conn, "t1"),
                (killswitches.get_global(conn), killswitches.get_tenant(conn, "t1")),
            )

    one, apart = both_ways()
    assert one == apart
    assert (one[0].revision, one[1].revision, one[1].tenant_id) == (0, 0, "t1")  # no rows: nothing stopped
    with database.write() as conn:
        _put_tenant(False, ["OTHER"])(conn)  # t1 stopped
        killswitches.put_tenant(
            conn, TenantExecutionConfig(tenant_id="t2", disabled_action_types=["T2_ONLY"]), now=NOW
        )
    one, apart = both_ways()
    assert one == apart
    assert (one[0].global_stop, one[1].execution_enabled, one[1].disabled_action_types) == (
        False,
        False,
        ["OTHER"],
    )
    with database.write() as conn:
        _put_global(True, ["GLOBAL_TYPE"])(conn)
        _put_tenant(True, [])(conn)
    one, apart = both_ways()
    assert one == apart
    assert (one[0].global_stop, one[0].disabled_action_types, one[0].revision) == (True, ["GLOBAL_TYPE"], 1)
    assert (one[1].execution_enabled, one[1].revision) == (True, 2)


def test_a_calls_gate_view_in_one_statement_is_what_the_three_reads_give(database: Database) -> None:
    from fulfill.domain.flowcontrol import Circuit, CircuitState, ConnectorLimits
    from fulfill.store import connectors

    def both_ways() -> tuple[Any, Any]:
        with database.read() as conn:
            return (
                connectors.gate_view(conn, "crm", "t1"),
                (
                    connectors.get_limits(conn, "crm"),
                    connectors.get_circuit(conn, "crm"),
                    connectors.tenant_cap(conn, "crm", "t1"),
                ),
            )

    one, apart = both_ways()
    assert one == apart
    assert one[2] is None  # nothing stored: unlimited, closed, no cap of its own
    with database.write() as conn:
        connectors.put_limits(conn, "crm", ConnectorLimits(rate_per_second=5.0, concurrency=3), now=NOW)
        connectors.put_limits(conn, "other", ConnectorLimits(concurrency=1), now=NOW)
        connectors.put_tenant_cap(conn, "crm", "t2", ConnectorLimits(concurrency=1), now=NOW, by="admin")
        connectors.lock_state(conn, "crm")
        connectors.save_circuit(
            conn, "crm", Circuit(state=CircuitState.OPEN, failures=4, opened_at=12.5), now=13.0
        )
    one, apart = both_ways()
    assert one == apart
    assert (one[0].limits.concurrency, one[1].state, one[1].failures, one[2]) == (
        3,
        CircuitState.OPEN,
        4,
        None,
    )
    with database.write() as conn:
        connectors.put_tenant_cap(
            conn, "crm", "t1", ConnectorLimits(rate_per_second=1.0), now=NOW, by="admin"
        )
    one, apart = both_ways()
    assert one == apart
    assert one[2] == ConnectorLimits(rate_per_second=1.0)


def test_the_statements_built_once_read_each_connectors_and_each_tenants_own_rows(database: Database) -> None:
    """The gate's view and the switches read are built once with bound parameters: read in turn for
    several connectors and tenants (in one connection, as the statement cache sees them), each
    read gives its own connector's and its own tenant's rows, never the previous read's."""
    from fulfill.domain.flowcontrol import ConnectorLimits
    from fulfill.store import connectors

    with database.write() as conn:
        connectors.put_limits(conn, "crm", ConnectorLimits(concurrency=3), now=NOW)
        connectors.put_limits(conn, "calendar", ConnectorLimits(rate_per_second=2.0), now=NOW)
        connectors.put_tenant_cap(conn, "crm", "t2", ConnectorLimits(concurrency=1), now=NOW, by="admin")
        killswitches.put_tenant(
            conn, TenantExecutionConfig(tenant_id="t2", disabled_action_types=["T2_ONLY"]), now=NOW
        )
    with database.read() as conn:
        for _ in range(2):
            crm_t1, crm_t2 = connectors.gate_view(conn, "crm", "t1"), connectors.gate_view(conn, "crm", "t2")
            calendar_t2 = connectors.gate_view(conn, "calendar", "t2")
            assert (crm_t1[0].limits.concurrency, crm_t1[2]) == (3, None)
            assert (crm_t2[0].limits.concurrency, crm_t2[2]) == (3, ConnectorLimits(concurrency=1))
            assert (calendar_t2[0].limits.rate_per_second, calendar_t2[2]) == (2.0, None)
            t1, t2 = (
                killswitches.get_global_and_tenant(conn, "t1"),
                killswitches.get_global_and_tenant(conn, "t2"),
            )
            assert (t1[1].tenant_id, t1[1].disabled_action_types) == ("t1", [])
            assert (t2[1].tenant_id, t2[1].disabled_action_types) == ("t2", ["T2_ONLY"])


def test_the_intent_read_built_once_reads_each_tenants_own_intent(database: Database) -> None:
    """An intent is read by a statement built once: read in turn for several tenants and ids, each
    read finds only that tenant's intent under that id (another tenant's id finds nothing)."""
    first, second = make_intent(action_intent_id="ai_first"), make_intent(action_intent_id="ai_second")
    other = make_intent(action_intent_id="ai_other", tenant_id="t2")
    with database.write() as conn:
        for intent in (first, second, other):
            assert intents.insert_intent(conn, intent, f"hash-{intent.action_intent_id}")
    for for_update in (False, True):
        with database.write() if for_update else database.read() as conn:
            for _ in range(2):
                got = [
                    intents.get_intent(conn, tenant, intent_id, for_update=for_update)
                    for tenant, intent_id in (
                        ("t1", "ai_first"),
                        ("t1", "ai_second"),
                        ("t2", "ai_other"),
                        ("t2", "ai_first"),
                        ("t1", "ai_other"),
                    )
                ]
                assert [(i.tenant_id, i.action_intent_id) if i else None for i in got] == [
                    ("t1", "ai_first"),
                    ("t1", "ai_second"),
                    ("t2", "ai_other"),
                    None,
                    None,
                ]


def test_create_once_returns_the_object_stored_under_the_key_whoever_asks_again(database: Database) -> None:
    from fulfill.store import internal_objects

    def create(object_id: str, account_id: str) -> Any:
        with database.write() as conn:
            return internal_objects.create_once(
                conn,
                "task",
                object_id=object_id,
                tenant_id="t1",
                account_id=account_id,
                idempotency_key="key-1",
                action_intent_id="ai_1",
                created_at=NOW,
                fields={"title": "x", "description": None},
            )

    first = create("task_1", "acc-1")
    assert (first.object_id, first.account_id, first.deleted) == ("task_1", "acc-1", False)
    with database.read() as conn:
        assert internal_objects.find_by_key(conn, "task", "key-1") == first
    again = create("task_2", "acc-2")  # the key is taken: what is stored under it, not a second task
    assert again == first


def test_ledger_entries_appended_together_keep_their_order_and_skip_ids_already_there(
    database: Database,
) -> None:
    from fulfill.domain.models import LedgerEntry

    def entry(entry_id: str, event_type: str) -> LedgerEntry:
        return LedgerEntry(
            entry_id=entry_id,
            event_type=event_type,
            timestamp=NOW,
            tenant_id="t1",
            account_id="acc-1",
            action_intent_id="ai_1",
            attempt=1,
            trace_id="trace",
            data={"n": entry_id},
        )

    with database.write() as conn:
        assert executions.append_ledger(conn, entry("e-outcome", "EXECUTION_SUCCEEDED"))
        executions.append_ledger_entries(conn, [])
    with database.write() as conn:
        executions.append_ledger_entries(
            conn,
            [
                entry("e-outcome", "REPLACED"),  # already there: left as it is
                entry("e-unknown", "OUTCOME_UNKNOWN"),
                entry("e-signal", "SIGNAL_CREATED"),
            ],
        )
    with database.read() as conn:
        stored = executions.list_ledger(conn, "t1", "ai_1")
    assert [(e.entry_id, e.event_type) for e in stored] == [
        ("e-outcome", "EXECUTION_SUCCEEDED"),
        ("e-unknown", "OUTCOME_UNKNOWN"),
        ("e-signal", "SIGNAL_CREATED"),
    ]


def test_ledger_entries_appended_together_are_one_statement_compiled_once(database: Database) -> None:
    """RecordOutcome's entries go in as one multi-row INSERT (their order is its rows' order),
    and that statement's compiled form is reused: a multi-row INSERT built from a list of values
    was compiled again at every append."""
    from sqlalchemy import event

    from fulfill.domain.models import LedgerEntry

    def entries(intent_id: str) -> list[LedgerEntry]:
        return [
            LedgerEntry(
                entry_id=f"{intent_id}-{kind}",
                event_type=kind,
                timestamp=NOW,
                tenant_id="t1",
                account_id="acc-1",
                action_intent_id=intent_id,
                attempt=1,
                trace_id="trace",
                data={"kind": kind},
            )
            for kind in ("EXECUTION_SUCCEEDED", "SIGNAL_CREATED")
        ]

    inserts: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO LEDGER_ENTRIES"):
            inserts.append((statement, context.cache_hit))

    event.listen(database.engine, "after_cursor_execute", seen)
    try:
        for intent_id in ("ai_1", "ai_2", "ai_3"):
            with database.write() as conn:
                executions.append_ledger_entries(conn, entries(intent_id))
    finally:
        event.remove(database.engine, "after_cursor_execute", seen)
    assert len(inserts) == 3  # one statement per append, both rows in it
    assert all(statement.count("(") >= 3 for statement, _ in inserts)  # column list + 2 rows
    assert [str(hit) for _, hit in inserts[1:]] == ["CacheStats.CACHE_HIT", "CacheStats.CACHE_HIT"]
    with database.read() as conn:
        stored = executions.list_ledger(conn, "t1", "ai_2")
    assert [(e.entry_id, e.data) for e in stored] == [
        ("ai_2-EXECUTION_SUCCEEDED", {"kind": "EXECUTION_SUCCEEDED"}),
        ("ai_2-SIGNAL_CREATED", {"kind": "SIGNAL_CREATED"}),
    ]
