"""When a botocore client closes its pooled connections (``fulfill.engine.botocore_idle``), read
through botocore's own event emitter on a clock the test moves. What the connections then meet is
``tests/integration/test_aws_idle_connections.py``'s."""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.hooks import HierarchicalEmitter

from fulfill.engine.botocore_idle import drop_idle_connections

SEND = "before-send.eventbridge.PutEvents"
ANSWER = "response-received.eventbridge.PutEvents"


@dataclass
class _Meta:
    events: HierarchicalEmitter = field(default_factory=HierarchicalEmitter)


@dataclass
class Client:
    """The two things the module uses of a client: its events, and ``close``, counted."""

    meta: _Meta = field(default_factory=_Meta)
    closed: int = 0

    def close(self) -> None:
        self.closed += 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _client(clock: Clock) -> Client:
    return drop_idle_connections(Client(), idle_seconds=2.0, clock=clock)


def test_requests_closer_together_than_the_limit_keep_the_connections() -> None:
    clock = Clock()
    client = _client(clock)
    for _ in range(5):
        client.meta.events.emit(SEND)
        clock.now += 5.0  # a slow answer: time in flight is not idle time
        client.meta.events.emit(ANSWER, exception=None)
        clock.now += 2.0  # exactly the limit: still fresh
    assert client.closed == 0


def test_a_request_after_an_idle_spell_closes_them_first_and_once() -> None:
    clock = Clock()
    client = _client(clock)
    client.meta.events.emit(SEND)
    client.meta.events.emit(ANSWER, exception=None)
    clock.now += 2.01
    client.meta.events.emit(SEND)
    assert client.closed == 1
    client.meta.events.emit(ANSWER, exception=None)
    client.meta.events.emit(SEND)  # right after: fresh again
    assert client.closed == 1


def test_a_failed_request_counts_as_an_answer() -> None:
    clock = Clock()
    client = _client(clock)
    client.meta.events.emit(SEND)
    clock.now += 10.0
    client.meta.events.emit(ANSWER, exception=TimeoutError("read timeout"))
    clock.now += 1.0
    client.meta.events.emit(SEND)
    assert client.closed == 0


def test_a_request_in_flight_on_another_thread_keeps_the_connections() -> None:
    clock = Clock()
    client = _client(clock)
    clock.now += 60.0
    client.meta.events.emit(SEND)  # the first after an idle spell: closes
    assert client.closed == 1
    clock.now += 3.0
    client.meta.events.emit(SEND)  # the other is still in flight: nothing is idle
    assert client.closed == 1
    client.meta.events.emit(ANSWER, exception=None)
    client.meta.events.emit(ANSWER, exception=None)
    clock.now += 3.0
    client.meta.events.emit(SEND)
    assert client.closed == 2


def test_an_answer_without_its_send_never_counts_below_none_in_flight() -> None:
    """A handler registered before this module's may fail a send before ours sees it; botocore
    still emits the answer (with the exception). The count stays at zero, so idleness still
    closes the connections."""
    clock = Clock()
    client = _client(clock)
    client.meta.events.emit(ANSWER, exception=RuntimeError("failed before the send"))
    clock.now += 3.0
    client.meta.events.emit(SEND)
    assert client.closed == 1
