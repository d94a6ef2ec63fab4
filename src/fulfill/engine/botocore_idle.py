"""botocore clients that drop their idle connections, as the service's HTTP clients do.

botocore's connection pool (urllib3's) keeps an idle connection for good, and has no setting to
limit that. A request sent on a connection that a NAT or a firewall forgot meanwhile never arrives,
and waits out its read timeout: for the outbox's EventBridge puts, whose client does not retry, a
failed try; for the ledger's export to S3, a timeout before each retried call after a quiet spell.

botocore's events bracket every request it sends, retries included: ``before-send`` just before the
request goes out, and ``response-received`` once its answer (or its failure) is in. Before a request
goes out while no other is in flight, a client whose last request ended longer than
:data:`~fulfill.bounded_http.IDLE_CONNECTION_SECONDS` ago closes its pooled connections
(``close()``: urllib3's pool manager empties its pools, and the client opens new connections for its
later requests). A request in flight on another thread keeps its connection until it ends; requests
closer together than the limit share their connections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from fulfill.bounded_http import IDLE_CONNECTION_SECONDS


class _Events(Protocol):
    def register(self, event_name: str, handler: Callable[..., Any]) -> None: ...


class _Meta(Protocol):
    @property
    def events(self) -> _Events: ...


class BotocoreClient(Protocol):
    """What this module uses of a botocore client."""

    @property
    def meta(self) -> _Meta: ...

    def close(self) -> None: ...


class _IdleConnections:
    def __init__(self, client: BotocoreClient, idle_seconds: float, clock: Callable[[], float]) -> None:
        self._client = client
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_answer = clock()

    def before_send(self, **_kwargs: Any) -> None:
        with self._lock:
            if self._in_flight == 0 and self._clock() - self._last_answer > self._idle_seconds:
                self._client.close()
            self._in_flight += 1

    def response_received(self, **_kwargs: Any) -> None:
        with self._lock:
            # Never below zero: a handler registered before ours may have failed the send first.
            self._in_flight = max(0, self._in_flight - 1)
            self._last_answer = self._clock()


C = TypeVar("C", bound=BotocoreClient)


def drop_idle_connections(
    client: C, *, idle_seconds: float = IDLE_CONNECTION_SECONDS, clock: Callable[[], float] = time.monotonic
) -> C:
    """``client``, which from now on closes its pooled connections before a request once they have
    all been idle for longer than ``idle_seconds``."""
    idle = _IdleConnections(client, idle_seconds, clock)
    client.meta.events.register("before-send", idle.before_send)
    client.meta.events.register("response-received", idle.response_received)
    return client
