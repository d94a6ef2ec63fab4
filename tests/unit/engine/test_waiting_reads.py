"""The reads shared by the calls waiting at a gate (``engine/waiting_reads.py``): one read of the
store answers every waiting call, each call gets its own tenant's switches and its own intent,
nothing older than ``max_age`` is answered, and a failed read leaves nobody with a stale answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fulfill.domain.execution import RecordedOutcome
from fulfill.domain.models import ApprovalStatus, ExecutionStatus, TenantExecutionConfig
from fulfill.engine.waiting_reads import SharedWaitingReads
from fulfill.ports.store import StoreUnavailable
from tests.support.memory_steps import World, run_chain
from tests.support.memory_store import MemoryStore, MemoryUnitOfWork
from tests.unit.factories import make_intent

NOW = "2026-12-05T00:00:00.000Z"


class Ticking:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryStore):
    """A memory store that counts its reads and can hold one open until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.hold: threading.Event | None = None
        self.holding = threading.Event()

    @contextmanager
    def read(self) -> Iterator[MemoryUnitOfWork]:
        self.reads += 1
        if self.hold is not None:
            self.holding.set()
            self.hold.wait(5)
        with super().read() as uow:
            yield uow


def _intents(store: MemoryStore, *keys: tuple[str, str]) -> None:
    with store.write() as uow:
        for tenant_id, intent_id in keys:
            intent = make_intent(tenant_id=tenant_id, action_intent_id=intent_id)
            assert uow.intents.insert_intent(intent, "hash")


def _cancel(store: MemoryStore, tenant_id: str, intent_id: str) -> None:
    with store.write() as uow:
        intent = uow.intents.get_intent(tenant_id, intent_id)
        assert intent is not None
        assert uow.intents.transition_approval(intent, to_status=ApprovalStatus.CANCELLED, now=NOW)


def _stop(store: MemoryStore, tenant_id: str) -> None:
    with store.write() as uow:
        uow.killswitches.put_tenant(
            TenantExecutionConfig(tenant_id=tenant_id, execution_enabled=False), now=NOW
        )


def _answer(shared: SharedWaitingReads, tenant_id: str, intent_id: str) -> tuple[Any, Any]:
    answer = shared.read(tenant_id, intent_id)
    assert answer is not None
    return answer


def test_each_call_gets_its_own_tenants_switches_and_its_own_intent() -> None:
    store = CountingStore()
    _intents(store, ("t1", "ai_1"), ("t2", "ai_2"))
    _stop(store, "t2")
    clock = Ticking()
    shared = SharedWaitingReads(store, monotonic=clock)
    shared.read("t1", "ai_1")
    shared.read("t2", "ai_2")
    shared.read("t2", "ai_1")
    shared.read("t1", "ai_missing")
    clock.now += 1.0
    _cancel(store, "t2", "ai_2")
    switches_1, status_1 = _answer(shared, "t1", "ai_1")  # one read for the four
    switches_2, status_2 = _answer(shared, "t2", "ai_2")
    assert store.reads == 2
    assert status_1 is ApprovalStatus.APPROVED
    assert status_2 is ApprovalStatus.CANCELLED
    assert switches_1 is not None
    assert switches_1[1].execution_enabled
    assert switches_2 is not None
    assert not switches_2[1].execution_enabled
    # Another tenant's intent is not found by its id alone.
    assert _answer(shared, "t2", "ai_1")[1] is None
    assert _answer(shared, "t1", "ai_missing")[1] is None


def test_calls_that_ask_within_max_age_share_one_read_and_a_later_ask_reads_again() -> None:
    store = CountingStore()
    _intents(store, ("t1", "ai_1"), ("t1", "ai_2"))
    clock = Ticking()
    shared = SharedWaitingReads(store, max_age=0.5, monotonic=clock)
    assert shared.read("t1", "ai_1") is not None
    # Not in the read of a moment ago: this call reads its own (None), and is in the next one.
    assert shared.read("t1", "ai_2") is None
    assert store.reads == 1
    clock.now += 0.6
    _answer(shared, "t1", "ai_2")
    assert store.reads == 2
    clock.now += 0.4
    for _ in range(10):
        _answer(shared, "t1", "ai_1")
        _answer(shared, "t1", "ai_2")
    assert store.reads == 2
    _stop(store, "t1")
    switches, _ = _answer(shared, "t1", "ai_1")  # 0.4 s old: the same read, from before the stop
    assert switches is not None
    assert switches[1].execution_enabled
    clock.now += 0.2
    switches, _ = _answer(shared, "t1", "ai_1")
    assert switches is not None
    assert not switches[1].execution_enabled
    assert store.reads == 3
    _answer(shared, "t1", "ai_2")
    assert store.reads == 3  # the new read included every call still waiting


