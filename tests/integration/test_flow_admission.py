"""The connector's admission with many callers waiting in one process, on the store itself (both
backends): each caller is woken only when it must act (handed its permit, or come to the front of
the line), a call admitted ahead of its rate slot is not released before that slot, the front
hands the asking over when it leaves, and a permit handed to a caller that stopped waiting (or
that the process stops while it waits for its slot) is given back."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.admission_cost import counting_wakeups
from sqlalchemy import select

from fulfill.clock import SystemClock
from fulfill.config import Settings
from fulfill.domain.flowcontrol import CallResult, ConnectorLimits
from fulfill.engine import flow
from fulfill.engine.flow import FlowControl, FlowControlClosed, Permit, WaitExpired
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from fulfill.store.tables import connector_calls, connector_waiters
from tests.support import postgres
from tests.support.http_doubles import most_in_any_window, wait_for

SECRET = "admission-secret-0123456789abcdef0123"
CONNECTOR = "crm"


@pytest.fixture
def notified() -> Iterator[list[int]]:
    """The callers' (threads named ``caller-…``) waits that ended because they were notified."""
    with counting_wakeups("caller-") as woken:
        yield woken


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    url = postgres.create_database() if postgres.enabled() else f"sqlite:///{tmp_path / 'admission.db'}"
    database = Database(url)
    upgrade_to_head(database)
    try:
        yield SqlStore(database)
    finally:
        database.dispose()
        if postgres.enabled():
            postgres.drop_database(url)


@pytest.fixture
def control(store: SqlStore) -> Iterator[FlowControl]:
    gate = FlowControl(store, Settings(jwt_secret=SECRET), SystemClock())
    try:
        yield gate
    finally:
        gate.close()


def put_limits(store: SqlStore, limits: ConnectorLimits) -> None:
    with store.write() as uow:
        uow.connectors.put_limits(CONNECTOR, limits, now="2026-12-05T00:00:00Z")


def admit(control: FlowControl, tenant: str, *, seconds: float = 60.0, **more: Any) -> Permit:
    return control.admit(
        CONNECTOR, tenant_id=tenant, deadline=time.time() + seconds, lease_seconds=30.0, **more
    )


def calls(store: SqlStore) -> list[Any]:
    with store.database.read() as conn:
        return list(conn.execute(select(connector_calls).where(connector_calls.c.name == CONNECTOR)).all())


def waiting_rows(store: SqlStore) -> int:
    with store.database.read() as conn:
        return len(conn.execute(select(connector_waiters.c.waiter_id)).all())


