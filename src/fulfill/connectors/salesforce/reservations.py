"""Reserve → call → commit: a connector's hold on an idempotency key while it writes.

``WriteReservations`` makes the reservations of one connector (the store's ``external_writes``
holds them) and ``Reservation`` is one call's hold on a key: it renews its lease before a write, records
an update's values, commits the written object, and settles when the call fails (a fresh
reservation whose write certainly did not happen is dropped; otherwise its lease ends at once, so
that the next call looks in the external system before it writes again).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fulfill.credentials.oauth import ConnectorFailure
from fulfill.domain.errors import ErrorClass
from fulfill.domain.external_writes import ReservationKind, Written
from fulfill.domain.ports import Clock
from fulfill.domain.records import ExternalWrite
from fulfill.ports.store import Store

log = logging.getLogger(__name__)

_BUSY_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class WriteKey:
    """What a reservation is keyed by: the execution's idempotency key, per tenant and account."""

    tenant_id: str
    account_id: str
    idempotency_key: str


class WriteReservations:
    """The reservations of one connector whose requests each take at most ``request_seconds``."""

    def __init__(self, store: Store, clock: Clock, *, connector: str, request_seconds: float) -> None:
        self._store = store
        self._clock = clock
        self._connector = connector
        self._request_seconds = request_seconds
        # A lease outlives everything one call may do (token, lookup, read, write).
        self._lease_seconds = request_seconds * 4 + 5.0

    def reserve(self, tool_name: str, key: WriteKey, action_intent_id: str) -> Reservation:
        """Reserve the key; waits (up to one request's time) while another call holds a live lease."""
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + self._request_seconds
        while True:
            with self._store.write() as uow:
                kind, record = uow.external_writes.reserve(
                    tenant_id=key.tenant_id,
                    account_id=key.account_id,
                    idempotency_key=key.idempotency_key,
                    connector=self._connector,
                    tool_name=str(tool_name),
                    action_intent_id=action_intent_id,
                    owner=owner,
                    now=self._clock.now(),
                    now_iso=self._clock.now_iso(),
                    lease_seconds=self._lease_seconds,
                )
            if kind is not ReservationKind.BUSY:
                if record.tool_name != tool_name:
                    raise ConnectorFailure(
                        ErrorClass.VALIDATION,
                        "IDEMPOTENCY_COLLISION",
                        "the idempotency key was used by another tool",
                    )
                return Reservation(self, kind, record, owner, key)
            if time.monotonic() > deadline:
                raise ConnectorFailure(
                    ErrorClass.DOWNSTREAM,
                    "WRITE_IN_PROGRESS",
                    "another call with this idempotency key is writing right now; try again",
                )
            time.sleep(_BUSY_POLL_SECONDS)

    def committed_write_of(
        self, tenant_id: str, account_id: str, *, action_intent_id: str, tool_name: str, object_id: str
    ) -> ExternalWrite | None:
        with self._store.read() as uow:
            return uow.external_writes.committed_write_of(
                tenant_id,
                account_id,
                action_intent_id=action_intent_id,
                tool_name=str(tool_name),
                object_id=object_id,
            )

    def mark_compensated(self, write: ExternalWrite) -> None:
        with self._store.write() as uow:
            uow.external_writes.mark_compensated(
                write.tenant_id,
                write.account_id,
                write.idempotency_key,
                now_iso=self._clock.now_iso(),
            )

    # --- what a Reservation does with its key -------------------------------------------------

    def lease_outlasts_request(self, lease_until: float) -> bool:
        return lease_until - self._clock.now() > self._request_seconds + 1.0

    def renew(self, key: WriteKey, owner: str) -> float | None:
        """A new lease for ``owner``; None when another call took the reservation over."""
        until = self._clock.now() + self._lease_seconds
        with self._store.write() as uow:
            renewed = uow.external_writes.renew(
                key.tenant_id, key.account_id, key.idempotency_key, owner=owner, until=until
            )
        return until if renewed else None

    def record_values(
        self, key: WriteKey, owner: str, previous: dict[str, Any], written: dict[str, Any]
    ) -> bool:
        with self._store.write() as uow:
            return uow.external_writes.record_values(
                key.tenant_id,
                key.account_id,
                key.idempotency_key,
                owner=owner,
                previous=previous,
                written=written,
            )

    def commit(
        self, key: WriteKey, object_type: str, object_id: str, object_url: str | None
    ) -> ExternalWrite:
        with self._store.write() as uow:
            return uow.external_writes.commit(
                key.tenant_id,
                key.account_id,
                key.idempotency_key,
                object_type=str(object_type),
                object_id=object_id,
                object_url=object_url,
                now_iso=self._clock.now_iso(),
            )

    def release(self, key: WriteKey, owner: str) -> None:
        with self._store.write() as uow:
            uow.external_writes.release(key.tenant_id, key.account_id, key.idempotency_key, owner=owner)

    def expire(self, key: WriteKey, owner: str) -> None:
        with self._store.write() as uow:
            uow.external_writes.expire(key.tenant_id, key.account_id, key.idempotency_key, owner=owner)