def test_many_calls_asking_at_once_wait_for_one_read() -> None:
    store = CountingStore()
    keys = [("t1", f"ai_{index}") for index in range(20)]
    _intents(store, *keys)
    shared = SharedWaitingReads(store, monotonic=Ticking())
    for key in keys:  # every call has asked once: each is in the next read
        shared.read(*key)
    reads_before = store.reads
    shared._last = None  # the next ask reads again
    store.hold = threading.Event()
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(shared.read(*keys[0])))
    first.start()
    assert store.holding.wait(5)
    others = [threading.Thread(target=lambda key=key: answers.append(shared.read(*key))) for key in keys[1:]]
    for thread in others:
        thread.start()
    store.hold.set()
    for thread in [first, *others]:
        thread.join(5)
    assert len(answers) == 20
    assert store.reads == reads_before + 1
    assert len(answers) == 20
    assert {status for _, status in answers} == {ApprovalStatus.APPROVED}


def test_a_failed_read_answers_nobody_and_the_next_ask_reads_again() -> None:
    store = CountingStore()
    _intents(store, ("t1", "ai_1"))
    clock = Ticking()
    shared = SharedWaitingReads(store, max_age=0.5, monotonic=clock)
    shared.read("t1", "ai_1")
    clock.now += 1.0
    _stop(store, "t1")
    store.fail_next()
    with pytest.raises(StoreUnavailable):
        shared.read("t1", "ai_1")
    switches, _ = _answer(shared, "t1", "ai_1")  # not the stale read from before the outage
    assert switches is not None
    assert not switches[1].execution_enabled


def test_a_call_that_stopped_asking_is_read_no_more() -> None:
    store = CountingStore()
    _intents(store, ("t1", "ai_1"), ("t2", "ai_2"))
    clock = Ticking()
    shared = SharedWaitingReads(store, max_age=0.5, monotonic=clock)
    shared.read("t1", "ai_1")
    shared.read("t2", "ai_2")
    clock.now += 1.0
    _answer(shared, "t2", "ai_2")
    assert shared._last is not None
    assert shared._last.keys == frozenset({("t1", "ai_1"), ("t2", "ai_2")})
    for _ in range(4):  # ai_2 stopped waiting; ai_1 asks once a second
        clock.now += 1.0
        shared.read("t1", "ai_1")
    assert shared._last is not None
    assert shared._last.keys == frozenset({("t1", "ai_1")})
    assert set(shared._last.switches) == {"t1"}


# --- the steps: a call waiting at its gate ------------------------------------------------------


def _run_waiting(world: World) -> RecordedOutcome:
    world.gate.waits = True
    intent = make_intent(action_intent_id="ai_1")
    with world.store.write() as uow:
        assert uow.intents.insert_intent(intent, "hash")
    recorded = run_chain(world.deps, world.accept(intent))
    assert isinstance(recorded, RecordedOutcome)
    return recorded


def test_a_switch_pulled_while_waiting_ends_the_wait_through_the_shared_read(world: World) -> None:
    world.waiting_reads = shared = SharedWaitingReads(world.store)
    world.gate.on_wait = lambda: _stop(world.store, "t1")
    recorded = _run_waiting(world)
    assert (recorded.outcome.status, recorded.outcome.error_code) == (
        ExecutionStatus.CANCELLED,
        "KILL_SWITCH_ENABLED",
    )
    assert world.gate.admitted == 0  # stopped while it waited, not after
    assert shared.reads == 1
    assert world.gateway.calls == []


def test_a_cancellation_while_waiting_ends_the_wait_through_the_shared_read(world: World) -> None:
    world.waiting_reads = SharedWaitingReads(world.store)

    world.gate.on_wait = lambda: _cancel(world.store, "t1", "ai_1")
    recorded = _run_waiting(world)
    assert (recorded.outcome.status, recorded.outcome.error_code) == (
        ExecutionStatus.CANCELLED,
        "INTENT_CANCELLED",
    )
    assert world.gate.admitted == 0
    assert world.gateway.calls == []


class Broken:
    """Shared reads that fail for a reason that is not an outage (a row that cannot be parsed)."""

    def read(self, tenant_id: str, action_intent_id: str) -> Any:
        raise ValueError("a row that cannot be parsed")


def test_shared_reads_that_fail_leave_each_waiting_call_to_read_its_own(world: World) -> None:
    world.waiting_reads = Broken()
    world.gate.on_wait = lambda: _stop(world.store, "t1")
    recorded = _run_waiting(world)
    assert recorded.outcome.error_code == "KILL_SWITCH_ENABLED"
    assert world.gate.admitted == 0


def test_a_waiting_call_whose_reads_are_shared_still_calls_when_nothing_stopped(world: World) -> None:
    world.waiting_reads = SharedWaitingReads(world.store)
    assert _run_waiting(world).outcome.status is ExecutionStatus.SUCCEEDED
    assert len(world.gateway.calls) == 1


def test_a_call_not_in_the_shared_read_yet_is_checked_by_its_own_read(world: World) -> None:
    """The first time it asks, a call joining the line is answered None: it reads its own, so a
    stop pulled before then stops it all the same."""
    world.waiting_reads = shared = SharedWaitingReads(world.store, monotonic=Ticking())  # time stands still
    _intents(world.store, ("t1", "ai_other"))
    assert shared.read("t1", "ai_other") is not None  # a read of a moment ago, without ai_1
    world.gate.on_wait = lambda: _stop(world.store, "t1")
    recorded = _run_waiting(world)
    assert recorded.outcome.error_code == "KILL_SWITCH_ENABLED"
    assert world.gate.admitted == 0
    assert shared.reads == 1
