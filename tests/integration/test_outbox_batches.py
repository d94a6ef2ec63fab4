"""What the relay writes: a lane claims a batch of its destination's deliveries in one transaction
and records each result in one more; the rest of a batch goes back in line at once when its lane
must rest; a lease older than its fresh share is renewed (and a lost one never sent); an idle
relay only reads.

The relays run on a migrated database without a service, in front of webhook receivers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from fulfill.engine import outbox_relay
from fulfill.engine.outbox_relay import FRESH_LEASE_FRACTION, LANE_BATCH, SLOW_SEND_SECONDS, OutboxRelay
from fulfill.engine.runtime import Runtime
from fulfill.ports.store import UnitOfWork
from fulfill.store import outbox
from fulfill.store.sql_store import SqlStore
from tests.support.harness import make_settings
from tests.support.http_doubles import HookServer, wait_for
from tests.support.relay_runtime import enqueue_signals, relay_runtime


class CountingStore:
    """The store, with its read and write transactions counted."""

    def __init__(self, inner: SqlStore) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.reads = 0
        self.writes = 0

    def read(self) -> AbstractContextManager[UnitOfWork]:
        with self._lock:
            self.reads += 1
        return self._inner.read()

    def write(self) -> AbstractContextManager[UnitOfWork]:
        with self._lock:
            self.writes += 1
        return self._inner.write()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Receiver(HookServer):
    """A webhook receiver: answers 500 once to each message named in ``refuse``, 204 to the rest
    after ``delay`` seconds; keeps the accepted messages in their order and the most in flight."""

    def __init__(self, *, refuse: set[str] | None = None, delay: float = 0.0) -> None:
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._refuse = set(refuse or ())
        self._lock = threading.Lock()
        self._delay = delay
        super().__init__(self._answer)

    def _answer(self, headers: dict[str, str], _body: bytes) -> int:
        event_id = headers["X-Fulfill-Event-Id"]
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        time.sleep(self._delay)
        with self._lock:
            self._in_flight -= 1
            refused = event_id in self._refuse
            self._refuse.discard(event_id)
            (self.refused if refused else self.accepted).append(event_id)
        return 500 if refused else 204


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = make_settings(
        tmp_path, outbox_poll_seconds=0.05, outbox_destination_concurrency=1, outbox_backoff_base_seconds=60
    )
    with relay_runtime(settings, wrap=CountingStore) as runtime:
        yield runtime


def _enqueue(runtime: Runtime, messages: list[str], destination: str) -> None:
    """One message each, due one after the other (the claim's order) and all due now."""
    enqueue_signals(runtime, destination, *messages, staggered=True)


def _rows(runtime: Runtime, messages: list[str]) -> dict[str, dict[str, Any]]:
    with runtime.store.read() as uow:
        return {message_id: uow.outbox.deliveries_for(message_id)[0] for message_id in messages}


def _delivered(runtime: Runtime, messages: list[str]) -> bool:
    return all(row["status"] == outbox.DELIVERED for row in _rows(runtime, messages).values())


def _deliver(runtime: Runtime, relay: OutboxRelay, receiver: Receiver, messages: list[str]) -> None:
    """Run ``relay`` until every one of ``messages`` is delivered, then stop it and ``receiver``."""
    relay.start()
    try:
        wait_for(lambda: _delivered(runtime, messages))
    finally:
        relay.stop()
        receiver.close()


def test_a_lane_claims_its_batch_in_one_transaction_and_records_each_delivery(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every answer counts as fast here, however busy the machine running the test: what is
    # counted below is the batch a lane claims once its destination answers fast.
    monkeypatch.setattr(outbox_relay, "SLOW_SEND_SECONDS", 30.0)
    # Nor is a lease taken by this batch's claim renewed before its send, however long the
    # deliveries before it took (a lease older than this fraction of its length is renewed).
    monkeypatch.setattr(outbox_relay, "FRESH_LEASE_FRACTION", 0.5)
    receiver = Receiver()
    messages = [f"batch-{index}" for index in range(7)]
    assert len(messages) - 1 <= LANE_BATCH
    _enqueue(runtime, messages, receiver.url)
    relay = OutboxRelay(runtime)
    claims: list[int] = []  # how many deliveries each of the lane's claims took
    claim_for = relay.claim_for

    def counted_claim(destination: str, *, owner: str, limit: int = 1) -> list[Any]:
        claimed = claim_for(destination, owner=owner, limit=limit)
        claims.append(len(claimed))
        return claimed

    monkeypatch.setattr(relay, "claim_for", counted_claim)
    store: Any = runtime.store
    writes_before = store.writes
    _deliver(runtime, relay, receiver, messages)
    assert receiver.accepted == messages  # each once, in the order they were due
    assert all(row["attempts"] == 1 for row in _rows(runtime, messages).values())
    # The first alone (the destination's first answer), then the six others in one claim. A
    # dispatcher pass that read part of the batch as due while it was being sent wakes the lane
    # for one more claim, which finds nothing (on a slow machine a second pass may have read it
    # too); the lane does not go on claiming while nothing is due.
    taken = [count for count in claims if count]
    assert taken == [1, len(messages) - 1]
    assert len(claims) - len(taken) <= 2
    # One write per claim and one result each; no renewal of a lease just taken.
    assert store.writes - writes_before == len(claims) + len(messages)


def test_a_resting_lane_gives_the_rest_of_its_batch_back_for_another_relay(runtime: Runtime) -> None:
    receiver = Receiver(refuse={"rest-0"})
    first = OutboxRelay(runtime)
    first.start()
    try:
        # The destination answers fast: its lane claims batches from now on.
        _enqueue(runtime, ["warm-up"], receiver.url)
        wait_for(lambda: _delivered(runtime, ["warm-up"]))
        messages = [f"rest-{index}" for index in range(4)]
        _enqueue(runtime, messages, receiver.url)
        # The first of the batch is refused: the lane rests (a minute) and gives the others back.
        wait_for(lambda: receiver.refused == ["rest-0"])

        def given_back() -> dict[str, dict[str, Any]] | None:
            # The refusal reaches the receiver before the lane records it: wait for both.
            rows = _rows(runtime, messages)
            recorded = rows["rest-0"]["attempts"] == 1
            return rows if recorded and all(rows[m]["lease_owner"] is None for m in messages[1:]) else None

        rows = wait_for(given_back)
        assert rows["rest-0"]["attempts"] == 1
        assert rows["rest-0"]["status"] == outbox.PENDING
        assert [rows[m]["attempts"] for m in messages[1:]] == [0, 0, 0]
        # Another relay (another worker process) delivers them meanwhile.
        second = OutboxRelay(runtime)
        second.start()
        try:
            wait_for(lambda: _delivered(runtime, messages[1:]))
        finally:
            second.stop()
    finally:
        first.stop()
        receiver.close()
    assert receiver.accepted == ["warm-up", *messages[1:]]


def test_a_slow_destinations_deliveries_spread_over_the_lanes_threads(runtime: Runtime) -> None:
    """Batches are for destinations that answer fast: a slow one is sent one delivery per thread
    at a time, so the lane's threads all have one in flight, as before batches."""
    runtime.settings.outbox_destination_concurrency = 2
    receiver = Receiver(delay=2 * SLOW_SEND_SECONDS)
    messages = [f"slow-{index}" for index in range(6)]
    _enqueue(runtime, messages, receiver.url)
    relay = OutboxRelay(runtime)
    _deliver(runtime, relay, receiver, messages)
    assert sorted(receiver.accepted) == messages
    assert receiver.max_in_flight == 2


def test_a_lease_past_its_fresh_share_is_renewed_before_the_send_and_a_lost_one_is_not_sent(
    runtime: Runtime,
) -> None:
    receiver = Receiver()
    _enqueue(runtime, ["stale"], receiver.url)
    relay, other = OutboxRelay(runtime), OutboxRelay(runtime)
    relay.lease_seconds = 60.0
    [delivery] = relay.claim_for(receiver.url, owner="first")
    # Its lease ran out while it waited behind slow deliveries, and another relay took it over.
    with runtime.store.write() as uow:
        [taken] = uow.outbox.claim_due(
            now_epoch=runtime.clock.now() + 61, lease_seconds=60, owner="second", only=(receiver.url,)
        )
    assert taken.message_id == "stale"
    # Claimed longer ago than the fresh share of its lease (1 s of 60): renewed before the send.
    long_ago = time.monotonic() - relay.lease_seconds * FRESH_LEASE_FRACTION - 1
    try:  # neither relay is started: the test drives them
        assert relay.send(delivery, owner="first", claimed_at=long_ago) is None
        assert receiver.accepted == []
        # Its rightful owner sends it.
        assert other.send(taken, owner="second") is True
    finally:
        receiver.close()
    assert receiver.accepted == ["stale"]


def test_an_idle_relay_only_reads_and_still_claims_what_falls_due(runtime: Runtime) -> None:
    store: Any = runtime.store
    relay = OutboxRelay(runtime)
    writes_before, reads_before = store.writes, store.reads
    relay.start()
    try:
        # Several passes of the engine's lane and of the dispatcher, every 0.05 s.
        wait_for(lambda: store.reads - reads_before >= 12)
        assert store.writes == writes_before
        # An engine message that falls due is claimed (and, as no workflow accepts this payload,
        # refused and put back with its backoff).
        with runtime.store.write() as uow:
            uow.outbox.enqueue(
                message_id="compensate:poison",
                topic="COMPENSATION",
                tenant_id="t1",
                payload={"not": "a compensation request"},
                destinations=["engine"],
                now=runtime.clock.now_iso(),
                now_epoch=runtime.clock.now(),
            )
        wait_for(lambda: _rows(runtime, ["compensate:poison"])["compensate:poison"]["attempts"] == 1)
    finally:
        relay.stop()
    row = _rows(runtime, ["compensate:poison"])["compensate:poison"]
    assert (row["status"], row["last_error"]) == (outbox.PENDING, "start failed: ValidationError")


def test_leases_that_cannot_be_given_back_run_out_and_another_relay_delivers_them(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is gone as a lane gives its unsent batch back: the give-back is logged, not
    raised, and the leases stay until they run out; then any relay delivers them, each once."""
    receiver = Receiver()
    messages = ["kept-0", "kept-1"]
    _enqueue(runtime, messages, receiver.url)
    stuck = OutboxRelay(runtime)
    stuck.lease_seconds = 1.0
    assert len(stuck.claim_for(receiver.url, owner="stuck-lane", limit=2)) == 2

    def database_gone() -> AbstractContextManager[UnitOfWork]:
        raise OperationalError("BEGIN", {}, Exception("the database is gone"))

    store: Any = runtime.store
    monkeypatch.setattr(store, "write", database_gone)
    stuck.release("stuck-lane")
    monkeypatch.undo()
    rows = _rows(runtime, messages)
    assert [rows[m]["lease_owner"] for m in messages] == ["stuck-lane", "stuck-lane"]
    other = OutboxRelay(runtime)
    _deliver(runtime, other, receiver, messages)
    assert receiver.accepted == messages
