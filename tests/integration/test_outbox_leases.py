"""Several outbox relays on one database (several worker processes) never send one message at the
same time: each delivery's lease is renewed right before it is sent, and only its owner settles it.

The relays here run on a migrated database without a service (a webhook delivery needs nothing
else), with a lease of two seconds, in front of a webhook receiver that takes 0.3 s per message and
counts deliveries of the same message that overlap. A batch of twelve takes a relay 3.6 s, longer
than its first lease, so the other relays keep finding leases that ran out. (A lease shorter than
the time a starved thread may take between its renewal and the receiver's answer would let another
relay take the delivery over while it is still being sent, which the relay does on purpose when a
lease runs out; two seconds leaves that margin on a busy machine.)
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fulfill.domain.outbox import ENGINE_DESTINATIONS
from fulfill.domain.records import Delivery
from fulfill.engine.outbox_relay import OutboxRelay
from fulfill.engine.runtime import Runtime
from fulfill.store import outbox
from tests.support.harness import make_settings
from tests.support.http_doubles import HookServer, wait_for
from tests.support.relay_runtime import enqueue_signals, relay_runtime


class OverlapSink(HookServer):
    """A slow webhook receiver that counts deliveries per message and overlapping ones."""

    def __init__(self, seconds: float) -> None:
        self.received: Counter[str] = Counter()
        self.overlaps: list[str] = []
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._seconds = seconds
        super().__init__(self._answer)

    def _answer(self, headers: dict[str, str], _body: bytes) -> int:
        event_id = headers["X-Fulfill-Event-Id"]
        with self._lock:
            self.received[event_id] += 1
            self._in_flight[event_id] += 1
            if self._in_flight[event_id] > 1:
                self.overlaps.append(event_id)
        time.sleep(self._seconds)
        with self._lock:
            self._in_flight[event_id] -= 1
        return 204


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = make_settings(tmp_path)
    with relay_runtime(settings) as runtime:
        yield runtime


def test_concurrent_relays_never_deliver_one_message_at_the_same_time(runtime: Runtime) -> None:
    sink = OverlapSink(seconds=0.3)
    messages = [f"msg-{index:02d}" for index in range(12)]
    enqueue_signals(runtime, sink.url, *messages)
    relays = [OutboxRelay(runtime) for _ in range(3)]
    for relay in relays:
        relay.lease_seconds = 2.0
    done = threading.Event()

    def run(relay: OutboxRelay) -> None:
        while not done.is_set():
            if not relay.deliver_due():
                time.sleep(0.02)

    threads = [threading.Thread(target=run, args=(relay,), daemon=True) for relay in relays]
    for thread in threads:
        thread.start()
    try:

        def all_delivered() -> bool:
            with runtime.store.read() as uow:
                return all(
                    row["status"] == outbox.DELIVERED
                    for message_id in messages
                    for row in uow.outbox.deliveries_for(message_id)
                )

        wait_for(all_delivered, timeout=60)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=10)
        sink.close()
    assert sink.overlaps == []
    assert set(sink.received) == set(messages)  # every message arrived (at least once)
    with runtime.store.read() as uow:
        for message_id in messages:
            [row] = uow.outbox.deliveries_for(message_id)
            assert (row["lease_owner"], row["lease_until_epoch"]) == (None, None)
            assert row["attempts"] == sink.received[message_id]


@pytest.mark.parametrize("first_answer", [204, 500], ids=["accepted", "refused"])
def test_a_try_whose_lease_ran_out_is_counted_though_another_relay_owns_the_delivery(
    runtime: Runtime, first_answer: int
) -> None:
    """A relay stalled between its renewal and its settlement (a starved thread, a database lock
    held long) finds its lease taken over: it settles nothing, but the destination saw its try, so
    the delivery's attempts count it beside the try of the relay that delivers it again."""
    relay = OutboxRelay(runtime)
    taken_over: list[Delivery] = []

    def answer(_headers: dict[str, str], _body: bytes) -> int:
        if taken_over:
            return 204
        # While the first relay waits for this answer, its lease runs out and another takes it.
        with runtime.store.write() as uow:
            taken_over.extend(
                uow.outbox.claim_due(
                    now_epoch=runtime.clock.now() + relay.lease_seconds + 1,
                    lease_seconds=relay.lease_seconds,
                    owner="relay-b",
                )
            )
        return first_answer

    sink = HookServer(answer)
    try:
        enqueue_signals(runtime, sink.url, "stalled")
        [claimed] = relay.claim_for(sink.url, owner="relay-a")
        assert relay.send(claimed, owner="relay-a") is (first_answer == 204)
        [delivery] = taken_over
        with runtime.store.read() as uow:
            [row] = uow.outbox.deliveries_for("stalled")
        # The first try is counted; the lease, the status and the next try stay relay-b's.
        assert (row["status"], row["attempts"], row["lease_owner"]) == (outbox.PENDING, 1, "relay-b")
        assert row["last_error"] is None
        assert relay.send(delivery, owner="relay-b") is True
    finally:
        sink.close()
    with runtime.store.read() as uow:
        [row] = uow.outbox.deliveries_for("stalled")
    assert (row["status"], row["attempts"], row["lease_owner"]) == (outbox.DELIVERED, 2, None)


def test_the_lanes_of_several_relays_send_each_message_once(runtime: Runtime) -> None:
    """Each relay's lane for one destination runs several threads; across three relays (three
    worker processes) every message is still sent once, never twice at the same time."""
    runtime.settings.outbox_destination_concurrency = 3
    sink = OverlapSink(seconds=0.3)
    messages = [f"lane-{index:02d}" for index in range(12)]
    enqueue_signals(runtime, sink.url, *messages)
    relays = [OutboxRelay(runtime) for _ in range(3)]
    for relay in relays:
        relay.start()
    try:

        def all_delivered() -> bool:
            with runtime.store.read() as uow:
                return all(
                    row["status"] == outbox.DELIVERED
                    for message_id in messages
                    for row in uow.outbox.deliveries_for(message_id)
                )

        wait_for(all_delivered, timeout=60)
    finally:
        for relay in relays:
            relay.stop()
        sink.close()
    assert sink.overlaps == []
    assert sink.received == Counter({message_id: 1 for message_id in messages})


def test_an_engine_message_that_cannot_start_ends_dead_letter(runtime: Runtime) -> None:
    """A compensation start that fails on every try (here: a payload no workflow accepts) is given
    up after FULFILL_OUTBOX_MAX_ATTEMPTS, on the engine's lane, and can be put back in line."""
    runtime.settings.outbox_max_attempts = 2
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
    relay = OutboxRelay(runtime)

    def dead() -> list[outbox.DeadLetter]:
        relay.deliver_due(only=ENGINE_DESTINATIONS)
        with runtime.store.read() as uow:
            return uow.outbox.dead_letters()

    [letter] = wait_for(dead)
    assert (letter.message_id, letter.destination, letter.attempts) == ("compensate:poison", "engine", 2)
    assert letter.last_error == "start failed: ValidationError"
    with runtime.store.write() as uow:
        assert uow.outbox.redeliver(now_epoch=runtime.clock.now(), tenant_id="t2") == []
        [moved] = uow.outbox.redeliver(now_epoch=runtime.clock.now(), tenant_id="t1")
        assert moved.message_id == "compensate:poison"
        [row] = uow.outbox.deliveries_for("compensate:poison")
    assert (row["status"], row["attempts"], row["dead_lettered_at"]) == (outbox.PENDING, 0, None)
