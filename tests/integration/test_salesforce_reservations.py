"""Reserve → call → commit on a real store: what each outcome of a call leaves for the next one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fulfill.clock import SystemClock
from fulfill.connectors.salesforce.reservations import WriteKey, WriteReservations
from fulfill.credentials.oauth import ConnectorFailure
from fulfill.domain.errors import ErrorClass
from fulfill.domain.external_writes import ReservationKind, WriteStatus, Written
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from tests.support import postgres
from tests.support.harness import fresh_database_url

KEY = WriteKey("t1", "acc-1", "k" * 64)
TOOL = "crm.create_task"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = fresh_database_url(tmp_path)
    database = Database(url)
    upgrade_to_head(database)
    try:
        yield database
    finally:
        database.dispose()
        if postgres.is_postgres_url(url):
            postgres.drop_database(url)


@pytest.fixture
def clock() -> SystemClock:
    return SystemClock()


@pytest.fixture
def reservations(db: Database, clock: SystemClock) -> WriteReservations:
    return WriteReservations(SqlStore(db), clock, connector="salesforce", request_seconds=0.2)


def test_a_committed_write_is_found_by_the_next_call(reservations: WriteReservations) -> None:
    first = reservations.reserve(TOOL, KEY, "ai_1")
    assert first.kind is ReservationKind.FRESH
    assert first.record.status is WriteStatus.PENDING
    committed = first.commit("Task", "00T000000000001", "https://sf.example/00T000000000001")
    assert first.kind is ReservationKind.COMMITTED
    assert (committed.status, committed.object_id) == (WriteStatus.COMMITTED, "00T000000000001")

    again = reservations.reserve(TOOL, KEY, "ai_1")
    assert again.kind is ReservationKind.COMMITTED
    assert again.record.object_url == "https://sf.example/00T000000000001"


def test_a_live_lease_makes_the_next_call_wait_then_give_up(reservations: WriteReservations) -> None:
    reservations.reserve(TOOL, KEY, "ai_1")
    with pytest.raises(ConnectorFailure) as failure:
        reservations.reserve(TOOL, KEY, "ai_1")
    assert (failure.value.error_class, failure.value.code) == (ErrorClass.DOWNSTREAM, "WRITE_IN_PROGRESS")


def test_a_key_used_by_another_tool_is_a_collision(reservations: WriteReservations) -> None:
    reservations.reserve(TOOL, KEY, "ai_1").commit("Task", "00T000000000001", None)
    with pytest.raises(ConnectorFailure) as failure:
        reservations.reserve("crm.update_field", KEY, "ai_1")
    assert (failure.value.error_class, failure.value.code) == (ErrorClass.VALIDATION, "IDEMPOTENCY_COLLISION")


def test_a_failure_that_wrote_nothing_drops_a_fresh_reservation(reservations: WriteReservations) -> None:
    reservation = reservations.reserve(TOOL, KEY, "ai_1")
    with pytest.raises(ConnectorFailure), reservation.guard():
        raise ConnectorFailure(ErrorClass.VALIDATION, "SALESFORCE_REQUIRED_FIELD_MISSING", "refused")
    assert reservations.reserve(TOOL, KEY, "ai_1").kind is ReservationKind.FRESH


@pytest.mark.parametrize(
    "error",
    [
        ConnectorFailure(ErrorClass.TIMEOUT, "SALESFORCE_TIMEOUT", "no answer", written=Written.UNKNOWN),
        RuntimeError("a bug after the request was sent"),
    ],
)
def test_a_failure_that_may_have_written_ends_the_lease_and_the_next_call_takes_over(
    reservations: WriteReservations, error: Exception
) -> None:
    reservation = reservations.reserve(TOOL, KEY, "ai_1")
    with pytest.raises(type(error)), reservation.guard():
        raise error
    taker = reservations.reserve(TOOL, KEY, "ai_1")
    assert taker.kind is ReservationKind.TAKEN_OVER  # it must look before it writes again


def test_a_call_whose_reservation_was_taken_over_stops_before_it_writes(
    reservations: WriteReservations, clock: SystemClock
) -> None:
    slow = reservations.reserve(TOOL, KEY, "ai_1")
    clock.advance(60)  # the slow call's lease runs out
    taker = reservations.reserve(TOOL, KEY, "ai_1")
    assert taker.kind is ReservationKind.TAKEN_OVER
    with pytest.raises(ConnectorFailure) as failure:
        slow.ensure_lease()
    assert failure.value.code == "WRITE_IN_PROGRESS"
    assert failure.value.written == Written.UNKNOWN
    with pytest.raises(ConnectorFailure):
        slow.record_values({"Name": "before"}, {"Name": "after"})
    taker.ensure_lease()  # the taker's own lease is renewed, not refused


def test_an_update_records_its_values_once(reservations: WriteReservations) -> None:
    reservation = reservations.reserve("crm.update_field", KEY, "ai_1")
    reservation.record_values({"Name": "before"}, {"Name": "after"})
    with pytest.raises(ConnectorFailure):  # never overwritten: the first values are the ones to restore
        reservation.record_values({"Name": "after"}, {"Name": "again"})
    write = reservation.commit("Account", "001000000000001", None)
    assert (write.previous_values, write.written_values) == ({"Name": "before"}, {"Name": "after"})


def test_compensation_finds_the_committed_write_and_marks_it_once(reservations: WriteReservations) -> None:
    reservations.reserve(TOOL, KEY, "ai_1").commit("Task", "00T000000000001", None)
    write = reservations.committed_write_of(
        "t1", "acc-1", action_intent_id="ai_1", tool_name=TOOL, object_id="00T000000000001"
    )
    assert write is not None
    assert write.compensated_at is None
    reservations.mark_compensated(write)
    again = reservations.committed_write_of(
        "t1", "acc-1", action_intent_id="ai_1", tool_name=TOOL, object_id="00T000000000001"
    )
    assert again is not None
    assert again.compensated_at is not None
    other = reservations.committed_write_of(
        "t1", "acc-1", action_intent_id="ai_2", tool_name=TOOL, object_id="00T000000000001"
    )
    assert other is None
