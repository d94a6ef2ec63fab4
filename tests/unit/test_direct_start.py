"""DirectStarts: a worker's free slots, counted together with its queue's running workflows."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from fulfill.engine.direct_start import DirectStarts

QUEUE = "q"


class _Entry:
    def __init__(self, active: _Active, key: str, queue: str | None) -> None:
        self._active, self._key, self._queue = active, key, queue

    def release(self) -> None:
        self._active.rows.remove((self._key, self._queue))


class _Active:
    """DBOS's active set in miniature: (workflow id, queue name) per running execution."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str | None]] = []

    def add(self, key: str, queue_name: str | None = None) -> _Entry:
        self.rows.append((key, queue_name))
        return _Entry(self, key, queue_name)

    def count_for_queue(self, queue_name: str) -> int:
        return sum(1 for _key, queue in self.rows if queue == queue_name)


def _slots(capacity: int) -> tuple[DirectStarts, _Active]:
    """Slots whose queue is always empty, looked at on every take."""
    active = _Active()
    slots = DirectStarts(
        capacity, QUEUE, active=lambda: active, queue_waiting=lambda _q: False, recheck_seconds=0
    )
    return slots, active


def test_a_slot_is_taken_while_the_queue_and_the_direct_starts_run_fewer_than_the_capacity() -> None:
    slots, active = _slots(3)
    active.add("dequeued", QUEUE)  # one the queue started
    active.add("elsewhere", "other-queue")  # not this queue's: not counted
    assert slots.take("a")
    assert slots.take("b")
    assert not slots.take("c")  # 1 dequeued + 2 direct = 3
    assert active.count_for_queue(QUEUE) == 3  # the queue's dispatch sees the direct ones
    slots.release("a")
    assert slots.take("c")


def test_one_workflow_id_takes_one_slot_and_release_is_idempotent() -> None:
    slots, active = _slots(5)
    assert slots.take("a")
    assert not slots.take("a")
    slots.release("a")
    slots.release("a")
    slots.release("never-taken")
    assert slots.held() == 0
    assert active.rows == []


def test_a_start_that_ran_nothing_hands_its_slot_back_at_once() -> None:
    slots, active = _slots(1)
    assert slots.take("a")
    slots.started("a", object())  # a handle without a future: the workflow already existed
    assert slots.held() == 0
    assert active.rows == []


class _Handle:
    def __init__(self) -> None:
        self.future: Future[str] = Future()


def test_a_started_workflow_holds_its_slot_until_it_ends() -> None:
    slots, _active = _slots(1)
    assert slots.take("a")
    handle = _Handle()
    slots.started("a", handle)
    assert slots.held() == 1
    assert not slots.take("b")
    handle.future.set_result("SUCCEEDED")
    assert slots.held() == 0
    assert slots.take("b")


def test_a_workflow_that_failed_hands_its_slot_back_too() -> None:
    slots, _active = _slots(1)
    assert slots.take("a")
    handle = _Handle()
    slots.started("a", handle)
    handle.future.set_exception(RuntimeError("the workflow raised"))
    assert slots.held() == 0


class _FutureHandle:
    def __init__(self, future: Future[None] | None) -> None:
        self.future = future


def test_a_started_workflow_holds_its_slot_until_it_ends_and_one_that_existed_none() -> None:
    slots = DirectStarts(2, QUEUE, active=_Active)
    running: Future[None] = Future()
    assert slots.take("ran")
    slots.started("ran", _FutureHandle(running))
    assert slots.held() == 1
    assert slots.take("existed")
    slots.started("existed", _FutureHandle(None))  # the workflow existed: nothing ran here
    assert slots.held() == 1
    running.set_result(None)
    assert slots.held() == 0


class _Queue:
    """The execution queue's waiting executions as a look at it sees them, and the looks made."""

    def __init__(self) -> None:
        self.waiting = 0
        self.looks = 0
        self.fails = False
        self.during_look: Callable[[], None] = lambda: None

    def __call__(self, queue_name: str) -> bool:
        assert queue_name == QUEUE
        self.looks += 1
        self.during_look()
        if self.fails:
            raise ConnectionError("the system database is gone")
        return self.waiting > 0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _behind(capacity: int) -> tuple[DirectStarts, _Queue, _Clock]:
    queue, clock, active = _Queue(), _Clock(), _Active()
    slots = DirectStarts(
        capacity, QUEUE, active=lambda: active, queue_waiting=queue, recheck_seconds=0.05, clock=clock
    )
    return slots, queue, clock


def test_after_an_overflow_a_freed_slot_goes_to_the_queue_until_it_is_empty() -> None:
    slots, queue, clock = _behind(1)
    assert slots.take("a")
    assert not slots.take("b")  # full: b goes to the queue
    queue.waiting = 1
    slots.release("a")
    # A slot is free, but b waits on the queue: c must not overtake it.
    assert not slots.take("c")
    assert queue.looks == 0  # the first look waits one interval (b's enqueue commits meanwhile)
    clock.now += 0.06
    assert not slots.take("c")
    assert queue.looks == 1
    assert not slots.take("c")  # within the interval: no second look
    assert queue.looks == 1
    queue.waiting = 0  # the queue started b and c
    clock.now += 0.06
    assert slots.take("d")  # the queue is empty: direct starts again, without another look after
    assert queue.looks == 2
    slots.release("d")
    assert slots.take("e")
    assert queue.looks == 2


def test_a_process_that_was_never_full_never_looks_at_the_queue() -> None:
    slots, queue, _clock = _behind(2)
    for workflow_id in ("a", "b", "c", "d"):
        assert slots.take(workflow_id)
        slots.release(workflow_id)
    assert queue.looks == 0


def test_a_queue_that_cannot_be_read_keeps_the_process_behind_it() -> None:
    slots, queue, clock = _behind(1)
    assert slots.take("a")
    assert not slots.take("b")
    slots.release("a")
    queue.fails = True
    clock.now += 0.06
    assert not slots.take("c")  # enqueued: the queue keeps the order
    queue.fails = False
    clock.now += 0.06
    assert slots.take("c")


def test_an_overflow_during_a_look_that_found_the_queue_empty_keeps_the_process_behind() -> None:
    slots, queue, clock = _behind(1)
    assert slots.take("a")
    assert not slots.take("b")
    clock.now += 0.06
    # While the look reads an empty queue, another caller finds the process full (a still runs).
    queue.during_look = lambda: slots.take("late")
    assert not slots.take("c")
    queue.during_look = lambda: None
    slots.release("a")
    assert not slots.take("d")  # "late" is on its way to the queue: d goes after it