class Reservation:
    """One call's hold on an idempotency key, and what it does with it when the call ends."""

    def __init__(
        self,
        reservations: WriteReservations,
        kind: ReservationKind,
        record: ExternalWrite,
        owner: str,
        key: WriteKey,
    ) -> None:
        self._reservations = reservations
        self._kind = kind
        self._record = record
        self._owner = owner
        self._key = key
        self._lease_until = float(record.lease_until_epoch or 0.0)

    @property
    def kind(self) -> ReservationKind:
        return self._kind

    @property
    def record(self) -> ExternalWrite:
        """The reservation as it was found (or as committed)."""
        return self._record

    def ensure_lease(self) -> None:
        """Right before a write: the lease must outlast the request, else it is renewed (or the
        call stops, when another call took the reservation over)."""
        if self._reservations.lease_outlasts_request(self._lease_until):
            return
        until = self._reservations.renew(self._key, self._owner)
        if until is None:
            raise _taken_over()
        self._lease_until = until

    def record_values(self, previous: dict[str, Any], written: dict[str, Any]) -> None:
        """An update's values before and after, recorded before it writes."""
        if not self._reservations.record_values(self._key, self._owner, previous, written):
            raise _taken_over()

    def commit(self, object_type: str, object_id: str, object_url: str | None) -> ExternalWrite:
        """Record the written object; the first commit wins (the record says which one did)."""
        self._record = self._reservations.commit(self._key, object_type, object_id, object_url)
        self._kind = ReservationKind.COMMITTED
        return self._record

    def settle_failure(self, written: Written) -> None:
        """A failed call: a fresh reservation whose write certainly did not happen is dropped;
        otherwise the lease ends now, so that the next call looks before it writes."""
        if self._kind is ReservationKind.COMMITTED:
            return
        if self._kind is ReservationKind.FRESH and written == Written.NO:
            self._reservations.release(self._key, self._owner)
        else:
            self._reservations.expire(self._key, self._owner)

    @contextmanager
    def guard(self) -> Iterator[Reservation]:
        """Settles the reservation when the block raises (and re-raises)."""
        try:
            yield self
        except BaseException as exc:
            written = exc.written if isinstance(exc, ConnectorFailure) else Written.UNKNOWN
            try:
                self.settle_failure(written)
            except Exception:  # the lease runs out by itself; the original failure is what matters
                log.warning("could not settle an external write reservation after a failure")
            raise


def _taken_over() -> ConnectorFailure:
    return ConnectorFailure(
        ErrorClass.DOWNSTREAM,
        "WRITE_IN_PROGRESS",
        "another call took this write over; try again",
        written=Written.UNKNOWN,
    )
