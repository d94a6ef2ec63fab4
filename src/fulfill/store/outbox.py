"""The transactional outbox: messages are written in the same transaction as the fact they
announce, then relayed to each destination until it accepts them (at-least-once delivery)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from fulfill.store.db import insert_ignore
from fulfill.store.tables import outbox_deliveries, outbox_messages

PENDING = "PENDING"
DELIVERED = "DELIVERED"


@dataclass(frozen=True)
class Delivery:
    message_id: str
    destination: str
    topic: str
    tenant_id: str
    payload: dict[str, Any]
    attempts: int


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


def claim_due(
    conn: Connection, *, now_epoch: float, lease_seconds: float, owner: str, limit: int = 50
) -> list[Delivery]:
    """Lease due deliveries to ``owner`` (one relay), so that concurrent relays never take the same one.

    On PostgreSQL the due rows are locked with ``FOR UPDATE SKIP LOCKED``: concurrent relays take
    disjoint sets without waiting for each other. Each lease is also conditional (the row must
    still be due), so a row another relay leased in the meantime is never taken over. SQLite
    serialises write transactions, so there the condition alone decides.
    """
    query = (
        select(
            outbox_deliveries.c.message_id,
            outbox_deliveries.c.destination,
            outbox_deliveries.c.attempts,
        )
        .where(_due(now_epoch))
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


def mark_delivered(conn: Connection, delivery: Delivery, *, owner: str, now: str) -> bool:
    """Record an accepted delivery; only while ``owner`` still holds the lease (else False)."""
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
    return result.rowcount == 1


def mark_failed(
    conn: Connection, delivery: Delivery, *, owner: str, error: str, next_attempt_epoch: float
) -> bool:
    """Record a refused delivery and when to try again; only while ``owner`` holds the lease."""
    result = conn.execute(
        update(outbox_deliveries)
        .where(
            _this(delivery), outbox_deliveries.c.status == PENDING, outbox_deliveries.c.lease_owner == owner
        )
        .values(
            attempts=outbox_deliveries.c.attempts + 1,
            last_error=error[:500],
            next_attempt_epoch=next_attempt_epoch,
            lease_until_epoch=None,
            lease_owner=None,
        )
    )
    return result.rowcount == 1


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