def test_many_callers_at_a_rate_limit_are_woken_only_to_act_and_the_limit_holds(
    store: SqlStore, control: FlowControl, notified: list[int]
) -> None:
    """40 callers wait for a connector limited to 20 calls per second. Each admission wakes the
    caller it hands a permit to (and the next first caller when the first leaves), not every
    caller waiting: the notified wake-ups per call stay a small constant, where waking everyone
    would cost about as many per call as there are callers waiting."""
    put_limits(store, ConnectorLimits(rate_per_second=20))
    callers, total = 40, 60
    sends: list[float] = []
    left = [total]
    lock = threading.Lock()
    failures: list[BaseException] = []

    def caller(index: int) -> None:
        try:
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                with admit(control, f"tenant-{index % 3}") as permit:
                    permit.sent()
                    assert permit.sent_at is not None
                    with lock:
                        sends.append(permit.sent_at)
                    permit.finish(CallResult.ANSWERED)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [
        threading.Thread(target=caller, args=(index,), name=f"caller-{index}") for index in range(callers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert len(sends) == total
    # The limit: never more than 20 sends in any window of the period plus the margin (the
    # sends of calls admitted ahead of their slot included).
    assert (
        most_in_any_window(sends, window=1.0 + Settings(jwt_secret=SECRET).connector_rate_margin_seconds)
        <= 20
    )
    assert notified[0] <= 3 * total
    # Every call's row is finished and the shared line is empty.
    assert all(row.finished_epoch is not None for row in calls(store))
    assert waiting_rows(store) == 0


def test_a_call_admitted_ahead_of_its_slot_is_released_at_the_slot(
    store: SqlStore, control: FlowControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow, "_ADMIT_AHEAD_SECONDS", 10.0)
    put_limits(store, ConnectorLimits(rate_per_second=0.5))  # one call per 2 s (+ the margin)
    with admit(control, "t1") as first:
        first.sent()
        assert first.sent_at is not None
        first.finish(CallResult.ANSWERED)
    slot = first.sent_at + 2.0 + Settings(jwt_secret=SECRET).connector_rate_margin_seconds
    with admit(control, "t1") as second:
        # Admitted ahead (the lead is longer than the period here), released once its slot came.
        assert second.start_at is not None
        assert time.time() >= second.start_at
        second.sent()
        assert second.sent_at is not None
        assert second.sent_at >= slot
        second.finish(CallResult.ANSWERED)
    [row] = [row for row in calls(store) if row.call_id == second.call_id]
    assert row.admitted_epoch < slot <= row.dispatched_epoch


def test_calls_admitted_ahead_of_their_slots_keep_the_spacing_between_them(
    store: SqlStore, control: FlowControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a lead longer than the window, the calls of the first window are all admitted at
    once, each for its own slot: a call admitted ahead and not sent yet counts as sent at its
    slot, so the next one's slot is the spacing after it (not the spacing after the moment of
    the decision, which would give them all the same slot)."""
    monkeypatch.setattr(flow, "_ADMIT_AHEAD_SECONDS", 5.0)
    put_limits(store, ConnectorLimits(rate_per_second=4))
    gap = (1.0 + Settings(jwt_secret=SECRET).connector_rate_margin_seconds) / 4 / 2
    slots: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        with admit(control, "t1") as permit:
            with lock:
                if permit.start_at is not None:
                    slots.append(permit.start_at)
            permit.sent()
            permit.finish(CallResult.ANSWERED)

    threads = [threading.Thread(target=caller) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    slots.sort()
    assert len(slots) >= 3
    # The database clock's offset is read at each admission: a few milliseconds of tolerance.
    assert all(later - earlier >= gap - 0.02 for earlier, later in itertools.pairwise(slots))


def test_a_call_waiting_for_its_slot_when_the_process_stops_gives_its_permit_back(
    store: SqlStore, control: FlowControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow, "_ADMIT_AHEAD_SECONDS", 30.0)
    put_limits(store, ConnectorLimits(rate_per_second=0.1))  # one call per 10 s
    with admit(control, "t1") as first:
        first.sent()
        first.finish(CallResult.ANSWERED)
    outcome: list[BaseException] = []

    def second() -> None:
        try:
            admit(control, "t1")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    wait_for(lambda: len(calls(store)) == 2)  # admitted ahead: now it waits for its slot
    control.close()
    thread.join(timeout=10)
    assert [type(exc) for exc in outcome] == [FlowControlClosed]
    # Its slot is given back: the call is finished, never sent.
    [row] = [row for row in calls(store) if row.call_id != first.call_id]
    assert row.finished_epoch is not None
    assert row.dispatched_epoch is None


def test_the_first_caller_leaving_hands_the_asking_to_the_next(
    store: SqlStore, control: FlowControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers behind the first sleep until they are woken (here, longer than their budget): when
    the first stops waiting, it wakes the next, which asks from then on and is admitted as soon as
    the connector has room."""
    monkeypatch.setattr(flow, "_LONGEST_SLEEP_SECONDS", 120.0)
    put_limits(store, ConnectorLimits(concurrency=1))
    held = admit(control, "t1")
    results: dict[str, Any] = {}

    def wait(name: str, tenant: str, seconds: float) -> None:
        try:
            results[name] = admit(control, tenant, seconds=seconds)
        except BaseException as exc:
            results[name] = exc

    first = threading.Thread(target=wait, args=("first", "t1", 1.5))
    first.start()
    wait_for(lambda: waiting_rows(store) == 1)
    behind = threading.Thread(target=wait, args=("behind", "t2", 60.0))
    behind.start()
    wait_for(lambda: len(control._line(CONNECTOR).tickets) == 2)
    first.join(timeout=20)
    assert isinstance(results["first"], WaitExpired)
    held.finish(CallResult.ANSWERED)
    behind.join(timeout=20)
    permit = results["behind"]
    assert isinstance(permit, Permit)
    permit.finish(CallResult.ANSWERED)


def test_a_permit_handed_to_a_caller_that_stopped_waiting_is_given_back(
    store: SqlStore, control: FlowControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first caller (tenant t1) admits, on its behalf, the caller behind it (t2's turn: t1 was
    served last), which stopped waiting (a kill switch) before the permit reached it: the slot
    goes back, and the first caller is admitted in its place."""
    put_limits(store, ConnectorLimits(concurrency=1))
    held = admit(control, "t1")
    stop = threading.Event()
    behind_done = threading.Event()
    handed: list[str] = []
    ask = control._try_admit

    def try_admit(*args: Any) -> Any:
        asked = ask(*args)
        if asked.chosen is not None and asked.chosen.tenant_id == "t2" and not handed:
            handed.append(str(asked.call_id))
            stop.set()  # the caller behind stops waiting before it is handed its permit
            assert behind_done.wait(10)
        return asked

    monkeypatch.setattr(control, "_try_admit", try_admit)

    def recheck() -> None:
        if stop.is_set():
            raise RuntimeError("stopped by a kill switch")

    results: dict[str, Any] = {}

    def wait(name: str, tenant: str, check: Any) -> None:
        try:
            results[name] = admit(control, tenant, recheck=check)
        except BaseException as exc:
            results[name] = exc
        finally:
            if name == "behind":
                behind_done.set()

    first = threading.Thread(target=wait, args=("first", "t1", None))
    first.start()
    wait_for(lambda: waiting_rows(store) == 1)
    behind = threading.Thread(target=wait, args=("behind", "t2", recheck))
    behind.start()
    wait_for(lambda: waiting_rows(store) == 2)
    held.finish(CallResult.ANSWERED)
    behind.join(timeout=20)
    first.join(timeout=20)
    assert isinstance(results["behind"], RuntimeError)
    permit = results["first"]
    assert isinstance(permit, Permit)
    rows = {row.call_id: row for row in calls(store)}
    # The slot admitted for the caller that had left is finished, never sent; the first caller
    # holds the only one in flight.
    assert handed
    assert rows[handed[0]].finished_epoch is not None
    assert rows[handed[0]].dispatched_epoch is None
    assert [call_id for call_id, row in rows.items() if row.finished_epoch is None] == [permit.call_id]
    permit.finish(CallResult.ANSWERED)
    assert waiting_rows(store) == 0
