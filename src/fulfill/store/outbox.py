"""The transactional outbox: messages are written in the same transaction as the fact they
announce, then relayed to each destination until it accepts them (at-least-once delivery)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, or_, select, tuple_, update

from fulfill.domain.outbox import ENGINE_DESTINATIONS
from fulfill.domain.records import DeadLetter as DeadLetter
from fulfill.domain.records import Delivery as Delivery
from fulfill.store.db import insert_ignore
from fulfill.store.tables import outbox_deliveries, outbox_messages

PENDING = "PENDING"
DELIVERED = "DELIVERED"
# Refused on every one of FULFILL_OUTBOX_MAX_ATTEMPTS tries: no relay takes it again until it is
# redelivered (admin API or ``fulfill outbox redeliver``).
DEAD_LETTER = "DEAD_LETTER"


def enqueue(
    conn: Connection,
    *,
    message_id: str,
    topic: str,
    tenant_id: str,
    payload: dict[str, Any],
    destinations: list[str],
    now: str,
    now_epoch: float,
) -> bool:
    """Store a message once (its id is deterministic) with one delivery row per destination.

    A message without a destination is not stored: nothing would ever read it.
    """
    if not destinations:
        return False
    if not insert_ignore(
        conn,
        outbox_messages,
        {
            "message_id": message_id,
            "topic": topic,
            "tenant_id": tenant_id,
            "payload": payload,
            "created_at": now,
        },
    ):
        return False
    for destination in destinations:
        insert_ignore(
            conn,
            outbox_deliveries,
            {
                "message_id": message_id,
                "destination": destination,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_epoch": now_epoch,
            },
        )
    return True


def _due(now_epoch: float) -> Any:
    return and_(
        outbox_deliveries.c.status == PENDING,
        outbox_deliveries.c.next_attempt_epoch <= now_epoch,
        or_(
            outbox_deliveries.c.lease_until_epoch.is_(None), outbox_deliveries.c.lease_until_epoch < now_epoch
        ),
    )


def _this(delivery: Delivery) -> Any:
    return and_(
        outbox_deliveries.c.message_id == delivery.message_id,
        outbox_deliveries.c.destination == delivery.destination,
    )


def _on_lane(only: Collection[str] | None, exclude: Collection[str] | None) -> Any:
    """Deliveries to the ``only`` destinations (None: any), but none of ``exclude``."""
    conditions = []
    if only is not None:
        conditions.append(outbox_deliveries.c.destination.in_(sorted(only)))
    if exclude:
        conditions.append(outbox_deliveries.c.destination.not_in(sorted(exclude)))
    return and_(True, *conditions)


def due_destinations(
    conn: Connection, *, now_epoch: float, exclude: Collection[str] = (), only: Collection[str] | None = None
) -> list[str]:
    """The destinations with a delivery due now and not leased (the relay's lanes to wake); with
    ``only``, among those destinations."""
    rows = conn.execute(
        select(outbox_deliveries.c.destination).where(_due(now_epoch), _on_lane(only, exclude)).distinct()
    ).all()
    return [str(row.destination) for row in rows]


def claim_due(
    conn: Connection,
    *,
    now_epoch: float,
    lease_seconds: float,
    owner: str,
    limit: int = 50,
    only: Collection[str] | None = None,
    exclude: Collection[str] | None = None,
) -> list[Delivery]:
    """Lease due deliveries to ``owner`` (one relay), so that concurrent relays never take the same one.

    On PostgreSQL the due rows are locked with ``FOR UPDATE SKIP LOCKED``: concurrent relays take
    disjoint sets without waiting for each other. Each lease is also conditional (the row must
    still be due), so a row another relay leased in the meantime is never taken over. SQLite
    serialises write transactions, so there the condition alone decides.

    ``only`` and ``exclude`` pick a lane: the engine's own destinations, or one external one.
    """
    query = (
        select(
            outbox_deliveries.c.message_id,
            outbox_deliveries.c.destination,
            outbox_deliveries.c.attempts,
        )
        .where(_due(now_epoch), _on_lane(only, exclude))
        .order_by(outbox_deliveries.c.next_attempt_epoch)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    due = conn.execute(query).all()
    leased: list[Any] = []
    for row in due:
        result = conn.execute(
            update(outbox_deliveries)
            .where(
                outbox_deliveries.c.message_id == row.message_id,
                outbox_deliveries.c.destination == row.destination,
                _due(now_epoch),
            )
            .values(lease_until_epoch=now_epoch + lease_seconds, lease_owner=owner)
        )
        if result.rowcount == 1:
            leased.append(row)
    if not leased:
        return []
    messages = {
        message.message_id: message
        for message in conn.execute(
            select(
                outbox_messages.c.message_id,
                outbox_messages.c.topic,
                outbox_messages.c.tenant_id,
                outbox_messages.c.payload,
            ).where(outbox_messages.c.message_id.in_({row.message_id for row in leased}))
        ).all()
    }
    return [
        Delivery(
            row.message_id,
            row.destination,
            messages[row.message_id].topic,
            messages[row.message_id].tenant_id,
            messages[row.message_id].payload,
            row.attempts,
        )
        for row in leased
    ]


def renew_lease(
    conn: Connection, delivery: Delivery, *, owner: str, now_epoch: float, lease_seconds: float
) -> bool:
    """Extend ``owner``'s lease right before a delivery; False when the lease is no longer its own
    (another relay took the delivery over after the lease ran out, or it was settled)."""
    result = conn.execute(
        update(outbox_deliveries)
        .where(
            _this(delivery),
            outbox_deliveries.c.status == PENDING,
            outbox_deliveries.c.lease_owner == owner,
        )
        .values(lease_until_epoch=now_epoch + lease_seconds)
    )
    return result.rowcount == 1


def _count_try_of_lost_lease(conn: Connection, delivery: Delivery) -> None:
    """Count a try whose lease ran out before it was settled: the destination saw it (accepted or
    refused) even though the relay that took the delivery over now owns its outcome."""
    conn.execute(
        update(outbox_deliveries).where(_this(delivery)).values(attempts=outbox_deliveries.c.attempts + 1)
    )


def mark_delivered(conn: Connection, delivery: Delivery, *, owner: str, now: str) -> bool:
    """Record an accepted delivery; only while ``owner`` still holds the lease (else False, and the
    try is counted in the delivery's attempts all the same)."""
    result = conn.execute(
        update(outbox_deliveries)
        .where(
            _this(delivery), outbox_deliveries.c.status == PENDING, outbox_deliveries.c.lease_owner == owner
        )
        .values(
            status=DELIVERED,
            delivered_at=now,
            attempts=outbox_deliveries.c.attempts + 1,
            lease_until_epoch=None,
            lease_owner=None,
        )
    )
    if result.rowcount == 1:
        return True
    _count_try_of_lost_lease(conn, delivery)
    return False


def mark_failed(
    conn: Connection,
    delivery: Delivery,
    *,
    owner: str,
    error: str,
    next_attempt_epoch: float,
    dead_letter_at: str | None = None,
) -> bool:
    """Record a refused delivery and when to try again, or, with ``dead_letter_at``, that it is
    given up (DEAD_LETTER); only while ``owner`` holds the lease (else False, and the try is
    counted in the delivery's attempts all the same)."""
    values: dict[str, Any] = {
        "attempts": outbox_deliveries.c.attempts + 1,
        "last_error": error[:500],
        "next_attempt_epoch": next_attempt_epoch,
        "lease_until_epoch": None,
        "lease_owner": None,
    }
    if dead_letter_at is not None:
        values.update(status=DEAD_LETTER, dead_lettered_at=dead_letter_at)
    result = conn.execute(
        update(outbox_deliveries)
        .where(
            _this(delivery), outbox_deliveries.c.status == PENDING, outbox_deliveries.c.lease_owner == owner
        )
        .values(**values)
    )
    if result.rowcount == 1:
        return True
    _count_try_of_lost_lease(conn, delivery)
    return False


def release_leases(conn: Connection, *, owner: str) -> int:
    """Give back ``owner``'s unsettled leases (a stopping relay), so others need not wait them out."""
    result = conn.execute(
        update(outbox_deliveries)
        .where(outbox_deliveries.c.status == PENDING, outbox_deliveries.c.lease_owner == owner)
        .values(lease_until_epoch=None, lease_owner=None)
    )
    return int(result.rowcount)


def pending_count(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(outbox_deliveries).where(outbox_deliveries.c.status == PENDING)
        ).scalar_one()
    )


def oldest_pending_created_at(conn: Connection) -> str | None:
    """When the oldest message that still has an undelivered delivery was written (None: none).
    Timestamps are ISO-8601 strings of one format, so the smallest is the oldest."""
    value = conn.execute(
        select(func.min(outbox_messages.c.created_at))
        .select_from(
            outbox_deliveries.join(
                outbox_messages, outbox_messages.c.message_id == outbox_deliveries.c.message_id
            )
        )
        .where(outbox_deliveries.c.status == PENDING)
    ).scalar_one()
    return str(value) if value is not None else None


def deliveries_for(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(outbox_deliveries).where(outbox_deliveries.c.message_id == message_id)).all()
    return [dict(row._mapping) for row in rows]


def _dead_letters_query(*, tenant_id: str | None, message_id: str | None, destination: str | None) -> Any:
    query = (
        select(
            outbox_deliveries.c.message_id,
            outbox_deliveries.c.destination,
            outbox_messages.c.topic,
            outbox_messages.c.tenant_id,
            outbox_deliveries.c.attempts,
            outbox_deliveries.c.last_error,
            outbox_messages.c.created_at,
            outbox_deliveries.c.dead_lettered_at,
        )
        .select_from(
            outbox_deliveries.join(
                outbox_messages, outbox_messages.c.message_id == outbox_deliveries.c.message_id
            )
        )
        .where(outbox_deliveries.c.status == DEAD_LETTER)
    )
    if tenant_id is not None:
        query = query.where(outbox_messages.c.tenant_id == tenant_id)
    if message_id is not None:
        query = query.where(outbox_deliveries.c.message_id == message_id)
    if destination is not None:
        query = query.where(outbox_deliveries.c.destination == destination)
    return query


def dead_letters(
    conn: Connection,
    *,
    tenant_id: str | None = None,
    message_id: str | None = None,
    destination: str | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    """Dead-lettered deliveries, oldest message first (``tenant_id`` None: every tenant's)."""
    query = _dead_letters_query(tenant_id=tenant_id, message_id=message_id, destination=destination)
    rows = conn.execute(
        query.order_by(outbox_messages.c.created_at, outbox_deliveries.c.message_id).limit(limit)
    ).all()
    return [
        DeadLetter(
            message_id=row.message_id,
            destination=row.destination,
            topic=row.topic,
            tenant_id=row.tenant_id,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=str(row.created_at),
            dead_lettered_at=str(row.dead_lettered_at) if row.dead_lettered_at is not None else None,
        )
        for row in rows
    ]


def redeliver(
    conn: Connection,
    *,
    now_epoch: float,
    tenant_id: str | None = None,
    message_id: str | None = None,
    destination: str | None = None,
    limit: int = 1000,
) -> list[DeadLetter]:
    """Put dead-lettered deliveries back in line, due now with a fresh count of tries; returns
    those this call moved (a concurrent redelivery of the same one moves it only once)."""
    moved: list[DeadLetter] = []
    for letter in dead_letters(
        conn, tenant_id=tenant_id, message_id=message_id, destination=destination, limit=limit
    ):
        result = conn.execute(
            update(outbox_deliveries)
            .where(
                outbox_deliveries.c.message_id == letter.message_id,
                outbox_deliveries.c.destination == letter.destination,
                outbox_deliveries.c.status == DEAD_LETTER,
            )
            .values(
                status=PENDING,
                attempts=0,
                next_attempt_epoch=now_epoch,
                lease_until_epoch=None,
                lease_owner=None,
                dead_lettered_at=None,
            )
        )
        if result.rowcount == 1:
            moved.append(letter)
    return moved


def dead_letter_destinations(conn: Connection) -> dict[str, int]:
    """How many deliveries are dead-lettered, by destination."""
    rows = conn.execute(
        select(outbox_deliveries.c.destination, func.count())
        .where(outbox_deliveries.c.status == DEAD_LETTER)
        .group_by(outbox_deliveries.c.destination)
    ).all()
    return {str(row[0]): int(row[1]) for row in rows}


def _delivered_before(cutoff_epoch: float, cutoff: str) -> Any:
    """Deliveries an external destination accepted before the cutoff. ``next_attempt_epoch`` is
    never later than the accepted try, so the index of status and next try finds them in order;
    ``delivered_at`` then leaves out the few that were accepted long after they were due."""
    return and_(
        outbox_deliveries.c.status == DELIVERED,
        outbox_deliveries.c.next_attempt_epoch < cutoff_epoch,
        outbox_deliveries.c.delivered_at < cutoff,
        outbox_deliveries.c.destination.not_in(sorted(ENGINE_DESTINATIONS)),
    )


def delete_delivered(conn: Connection, *, cutoff_epoch: float, cutoff: str, limit: int) -> tuple[int, int]:
    """Delete up to ``limit`` deliveries accepted before the cutoff, then those of their messages
    that have no delivery left; answers (deliveries, messages) deleted.

    A message keeps its row while any of its deliveries is still there: pending, dead-lettered
    (a person may redeliver it), accepted since the cutoff, or on the engine's own lane (its
    id is what makes a rerun's or a compensation's start happen once; those are few). The counts
    are of rows this call deleted: a row another pass deleted first is not counted twice.
    """
    query = (
        select(outbox_deliveries.c.message_id, outbox_deliveries.c.destination)
        .where(_delivered_before(cutoff_epoch, cutoff))
        .order_by(outbox_deliveries.c.next_attempt_epoch)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        # Two workers' passes at once take disjoint batches instead of waiting on each other's
        # rows (SQLite serialises write transactions).
        query = query.with_for_update(skip_locked=True)
    chosen = conn.execute(query).all()
    if not chosen:
        return 0, 0
    # Exactly the rows chosen (and locked): another pass's rows of the same messages are its own.
    pairs = sorted((row.message_id, row.destination) for row in chosen)
    message_ids = sorted({message_id for message_id, _ in pairs})
    deliveries = conn.execute(
        delete(outbox_deliveries).where(
            tuple_(outbox_deliveries.c.message_id, outbox_deliveries.c.destination).in_(pairs),
            _delivered_before(cutoff_epoch, cutoff),
        )
    ).rowcount
    messages = conn.execute(
        delete(outbox_messages).where(
            outbox_messages.c.message_id.in_(message_ids),
            ~exists().where(outbox_deliveries.c.message_id == outbox_messages.c.message_id),
        )
    ).rowcount
    return int(deliveries), int(messages)


class SqlOutboxRepository:
    """The outbox repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def enqueue(
        self,
        *,
        message_id: str,
        topic: str,
        tenant_id: str,
        payload: dict[str, Any],
        destinations: list[str],
        now: str,
        now_epoch: float,
    ) -> bool:
        return enqueue(
            self._conn,
            message_id=message_id,
            topic=topic,
            tenant_id=tenant_id,
            payload=payload,
            destinations=destinations,
            now=now,
            now_epoch=now_epoch,
        )

    def due_destinations(
        self, *, now_epoch: float, exclude: Collection[str] = (), only: Collection[str] | None = None
    ) -> list[str]:
        return due_destinations(self._conn, now_epoch=now_epoch, exclude=exclude, only=only)

    def claim_due(
        self,
        *,
        now_epoch: float,
        lease_seconds: float,
        owner: str,
        limit: int = 50,
        only: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
    ) -> list[Delivery]:
        return claim_due(
            self._conn,
            now_epoch=now_epoch,
            lease_seconds=lease_seconds,
            owner=owner,
            limit=limit,
            only=only,
            exclude=exclude,
        )

    def renew_lease(self, delivery: Delivery, *, owner: str, now_epoch: float, lease_seconds: float) -> bool:
        return renew_lease(
            self._conn, delivery, owner=owner, now_epoch=now_epoch, lease_seconds=lease_seconds
        )

    def mark_delivered(self, delivery: Delivery, *, owner: str, now: str) -> bool:
        return mark_delivered(self._conn, delivery, owner=owner, now=now)

    def mark_failed(
        self,
        delivery: Delivery,
        *,
        owner: str,
        error: str,
        next_attempt_epoch: float,
        dead_letter_at: str | None = None,
    ) -> bool:
        return mark_failed(
            self._conn,
            delivery,
            owner=owner,
            error=error,
            next_attempt_epoch=next_attempt_epoch,
            dead_letter_at=dead_letter_at,
        )

    def release_leases(self, *, owner: str) -> int:
        return release_leases(self._conn, owner=owner)

    def pending_count(self) -> int:
        return pending_count(self._conn)

    def oldest_pending_created_at(self) -> str | None:
        return oldest_pending_created_at(self._conn)

    def deliveries_for(self, message_id: str) -> list[dict[str, Any]]:
        return deliveries_for(self._conn, message_id)

    def dead_letters(
        self,
        *,
        tenant_id: str | None = None,
        message_id: str | None = None,
        destination: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        return dead_letters(
            self._conn, tenant_id=tenant_id, message_id=message_id, destination=destination, limit=limit
        )

    def redeliver(
        self,
        *,
        now_epoch: float,
        tenant_id: str | None = None,
        message_id: str | None = None,
        destination: str | None = None,
        limit: int = 1000,
    ) -> list[DeadLetter]:
        return redeliver(
            self._conn,
            now_epoch=now_epoch,
            tenant_id=tenant_id,
            message_id=message_id,
            destination=destination,
            limit=limit,
        )

    def dead_letter_destinations(self) -> dict[str, int]:
        return dead_letter_destinations(self._conn)

    def delete_delivered(self, *, cutoff_epoch: float, cutoff: str, limit: int) -> tuple[int, int]:
        return delete_delivered(self._conn, cutoff_epoch=cutoff_epoch, cutoff=cutoff, limit=limit)
